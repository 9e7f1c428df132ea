"""What loudness normalisation costs: one export with `loudness` on vs off (the baseline).

    python bench/loudness.py [--seconds 20]

One 1080x1920 render with a tone mixed at -30 LUFS, exported for YouTube by the plan this
tool builds, with the shipped spec (loudness on) and the same spec with `loudness: null`.
Timed separately: the first pass (loudnorm measuring the source, once per source and
target), the encode (the second pass is a filter inside it), and the verification
(ebur128 measuring the output again). Prints both rows side by side.
"""

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.media.ffmpeg import run_ffmpeg  # noqa: E402
from exporter.media.ffmpeg_binary import bundled_ffmpeg  # noqa: E402
from exporter.media.loudness import (  # noqa: E402
    measure_argv,
    measure_output,
    parse_measurement,
    target_of,
)
from exporter.media.plan import build_encode  # noqa: E402
from exporter.media.probe import probe  # noqa: E402
from exporter.media.samples import make_clip  # noqa: E402
from exporter.model.spec import load_specs  # noqa: E402


def timed(action):
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    options = parser.parse_args()
    ffmpeg = bundled_ffmpeg()
    youtube = load_specs(REPO / "platforms")["youtube"]
    off = replace(youtube, audio={**youtube.audio, "loudness": None})
    with tempfile.TemporaryDirectory() as tmp:
        source = make_clip(Path(tmp) / "source.mp4", width=1080, height=1920,
                           seconds=options.seconds, fps=30, volume_db=-8.2)
        source_probe = probe(source)
        rows = []
        for name, spec in (("loudness off (baseline)", off), ("loudness on", youtube)):
            target = target_of(spec)
            measure_s, measured = (timed(lambda: parse_measurement(run_ffmpeg(
                measure_argv(ffmpeg, source, target, options.seconds)))) if target
                                  else (0.0, None))
            output = Path(tmp) / f"{len(rows)}.mp4"
            plan = build_encode(ffmpeg, source, source_probe, spec, output, "medium", measured)
            encode_s, _ = timed(lambda: run_ffmpeg(plan.argv))
            verify_s, achieved = (timed(lambda: measure_output(ffmpeg, output)) if target
                                  else (0.0, measure_output(ffmpeg, output)))
            rows.append((name, measure_s, encode_s, verify_s, achieved["integrated"]))
    print(f"{options.seconds:g} s 1080x1920 render, tone at -30 LUFS, YouTube spec, "
          "preset medium, bundled ffmpeg")
    print(f"{'':<26}{'1st pass s':>11}{'encode s':>10}{'verify s':>10}{'total s':>9}"
          f"{'output LUFS':>13}")
    for name, measure_s, encode_s, verify_s, lufs in rows:
        print(f"{name:<26}{measure_s:>11.2f}{encode_s:>10.2f}{verify_s:>10.2f}"
              f"{measure_s + encode_s + verify_s:>9.2f}{lufs:>13.1f}")
    base, on = rows
    extra = (on[1] + on[2] + on[3]) - (base[1] + base[2] + base[3])
    print(f"cost of loudness: +{extra:.2f} s per export "
          f"({100 * extra / (base[1] + base[2] + base[3]):.1f} % of the baseline); the first "
          "pass is paid once per source and target, not per platform")


if __name__ == "__main__":
    main()
