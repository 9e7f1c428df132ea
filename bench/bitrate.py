"""Bitrate accuracy per clip length and content: the VBV buffer sized to the clip vs the spec's.

    python bench/bitrate.py [--preset superfast] [--ffmpeg PATH ...] [--lengths 1 ...]
                            [--contents pattern ...]

For each ffmpeg (the bundled one, and /usr/bin/ffmpeg when present, or those given), each
content (test pattern, flat colour, full-frame noise) and each length (1 frame, 0.5, 1, 3,
15 s), one 1080x1920 source is encoded with youtube.yaml's argv twice:
- baseline: the spec's own buffer (`bufsize: 8000000`, one second of maxrate), as before;
- tool: `exporter.media.plan.clip_bufsize`, the buffer this tool now gives a clip of that length.
The average video bitrate of each output is measured by MediaInfo (pymediainfo, the tests'
independent probe) and printed as a share of the spec's 8 Mb/s, with the encode time:
the sized buffer costs nothing, it is the same single encode.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pymediainfo import MediaInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.media.ffmpeg_binary import bundled_ffmpeg, check_ffmpeg
from exporter.media.plan import build_encode
from exporter.media.probe import probe
from exporter.media.samples import NOISE, make_clip
from exporter.model.spec import load_specs

LENGTHS = (("1 frame", 1 / 30), ("0.5 s", 0.5), ("1 s", 1.0), ("3 s", 3.0), ("15 s", 15.0))
CONTENTS = (("pattern", "testsrc2"), ("flat", "color=c=0x336699"), ("noise", NOISE))


def measured(path):
    return MediaInfo.parse(str(path)).video_tracks[0].bit_rate or 0


def encode(ffmpeg, source, spec, output, preset, spec_buffer):
    """One encode; `spec_buffer` forces the spec's bufsize (the old behaviour)."""
    argv = build_encode(ffmpeg, source, probe(source), spec, output, preset).argv
    if spec_buffer:
        argv[argv.index("-bufsize") + 1] = str(spec.video["bufsize"])
    started = time.monotonic()
    subprocess.run(argv, check=True)
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="superfast")
    parser.add_argument("--ffmpeg", action="append")
    parser.add_argument("--lengths", nargs="+", type=float, metavar="SECONDS",
                        help="only these lengths (default: 1 frame, 0.5, 1, 3, 15)")
    parser.add_argument("--contents", nargs="+", choices=[name for name, _ in CONTENTS],
                        help="only these contents (default: all)")
    options = parser.parse_args()
    lengths = [(f"{s:g} s", s) for s in options.lengths] if options.lengths else LENGTHS
    contents = [(name, pattern) for name, pattern in CONTENTS
                if not options.contents or name in options.contents]
    ffmpegs = options.ffmpeg or [bundled_ffmpeg()] + (
        ["/usr/bin/ffmpeg"] if os.path.exists("/usr/bin/ffmpeg") else [])
    spec = load_specs(REPO / "platforms")["youtube"]
    target = spec.video["bitrate"]
    print(f"youtube.yaml: {target} b/s, 1080x1920 output, preset {options.preset}; "
          "bitrate as a share of the spec's (MediaInfo), encode time")
    print(f"{'ffmpeg':<14} {'content':<8} {'length':<8} {'baseline':>9} {'s':>6} "
          f"{'tool':>7} {'s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for ffmpeg in ffmpegs:
            name = check_ffmpeg(ffmpeg).version.split()[2][:12]
            for content, pattern in contents:
                for label, seconds in lengths:
                    source = work / f"{content}-{seconds:.3f}.mp4"
                    if not source.exists():
                        make_clip(source, width=1080, height=1920, seconds=seconds,
                                  audio=True, pattern=pattern, crf=18)
                    row = []
                    for spec_buffer in (True, False):
                        output = work / "out.mp4"
                        took = encode(ffmpeg, source, spec, output, options.preset,
                                      spec_buffer)
                        row += [measured(output) / target, took]
                    print(f"{name:<14} {content:<8} {label:<8} {row[0]:>9.3f} {row[1]:>6.1f} "
                          f"{row[2]:>7.3f} {row[3]:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
