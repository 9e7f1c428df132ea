"""What a CI job reads: group statuses in `doit list --status`, `doit status --check`, and
the group commands (clean, forget) acting on the exports a group stands for."""

import json
import subprocess

import pytest
from conftest import DOIT, REPO, doit_env, executed_tasks, run_doit, small_platforms

# The tool's bookkeeping, not ffmpeg: run once, in the first pass (README: Test).
pytestmark = pytest.mark.once


def r_lines(stdout):
    return [line.split()[1] for line in stdout.splitlines() if line.startswith("R ")]


def test_groups_list_up_to_date_and_status_check_says_when_not(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms")
    library.add("women", "18-23", "alpha")
    library.add("men", "24-30", "beta")
    args = library.args(f"platforms_dir={platforms}")
    run_doit(*args, check=0)

    listing = run_doit("list", "--status", *args, check=0).stdout
    assert r_lines(listing) == [], listing
    assert "U export:alpha" in listing and "U youtube " in listing and "U registry" in listing
    ok = run_doit("status", "--check", *args, check=0)
    assert "check: all 4 selected exports are exported and up to date" in ok.stderr

    (library.root / "women/18-23/alpha/metadata.json").write_text(
        json.dumps({"title": "Alpha, edited"}), encoding="utf-8")
    listing = run_doit("list", "--status", *args, check=0).stdout
    assert r_lines(listing) == ["export", "export:alpha", "registry", "tiktok", "tiktok:alpha",
                                "youtube", "youtube:alpha"], listing
    assert "U export:beta" in listing
    stale = run_doit("status", "--check", *args, check=1)
    assert "check: not up to date: 2 stale, 0 failed, 0 pending" in stale.stderr
    run_doit("status", "--check", *args, "segment=men", check=0)   # the selection counts

    # the group commands act on the group's exports
    run_doit(*args, check=0)
    cleaned = run_doit("clean", "export:alpha", *args, check=0)
    assert "clean_exports" in cleaned.stdout
    assert not (library.exports / "women/18-23/alpha/youtube.mp4").exists()
    assert (library.exports / "men/24-30/beta/youtube.mp4").exists()
    forgot = run_doit("forget", "export:beta", *args, check=0).stdout
    assert "forgetting youtube:beta" in forgot and "forgetting tiktok:beta" in forgot
    rerun = run_doit(*args, check=0)
    assert executed_tasks(rerun.stdout) == ["tiktok:alpha", "tiktok:beta", "youtube:alpha",
                                            "youtube:beta"]


def test_a_closed_pipe_ends_the_listing_quietly(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms")
    library.add("women", "18-23", "alpha")
    for command in (["list", "--status"], ["status"]):
        process = subprocess.Popen([str(DOIT), *command,
                                    *library.args(f"platforms_dir={platforms}")],
                                   cwd=REPO, env=doit_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        process.stdout.close()          # the reader is gone before the first line
        stderr = process.communicate(timeout=120)[1]
        assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
        assert process.returncode == -13, (command, process.returncode)    # SIGPIPE


def test_exit_status_a_script_can_rely_on(library, tmp_path):
    """README "In CI": 0 all done, 2 an export failed (whatever was selected: doit alone
    says 1 for a lone failed task and 2 when a group depends on it), 3 nothing could start,
    1 from `doit status --check` when anything selected is not up to date."""
    platforms = small_platforms(tmp_path / "platforms")
    library.add("women", "18-23", "good")
    bad = library.add("women", "18-23", "bad")
    (bad / "final.mp4").write_bytes(b"not a video")
    args = library.args(f"platforms_dir={platforms}")
    run_doit(*args, check=2)                          # the whole library
    run_doit("youtube:bad", *args, check=2)           # one export, nothing depending on it
    run_doit("-n", "2", "youtube:bad", *args, check=2)
    run_doit("youtube:good", *args, check=0)
    run_doit("status", "--check", *args, check=1)
    run_doit("status", "--check", *args, "segment=nobody", check=3)
    run_doit(*args, "segment=nobody", check=3)
