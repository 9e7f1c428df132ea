"""What the content check costs beside the encode, and what each platform's rate costs in score.

    python bench/quality.py [--seconds 10] [--preset medium] [--ffmpeg PATH] [--tiny]

A 1920x1080 render (testsrc2: moving pattern; noise: full-frame noise, new every frame)
exported to 1080x1920 (fit: blur) for YouTube (8 Mb/s) and TikTok (6 Mb/s) by the plan this
tool builds. Side by side in one run, per row: the encode alone (the baseline), the encode as
the pipeline runs it (keeping one frame in SAMPLE_EVERY of its own pictures as the check's
reference), the check (the output decoded whole, those frames scored: VMAF where the ffmpeg
has libvmaf, else SSIM), the cost of both over the baseline (target: at most 15 %), and the
score sampled beside the score of every frame against the source decoded again, to show what
the sampling changes. --tiny: 1 s at 270x480, superfast, pattern only.
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

from exporter.media import quality
from exporter.media.ffmpeg import run_ffmpeg
from exporter.media.ffmpeg_binary import bundled_ffmpeg, check_ffmpeg
from exporter.media.plan import SAMPLE_EVERY, build_encodes
from exporter.media.probe import probe
from exporter.media.samples import NOISE, make_clip
from exporter.model.spec import load_specs

TARGET_SHARE = 0.15


def timed(action):
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def scored(ffmpeg, output, source, spec, plan, every=SAMPLE_EVERY):
    return timed(lambda: quality.score_output(ffmpeg, output, source, spec, plan, every))


def triple(record):
    return f"{record['mean']:g}/{record['p5']:g}/{record['worst']:g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--ffmpeg", default=os.environ.get("REELEXPORT_FFMPEG") or bundled_ffmpeg())
    parser.add_argument("--tiny", action="store_true", help="1 s at 270x480, superfast")
    options = parser.parse_args()
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
    print(f"{'content':<9} {'platform':<8} {'encode s':>8} {'+samples':>8} {'check s':>8} "
          f"{'share':>6}  {f'score 1/{SAMPLE_EVERY} (mean/p5/worst)':<26} "
          f"{'every frame, vs source':<24} {'check s':>8}")
    worst_share = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for content in contents:
            source = make_clip(Path(tmp) / f"{content}.mp4", width=size[0], height=size[1],
                               seconds=options.seconds, fps=30, audio=False, pattern=content,
                               crf=18)
            source_probe = probe(source)
            for name in ("youtube", "tiktok"):
                spec, output = specs[name], Path(tmp) / f"{content}-{name}.mp4"
                alone = build_encodes(ffmpeg, source, source_probe, [(spec, output)],
                                      options.preset)[0]
                encode_s, _ = timed(lambda argv=alone.argv: run_ffmpeg(argv))
                output.unlink()
                plan = build_encodes(ffmpeg, source, source_probe, [(spec, output)],
                                     options.preset, samples=[output.with_suffix(".mkv")])[0]
                pipeline_s, _ = timed(lambda argv=plan.argv: run_ffmpeg(argv))
                check_s, record = scored(ffmpeg, output, source, spec, plan)
                full_s, full = scored(ffmpeg, output, source, spec, plan, every=1)
                share = (pipeline_s + check_s - encode_s) / encode_s
                worst_share = max(worst_share, share)
                print(f"{content:<9} {name:<8} {encode_s:>8.2f} {pipeline_s - encode_s:>+8.2f} "
                      f"{check_s:>8.2f} {share:>6.1%}  {triple(record):<26} "
                      f"{triple(full):<24} {full_s:>8.2f}")
    print(f"check cost (samples kept + check): at most {worst_share:.1%} of the encode "
          f"(target <= {TARGET_SHARE:.0%}); every frame decoded and counted, "
          f"1 in {SAMPLE_EVERY} scored")


if __name__ == "__main__":
    main()
