"""Regenerate examples/renders, the bundled sample library: python examples/make_samples.py"""

import shutil
from pathlib import Path

from exporter.media.samples import make_sample_library

if __name__ == "__main__":
    root = Path(__file__).resolve().parent / "renders"
    shutil.rmtree(root, ignore_errors=True)
    make_sample_library(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        print(f"{path.stat().st_size:>9}  {path.relative_to(root)}")
    print(f"{sum(p.stat().st_size for p in files):>9}  total bytes")
