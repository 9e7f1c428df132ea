"""What the content check costs beside the encode, and what each platform's rate costs in score.

    python bench/quality.py [--seconds 10] [--preset medium] [--ffmpeg PATH] [--tiny]

A 1920x1080 render (testsrc2: moving pattern; noise: full-frame noise, new every frame)
exported to 1080x1920 (fit: blur) for YouTube (8 Mb/s) and TikTok (6 Mb/s) by the plan this
tool builds; each output then decoded whole and scored against the source as the pipeline
does (exporter.media.quality: one frame in SAMPLE_EVERY, VMAF where the ffmpeg has libvmaf,
else SSIM), and again scoring every frame, to show what the sampling changes. Side by side
in one run: encode seconds, check seconds and their share (target: at most 15 %), and the
score (mean/p5/worst) sampled and unsampled. --tiny: 1 s at 270x480, superfast, pattern only.
"""

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.media import quality  # noqa: E402
from exporter.media.ffmpeg import run_ffmpeg  # noqa: E402
from exporter.media.ffmpeg_binary import bundled_ffmpeg, check_ffmpeg  # noqa: E402
from exporter.media.plan import build_encode  # noqa: E402
from exporter.media.probe import probe  # noqa: E402
from exporter.media.samples import NOISE, make_clip  # noqa: E402
from exporter.model.spec import load_specs  # noqa: E402

TARGET_SHARE = 0.15


def timed(action):
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def scored(ffmpeg, output, source, spec, plan, every):
    quality.SAMPLE_EVERY = every
    return timed(lambda: quality.score_output(ffmpeg, output, source, spec, plan))


def triple(record):
    return f"{record['mean']:g}/{record['p5']:g}/{record['worst']:g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--ffmpeg", default=os.environ.get("REELEXPORT_FFMPEG") or bundled_ffmpeg())
    parser.add_argument("--tiny", action="store_true", help="1 s at 270x480, superfast")
    options = parser.parse_args()
    sampled_every = quality.SAMPLE_EVERY
    specs = load_specs(REPO / "platforms")
    size, contents = (1920, 1080), ("testsrc2", NOISE)
    if options.tiny:
        options.seconds, options.preset, size, contents = 1, "superfast", (480, 270), ("testsrc2",)
        specs = {name: replace(spec, video={**spec.video, "width": 270, "height": 480})
                 for name, spec in specs.items()}
    ffmpeg, metric = options.ffmpeg, quality.metric_of(options.ffmpeg)
    print(f"{options.seconds:g} s {size[0]}x{size[1]} render -> "
          f"{specs['youtube'].video['width']}x{specs['youtube'].video['height']} blur, "
          f"x264 {options.preset}, {check_ffmpeg(ffmpeg).version.split(' Copyright')[0]}, "
          f"{metric.upper()}, {os.cpu_count()} cores")
    print(f"{'content':<9} {'platform':<8} {'encode s':>8} {'check s':>8} {'share':>6}  "
          f"{f'score 1/{sampled_every} (mean/p5/worst)':<30} {'every frame':<22} {'check s':>8}")
    worst_share = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for content in contents:
            source = make_clip(Path(tmp) / f"{content}.mp4", width=size[0], height=size[1],
                               seconds=options.seconds, fps=30, audio=False, pattern=content,
                               crf=18)
            source_probe = probe(source)
            for name in ("youtube", "tiktok"):
                spec, output = specs[name], Path(tmp) / f"{content}-{name}.mp4"
                plan = build_encode(ffmpeg, source, source_probe, spec, output, options.preset)
                encode_s, _ = timed(lambda argv=plan.argv: run_ffmpeg(argv))
                check_s, record = scored(ffmpeg, output, source, spec, plan, sampled_every)
                full_s, full = scored(ffmpeg, output, source, spec, plan, 1)
                share = check_s / encode_s
                worst_share = max(worst_share, share)
                print(f"{content:<9} {name:<8} {encode_s:>8.2f} {check_s:>8.2f} {share:>6.1%}  "
                      f"{triple(record):<30} {triple(full):<22} {full_s:>8.2f}")
    quality.SAMPLE_EVERY = sampled_every
    print(f"check cost: at most {worst_share:.1%} of the encode "
          f"(target <= {TARGET_SHARE:.0%}); every frame decoded and counted, "
          f"1 in {sampled_every} scored")


if __name__ == "__main__":
    main()
