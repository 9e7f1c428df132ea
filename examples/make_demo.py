"""Make the libraries the documentation's examples use: python examples/make_demo.py [--root DIR]

Every `/tmp/NAME` in README.md and docs/*.md is one of these (under `--root`, /tmp by
default), made fresh: run this first, then each page's examples in the page's order.

    /tmp/demo/renders        the samples' two `women` titles: docs/usage.md, quality.md,
                             performance.md
    /tmp/broken/renders      the samples with two sources broken: docs/formats.md
    /tmp/statusdemo/renders  the samples: docs/status.md
    /tmp/p/                  the shipped platform files, tiktok.yaml made invalid:
                             docs/platforms.md
    /tmp/w3/renders          the samples: docs/usage.md, doit watch
    /tmp/rel/renders         the samples: docs/reliability.md
    /tmp/tls/                an empty directory for the certificates: docs/cluster.md
    /tmp/sign/               an empty directory for a signer and its exports: docs/credentials.md

Nothing is exported here: each page runs its own `doit` from these renders into
`/tmp/NAME/exports`. A directory of that name that this script did not make is left alone
(the script stops and says so); one it made is replaced.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "examples" / "renders"
PLATFORMS = REPO / "platforms"
MARK = ".made-by-make_demo"
LIBRARIES = ("demo", "broken", "statusdemo", "p", "w3", "rel", "tls", "sign")


def samples(renders: Path) -> None:
    shutil.copytree(SAMPLES, renders)


def women(renders: Path) -> None:
    """The samples' `women` segment only: two titles, half the exports of a full run."""
    shutil.copytree(SAMPLES / "women", renders / "women")


def broken(renders: Path) -> None:
    """The samples with silent-square's render emptied and city-landscape's cut short."""
    samples(renders)
    (renders / "men/18-23/silent-square/final.mp4").write_bytes(b"")
    city = renders / "women/24-30/city-landscape/final.mp4"
    city.write_bytes(city.read_bytes()[:4096])


def invalid_platforms(directory: Path) -> None:
    """The shipped platform files, with tiktok.yaml's video bitrate a word."""
    directory.mkdir()
    for spec in sorted(PLATFORMS.glob("*.yaml")):
        shutil.copy(spec, directory / spec.name)
    tiktok = directory / "tiktok.yaml"
    lines = tiktok.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith("bitrate:"))
    indent = lines[at][:len(lines[at]) - len(lines[at].lstrip())]
    lines[at] = f"{indent}bitrate: fast\n"
    tiktok.write_text("".join(lines), encoding="utf-8")


MAKERS = {
    "demo": lambda root: women(root / "renders"),
    "broken": lambda root: broken(root / "renders"),
    "statusdemo": lambda root: samples(root / "renders"),
    "p": invalid_platforms,
    "w3": lambda root: samples(root / "renders"),
    "rel": lambda root: samples(root / "renders"),
    "tls": lambda root: None,
    "sign": lambda root: None,
}


def make_demo(root: Path, names: tuple[str, ...] = LIBRARIES) -> list[Path]:
    """Make each library under `root` afresh; the directories made."""
    made = []
    for name in names:
        directory = root / name
        if directory.exists() or directory.is_symlink():
            if not (directory / MARK).is_file():
                raise SystemExit(f"make_demo: {directory} exists and was not made by this "
                                 "script; move it away or choose another --root")
            shutil.rmtree(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        if name != "p":     # invalid_platforms makes its own
            directory.mkdir()
        MAKERS[name](directory)
        (directory / MARK).write_text("examples/make_demo.py\n", encoding="utf-8")
        made.append(directory)
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp"),
                        help="where the libraries go (default /tmp)")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"only these libraries (default all: {', '.join(LIBRARIES)})")
    options = parser.parse_args(argv)
    unknown = sorted(set(options.names) - set(LIBRARIES))
    if unknown:
        parser.error(f"no library {', '.join(unknown)}; there are {', '.join(LIBRARIES)}")
    for directory in make_demo(options.root, tuple(options.names) or LIBRARIES):
        print(f"made {directory}")


if __name__ == "__main__":
    main(sys.argv[1:])
