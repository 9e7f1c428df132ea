"""The docs are true: every shell example in README.md and docs/*.md runs and prints what
the page shows (tests/docs_support.py says how a page is read and compared).

Each page runs in order from a fresh set of the libraries examples/make_demo.py makes, as a
reader following it would, with the suite's settings for speed, none of which changes what
a command prints beyond what is normalised: the bundled ffmpeg (named, not PATH's), the
tests' x264 preset, the shipped platform files at a small frame size
(REELEXPORT_PLATFORMS), no periodic progress lines (a terminal's live display leaves none
either) and `data/exports` in the test's directory (REELEXPORT_EXPORTS). Blocks that cannot
run here are marked skipped in the page, with the reason; the benchmarks among them run
once below at tiny sizes, so that they cannot break unnoticed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, doit_env, small_platforms
from docs_support import Session, run_page, shell_blocks, write_updates

sys.path.insert(0, str(REPO / "examples"))
from make_demo import LIBRARIES, make_demo

# Bookkeeping and text, not ffmpeg: the first pass only (README: Test).
pytestmark = pytest.mark.once

PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
PLATFORM_NAMES = tuple(sorted(p.stem for p in (REPO / "platforms").glob("*.yaml")))


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_print_what_the_page_shows(page, tmp_path):
    make_demo(tmp_path, LIBRARIES)
    env = doit_env(REELEXPORT_EXPORTS=str(tmp_path / "data" / "exports"),
                   REELEXPORT_PLATFORMS=str(small_platforms(tmp_path / ".platforms",
                                                            PLATFORM_NAMES)),
                   REELEXPORT_PROGRESS_INTERVAL_S="0")
    session = run_page(REPO / page, Session(tmp_path, env, LIBRARIES))
    print(f"{page}: {len(session.ran)} commands run, {len(session.skipped)} blocks skipped")
    for line, reason in session.skipped:
        print(f"  skipped {page}:{line}: {reason}")
    if session.updates and os.environ.get("REELEXPORT_DOCS_UPDATE") == "1":
        write_updates(REPO / page, session)
        pytest.skip(f"{page}: {len(session.updates)} outputs written into the page")
    assert not session.failures, "\n\n".join(session.failures)


# Every benchmark a page shows, with arguments that make it quick: it must run to the end.
TINY_BENCHMARKS = {
    "bench/backends.py": ["--tasks", "50"],
    "bench/batch.py": ["--titles", "1", "--seconds", "3", "--preset", "superfast", "--small"],
    "bench/bitrate.py": ["--lengths", "0.1", "--contents", "flat"],
    "bench/cluster.py": ["--titles", "1", "--seconds", "3"],
    "bench/loudness.py": ["--seconds", "1"],
    "bench/noop.py": ["--titles", "2"],
    "bench/parallel.py": ["--seconds", "1", "--preset", "superfast"],
    "bench/quality.py": ["--tiny"],
    "bench/storage.py": ["--titles", "3"],
}


def test_every_benchmark_a_page_shows_runs_at_tiny_sizes():
    """A benchmark shown in a page is skipped there (too long); it runs here instead."""
    shown = set()
    for page in PAGES:
        for block in shell_blocks(REPO / page):
            for command in block:
                shown.update(re.findall(r"\bbench/\w+\.py\b", command.text))
    assert shown <= set(TINY_BENCHMARKS), f"no tiny run for {sorted(shown - set(TINY_BENCHMARKS))}"
    assert set(TINY_BENCHMARKS) == {str(p.relative_to(REPO)) for p in REPO.glob("bench/*.py")}


@pytest.mark.parametrize("script", sorted(TINY_BENCHMARKS))
def test_benchmark_runs_at_tiny_sizes(script):
    args = list(TINY_BENCHMARKS[script])
    if script == "bench/bitrate.py":
        args += ["--ffmpeg", doit_env()["REELEXPORT_FFMPEG"]]
    result = subprocess.run([sys.executable, script, *args], check=False, cwd=REPO,
                            env=doit_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{script} {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{script} printed nothing"
