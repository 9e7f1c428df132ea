"""`doit status`: the pure report and table, then the real command on a real small build."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, read_json, run_doit, small_platforms

from exporter.pipeline.plumbing.lock import acquire
from exporter.report.formatting import ffmpeg_release, format_duration, format_size
from exporter.report.registry import build_registry, registry_row, with_distribution
from exporter.report.status import format_report, lock_holder, status_report

# The tool's bookkeeping, not ffmpeg: run once, in the first pass (README: Test).
pytestmark = pytest.mark.once

SIDECAR = {"output": {"size_bytes": 2_500_000, "duration_s": 2.0, "sha256": "ab" * 32},
           "encode": {"mode": "encode", "ffmpeg_version": "ffmpeg version 5.1.9-0+deb12u1"},
           "finished_at": "2026-11-25T08:00:00.000+00:00"}
ERROR = {"cause": "final.mp4 is empty (0 bytes)\nsecond line is not shown",
         "failed_at": "2026-11-25T08:01:00.000+00:00"}


def row(title, platform, status, segment="women", age="18-23", uploaded_sha256=None):
    identity = {"title_id": title, "segment": segment, "age": age, "platform": platform}
    events = ([{"event": "uploaded", "at": "2026-11-25T09:00:00.000+00:00", "id": "p-" + title,
                "url": None, "sha256": uploaded_sha256}] if uploaded_sha256 else [])
    return with_distribution(registry_row(identity, status,
                                          f"{segment}/{age}/{title}/{platform}.mp4",
                                          SIDECAR, ERROR), events)


def sample_document():
    return build_registry([
        row("a", "youtube", "exported", uploaded_sha256=SIDECAR["output"]["sha256"]),
        row("a", "tiktok", "stale", uploaded_sha256="0" * 64),
        row("b", "youtube", "exported"), row("b", "tiktok", "failed"),
        row("c", "youtube", "pending", segment="men", age="24-30"),
        row("c", "tiktok", "exported", segment="men", age="24-30"),
    ], ["youtube", "tiktok"])


def test_report_groups_by_segment_age_platform_and_lists_failures():
    report = status_report(sample_document())
    keys = [(g["segment"], g["age"], g["platform"]) for g in report["groups"]]
    assert keys == [("men", "24-30", "tiktok"), ("men", "24-30", "youtube"),
                    ("women", "18-23", "tiktok"), ("women", "18-23", "youtube")]
    women_tiktok = report["groups"][2]
    assert (women_tiktok["exported"], women_tiktok["stale"], women_tiktok["failed"],
            women_tiktok["pending"]) == (0, 1, 1, 0)
    assert women_tiktok["size_bytes"] == 2_500_000    # the stale video counts, the failed not
    total = report["total"]
    assert (total["exported"], total["stale"], total["failed"], total["pending"]) == (3, 1, 1, 1)
    assert (total["size_bytes"], total["duration_s"]) == (10_000_000, 8.0)
    assert report["failures"] == [{"task": "tiktok:b", "title": "women/18-23/b",
                                   "cause": "final.mp4 is empty (0 bytes)",
                                   "failed_at": "2026-11-25T08:01:00.000+00:00"}]
    assert report["made_with"] == {"ffmpeg version 5.1.9-0+deb12u1": 4}   # exported + stale


def test_report_selection_narrows_rows_and_totals():
    report = status_report(sample_document(), segments=("women",), platforms=("youtube",))
    assert [(g["segment"], g["platform"]) for g in report["groups"]] == [("women", "youtube")]
    assert report["total"]["exported"] == 2 and report["failures"] == []
    assert status_report(sample_document(), ages=("24-30",))["total"]["pending"] == 1


def test_table_is_aligned_with_a_total_line_and_failure_lines():
    text = format_report(status_report(sample_document()))
    lines = text.splitlines()
    assert lines[0].split() == ["segment", "age", "platform", "exported", "stale", "failed",
                                "pending", "removed", "uploaded", "outdated", "size",
                                "duration"]
    assert lines[3].split() == ["women", "18-23", "tiktok", "0", "1", "1", "0", "0", "1", "1",
                                "2.5", "MB", "2.0", "s"]
    assert lines[5].split() == ["total", "3", "1", "1", "1", "0", "2", "1", "10.0", "MB",
                                "8.0", "s"]
    assert len({len(line) for line in lines[:6]}) == 1, "columns are aligned"
    assert lines[6:] == ["made with ffmpeg 5.1.9-0+deb12u1: 4 exports",
                         "FAILED tiktok:b (women/18-23/b): final.mp4 is empty (0 bytes)",
                         # rows with no upload request (as made before it existed),
                         # but a.youtube: uploaded, as `doit uploads` counts it
                         "NEEDS 2 exported not ready to upload, lacking request 2: "
                         "`doit uploads` lists them",
                         "UPLOAD OUTDATED tiktok:a (women/18-23/a): uploaded "
                         "2026-11-25T09:00:00.000+00:00 as p-a; the export has changed since"]


@pytest.mark.parametrize("line, shown", [
    ("ffmpeg version n9.0.2-17-g2a571b6068-20260930 Copyright (c) 2000-2026 the FFmpeg "
     "developers", "ffmpeg n9.0.2-17-g2a571b6068-20260930"),
    ("ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2025 the FFmpeg developers",
     "ffmpeg 5.1.9-0+deb12u1"),
    ("unknown (made before ffmpeg was recorded)", "unknown (made before ffmpeg was recorded)")])
def test_status_names_the_ffmpeg_release_not_its_copyright_line(line, shown):
    assert ffmpeg_release(line) == shown


@pytest.mark.parametrize("value, text", [(0, "0 B"), (999, "999 B"), (37_497_578, "37.5 MB"),
                                         (2_000_000_000, "2.0 GB"), (None, "0 B")])
def test_format_size(value, text):
    assert format_size(value) == text


@pytest.mark.parametrize("value, text", [(40, "40.0 s"), (59.94, "59.9 s"), (125, "2m05s"),
                                         (3725, "1h02m05s"), (None, "0.0 s")])
def test_format_duration(value, text):
    assert format_duration(value) == text


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
def test_lock_holder_reads_the_flock_without_taking_it(tmp_path):
    lock = tmp_path / ".lock"
    assert lock_holder(lock) is None                      # no file
    fd = acquire(lock)
    try:
        assert lock_holder(lock) == os.getpid()
    finally:
        os.close(fd)
    assert lock_holder(lock) is None                      # released: the file stays


# --- the real command -----------------------------------------------------------------

def status(library, platforms, *extra, check=0):
    return run_doit("status", *library.args(f"platforms_dir={platforms}", *extra), check=check)


def tree_state(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture
def built(library, tmp_path):
    """Two titles on two small platforms, one with an empty source: 2 exported, 2 failed."""
    platforms = small_platforms(tmp_path / "platforms")
    library.add("women", "18-23", "alpha")
    (library.add("men", "24-30", "broken") / "final.mp4").write_bytes(b"")
    assert run_doit(*library.args(f"platforms_dir={platforms}")).returncode != 0
    return platforms


def test_status_command_text_and_json(library, built):
    text = status(library, built).stdout
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["segment", "age", "platform"]
    assert lines[1].split()[:7] == ["men", "24-30", "tiktok", "0", "0", "1", "0"]
    assert lines[3].split()[:7] == ["women", "18-23", "tiktok", "1", "0", "0", "0"]
    assert lines[5].split()[:5] == ["total", "2", "0", "2", "0"]
    assert ("FAILED youtube:broken (men/24-30/broken): final.mp4 is empty (0 bytes)"
            in lines)

    document = json.loads(status(library, built, "--json").stdout)
    registry = read_json(library.exports / "registry.json")
    assert document["total"] == registry["totals"]["all"]
    assert document["run_in_progress"] is None
    assert document["exports"] == str(library.exports)
    assert {f["task"] for f in document["failures"]} == {"tiktok:broken", "youtube:broken"}

    narrowed = json.loads(status(library, built, "--json", "segment=women",
                                 "platforms=youtube").stdout)
    assert [(g["segment"], g["platform"]) for g in narrowed["groups"]] == [("women", "youtube")]
    nothing = status(library, built, "segment=kids", check=3)
    assert "segment=kids matches no title" in nothing.stderr


def test_status_is_live_and_writes_nothing(library, built):
    before = tree_state(library.exports)
    registry_text = (library.exports / "registry.json").read_text()
    time.sleep(0.01)
    (library.root / "women/18-23/alpha/metadata.json").write_text('{"title": "Alpha, renamed"}')
    document = json.loads(status(library, built, "--json").stdout)
    assert document["total"]["stale"] == 2, "an edited metadata.json is stale at once"
    assert tree_state(library.exports) == before
    assert (library.exports / "registry.json").read_text() == registry_text


def test_status_without_any_run_creates_nothing(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms")
    library.add("women", "18-23", "alpha")
    document = json.loads(status(library, platforms, "--json").stdout)
    assert document["total"]["pending"] == 2
    assert not library.exports.exists()


HOLD_LOCK = """
import sys, time
from exporter.pipeline.plumbing.lock import acquire
acquire(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_status_runs_while_a_run_holds_the_tree(library, built):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(library.exports / ".lock")],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = status(library, built)
        assert result.stdout.startswith(f"a run (pid {holder.pid}) is writing ")
        document = json.loads(status(library, built, "--json").stdout)
        assert document["run_in_progress"] == holder.pid
        assert document["total"]["exported"] == 2
        # the lock was only read: a real run is still refused, so the holder still has it
        refused = run_doit(*library.args(f"platforms_dir={built}"))
        assert refused.returncode == 4 and "refused" in refused.stderr
    finally:
        holder.kill()
        holder.wait()
