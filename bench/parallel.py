"""Does `doit -n 2` really run encodes in parallel? Two long encodes, -n 1 vs -n 2.

    python bench/parallel.py [--seconds 20] [--preset medium]

Prints wall time of each run side by side and how far the two encodes overlapped in time
(from their sidecars' started_at/finished_at). x264 is itself multi-threaded, so on a
2-core machine -n 2 mostly shows as overlap; with more cores it shows as speed-up.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.media.samples import make_title  # noqa: E402


def run(jobs, renders, exports, preset):
    env = {**os.environ, "REELEXPORT_X264_PRESET": preset}
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "doit"), "-n", str(jobs),
                    f"renders={renders}", f"exports={exports}", "platforms=youtube"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    spans = []
    for path in sorted(Path(exports).rglob("youtube.export.json")):
        sidecar = json.loads(path.read_text())
        spans.append((datetime.fromisoformat(sidecar["started_at"]),
                      datetime.fromisoformat(sidecar["finished_at"])))
    (a0, a1), (b0, b1) = spans
    overlap = max(0.0, (min(a1, b1) - max(a0, b0)).total_seconds())
    return wall, overlap


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--preset", default="medium")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        renders = Path(tmp) / "renders"
        for title in ("long-one", "long-two"):
            make_title(renders, "bench", "all", title,
                       dict(width=1920, height=1080, seconds=options.seconds, fps=30),
                       {"title": title})
        results = {jobs: run(jobs, renders, Path(tmp) / f"exports-n{jobs}", options.preset)
                   for jobs in (1, 2)}
    print(f"two {options.seconds} s 1920x1080 sources -> youtube (1080x1920), "
          f"preset {options.preset}, {os.cpu_count()} cores")
    print(f"{'':10}{'wall s':>10}{'overlap s':>12}")
    for jobs, (wall, overlap) in results.items():
        print(f"{'-n ' + str(jobs):10}{wall:10.1f}{overlap:12.1f}")
    print(f"speed-up -n 2 vs -n 1: {results[1][0] / results[2][0]:.2f}x")


if __name__ == "__main__":
    main()
