"""This tool vs the old exporter on a batch of titles × the 4 shipped platforms.

    python bench/batch.py [--titles 2] [--seconds 12] [--preset medium] [--small]

Sources have the real shapes (1080x1920 and 1920x1080, half each). Two cases:
- non-conforming: renders the platforms must re-encode (a landscape frame, 25 fps, 10 Mb/s);
- conforming: renders already made for the platforms (1080x1920, 30 fps, H.264 High,
  5 Mb/s CBR, AAC 48 kHz stereo), which the tool remuxes for every platform.

Baseline: the old exporter, i.e. the very ffmpeg argv this tool builds for one platform
(`exporter.media.plan.build_encode`), run once per (title, platform), one after another.
Tool: `doit -n 1 renders=... exports=...` from a clean exports root, the user's command.
Tool overhead: the tool's wall time minus the time spent inside the ffmpeg processes it
ran (measured by a thin wrapper given as REELEXPORT_FFMPEG that logs each run's duration).
Everything runs in one go and prints the figures side by side. --small: the platforms and
sources at a quarter of the size each way (bench/noop.py's small_platforms), for a quick run.
"""

import argparse
import json
import os
import platform
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.media.ffmpeg import QUIET, run_ffmpeg  # noqa: E402
from exporter.media.ffmpeg_binary import check_ffmpeg, choose_ffmpeg  # noqa: E402
from exporter.media.plan import build_encode  # noqa: E402
from exporter.media.probe import probe  # noqa: E402
from exporter.model.spec import load_specs  # noqa: E402

SHAPES = [(1080, 1920), (1920, 1080)]


def make_source(ffmpeg, path, width, height, seconds, conforming, index, small=False):
    """A synthetic render: moving test pattern and a tone (its pitch makes each title's
    bytes different, so no title shares another's encode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if conforming:   # what a final-encode step made for the platforms already: a closed
        # GOP of 2 s (Facebook's Reels API takes 2 to 5 s), no scene-cut keyframes
        video = ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
                 "-pix_fmt", "yuv420p", "-r", "30", "-g", "60", "-keyint_min", "60",
                 *(["-b:v", "600k", "-minrate", "600k", "-maxrate", "600k", "-bufsize", "600k"]
                   if small else
                   ["-b:v", "5M", "-minrate", "5M", "-maxrate", "5M", "-bufsize", "5M"]),
                 "-x264-params", "nal-hrd=cbr:scenecut=0"]
        size, rate = "270x480" if small else "1080x1920", 30
    else:
        video = ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "10M", "-r", "25"]
        size, rate = f"{width}x{height}", 25
    run_ffmpeg([ffmpeg, *QUIET,
                "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
                "-f", "lavfi", "-i",
                f"sine=frequency={330 + 20 * index}:sample_rate=48000:duration={seconds}",
                *video, "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
                "-movflags", "+faststart", str(path)])
    (path.parent / "metadata.json").write_text('{"title": "Bench title"}')


def timing_wrapper(directory, ffmpeg, log):
    """A shell script that runs ffmpeg and appends its wall time (ns) to `log`."""
    wrapper = directory / "ffmpeg-timed"
    wrapper.write_text(
        "#!/bin/sh\n"
        "start=$(date +%s%N)\n"
        f'"{ffmpeg}" "$@"\n'
        "status=$?\n"
        f'echo $(( $(date +%s%N) - start )) >> "{log}"\n'
        "exit $status\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def run_baseline(ffmpeg, renders, out_dir, specs, preset):
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for source in sorted(renders.rglob("final.mp4")):
        source_probe = probe(source)
        for spec in specs.values():
            output = out_dir / f"{source.parent.name}-{spec.name}.mp4"
            run_ffmpeg(build_encode(ffmpeg, source, source_probe, spec, output, preset).argv)
    return time.perf_counter() - start


def run_tool(ffmpeg, renders, exports, preset, work, extra=()):
    log = work / f"ffmpeg-times-{exports.parent.name}.log"
    env = {**os.environ, "REELEXPORT_X264_PRESET": preset,
           "REELEXPORT_FFMPEG": str(timing_wrapper(work, ffmpeg, log))}
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "doit"), "-n", "1",
                    f"renders={renders}", f"exports={exports}", *extra],
                   cwd=REPO, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    runs = [int(line) for line in log.read_text().split()]
    return wall, sum(runs) / 1e9, len(runs), corrected_encodes(exports)


def corrected_encodes(exports):
    """Exports whose encode was made again aiming lower (rate control's corrected encode):
    their recorded argv asks for less than the spec's bitrate."""
    count = 0
    for sidecar_path in exports.rglob("*.export.json"):
        sidecar = json.loads(sidecar_path.read_text())
        argv = sidecar["encode"]["argv"]
        if "-b:v" in argv:
            asked = int(argv[argv.index("-b:v") + 1])
            count += asked < sidecar["encode"]["settings"]["video"]["bitrate"]
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--titles", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--small", action="store_true",
                        help="platforms and sources at 270x480 (a quick run)")
    options = parser.parse_args()
    ffmpeg = check_ffmpeg(choose_ffmpeg(os.environ.get("REELEXPORT_FFMPEG"))).path
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        extra, specs = [], load_specs(REPO / "platforms")
        if options.small:
            sys.path.insert(0, str(REPO / "bench"))
            from noop import small_platforms
            extra = small_platforms(work / "platforms")
            specs = load_specs(work / "platforms")
        for case, conforming in (("non-conforming", False), ("conforming", True)):
            renders = work / case / "renders"
            for index in range(options.titles):
                width, height = SHAPES[index % len(SHAPES)]
                if options.small:
                    width, height = width // 4, height // 4
                make_source(ffmpeg, renders / "bench" / "all" / f"title-{index}" / "final.mp4",
                            width, height, options.seconds, conforming, index, options.small)
            baseline = run_baseline(ffmpeg, renders, work / case / "baseline", specs,
                                    options.preset)
            tool, inside, runs, corrected = run_tool(ffmpeg, renders, work / case / "exports",
                                                     options.preset, work, extra)
            rows.append((case, baseline, tool, inside, runs, corrected))
    print(("platforms at 270x480 (--small); " if options.small else "")
          + f"{options.titles} titles x {len(specs)} platforms, {options.seconds} s sources, "
          f"x264 preset {options.preset}, {os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"{'sources':16}{'baseline s':>12}{'tool s':>10}{'speed-up':>10}"
          f"{'in ffmpeg s':>13}{'overhead':>10}{'ffmpeg runs':>13}{'rate fixes':>12}")
    for case, baseline, tool, inside, runs, corrected in rows:
        overhead = (tool - inside) / inside
        print(f"{case:16}{baseline:12.1f}{tool:10.1f}{baseline / tool:9.1f}x"
              f"{inside:13.1f}{overhead:10.1%}{runs:13}{corrected:12}")
    print("rate fixes: encodes made again aiming lower after landing over the bitrate "
          "(the buffer is sized to the clip, so constant-rate specs need none)")
    print("targets: >= 2x non-conforming, >= 20x conforming, overhead <= 3 %")


if __name__ == "__main__":
    main()
