"""The docs are true: every example in README.md and docs/*.md runs and prints what the page
shows (tests/docs_support.py says how a page is read and compared).

Each page runs in order from a fresh set of the libraries examples/make_demo.py makes, as a
reader following it would, with the suite's settings for speed: the bundled ffmpeg (named,
not PATH's), the tests' x264 preset (`superfast`), the shipped platform files at 270x480
(REELEXPORT_PLATFORMS; every other setting as shipped), no periodic progress lines (a
terminal's live display leaves none either) and `data/exports` in the test's directory
(REELEXPORT_EXPORTS). A page whose examples make exports says so where it first shows
their output (the sizes and scores it shows are those of that setting). Blocks that cannot
run here are skipped in the page, naming the test that runs them instead; the benchmarks
among them run below at tiny sizes, so that they cannot break unnoticed.
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
# What a page making exports says, where it first shows them, of the setting they run at.
SMALL = "270x480"
PLATFORM_NAMES = tuple(sorted(p.stem for p in (REPO / "platforms").glob("*.yaml")))


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_print_what_the_page_shows(page, tmp_path):
    make_demo(tmp_path, LIBRARIES)
    env = doit_env(REELEXPORT_EXPORTS=str(tmp_path / "data" / "exports"),
                   REELEXPORT_PLATFORMS=str(small_platforms(tmp_path / ".platforms",
                                                            PLATFORM_NAMES, minimum=True)),
                   REELEXPORT_PROGRESS_INTERVAL_S="0")
    session = run_page(REPO / page, Session(tmp_path, env, LIBRARIES))
    ran = session.ran
    print(f"{page}: {ran['commands']} commands, {ran['python']} Python blocks, {ran['json']} "
          f"JSON blocks run; {len(session.skipped)} blocks skipped")
    for line, reason in session.skipped:
        print(f"  skipped {page}:{line}: {reason}")
    if any(tmp_path.rglob("*.export.json")) and SMALL not in (REPO / page).read_text():
        session.failures.append(f"{page} shows exports made at {SMALL}, and does not say so")
    if session.updates and os.environ.get("REELEXPORT_DOCS_UPDATE") == "1":
        write_updates(REPO / page, session)
        session.failures = [f for f in session.failures if f not in session.rewritable]
        assert not session.failures, "\n\n".join(session.failures)
        pytest.skip(f"{page}: {len(session.updates)} outputs written into the page")
    assert not session.failures, "\n\n".join(session.failures)


def test_readme_install_and_test_lines_are_what_ci_runs():
    """README's Install and Test commands (skipped in the page: they install into the
    checkout, run the suite) are the lines .ci/run runs, in a fresh venv: README's pip
    install is CI's fallback, after uv installing the same requirements."""
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    shown = [command.text.split("#")[0].strip() for block in shell_blocks(REPO / "README.md")
             for command in block if re.match(r"(python3 -m venv|pip|pytest|REELEXPORT_)",
                                              command.text)]
    assert len(shown) == 5, shown
    ran = {line.strip().removeprefix("python -m ") for line in ci.splitlines()}
    for command in shown:
        parts = [part.strip() for part in command.split("&&")]
        for part in parts:
            # the user's `pip install -e .` is CI's with the test extra: the same project
            part = {"pip install -e .": "pip install --quiet -e '.[test]'",
                    "pip install -e '.[test]'": "pip install --quiet -e '.[test]'"}.get(part, part)
            assert part in ran, f"README shows {part!r}; .ci/run does not run it"
    assert ("if ! { python -m pip install --quiet uv && uv pip install --quiet "
            "--compile-bytecode -e '.[test]'; }; then") in ran, "uv: the same requirements"


# Every benchmark a page shows, with arguments that make it quick: it must run to the end,
# with the shipped platforms at 270x480 (REELEXPORT_PLATFORMS) where it exports through doit.
TINY_BENCHMARKS = {
    "bench/backends.py": ["--tasks", "50"],
    "bench/batch.py": ["--titles", "1", "--seconds", "3", "--preset", "superfast", "--small"],
    "bench/bitrate.py": ["--lengths", "0.1", "--contents", "flat"],
    "bench/cluster.py": ["--titles", "1", "--seconds", "0.5"],
    "bench/loudness.py": ["--seconds", "1"],
    "bench/noop.py": ["--titles", "2", "--small"],
    "bench/parallel.py": ["--seconds", "1", "--preset", "superfast"],
    "bench/quality.py": ["--tiny"],
    "bench/storage.py": ["--titles", "2", "--latency-ms", "5"],
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
def test_benchmark_runs_at_tiny_sizes(script, tmp_path):
    args = list(TINY_BENCHMARKS[script])
    if script == "bench/bitrate.py":
        args += ["--ffmpeg", doit_env()["REELEXPORT_FFMPEG"]]
    small = small_platforms(tmp_path / "platforms", PLATFORM_NAMES)
    result = subprocess.run([sys.executable, script, *args], check=False, cwd=REPO,
                            env=doit_env(REELEXPORT_PLATFORMS=str(small)), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{script} {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{script} printed nothing"
