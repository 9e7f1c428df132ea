"""Reliability, round two (issue 11): inputs and faults that used to hang a batch, lock the
tree for good, crash the end of a run or leave a target of a failed export."""

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest
from conftest import (
    executed_tasks,
    exported_videos,
    leftovers,
    read_json,
    run_doit,
    small_platforms,
)
from test_reliability import batch, finished, start_doit, temporaries, wait_for  # noqa: F401

from exporter.pipeline.plumbing.runner import POLL_S, OrphanAwareQueue


@pytest.fixture
def platforms(tmp_path):
    return small_platforms(tmp_path / "platforms", names=("youtube",))


def args_for(library, platforms, *extra):
    return library.args(f"platforms_dir={platforms}", *extra)


def statuses(exports):
    return {(row["title_id"], row["platform"]): row["status"]
            for row in read_json(exports / "registry.json")["exports"]}


def make_fifo(path):
    path.unlink()
    os.mkfifo(path)


def make_device_link(path):
    path.unlink()
    path.symlink_to("/dev/zero")


def make_socket(path):
    path.unlink()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    return server


def make_directory(path):
    path.unlink()
    path.mkdir()


def make_outside_link(path):
    path.unlink()
    path.symlink_to("/etc/passwd")


SPECIAL = {
    "final.mp4 FIFO": ("final.mp4", make_fifo, "final.mp4 is a FIFO, not a regular file"),
    "final.mp4 -> /dev/zero": ("final.mp4", make_device_link,
                               "final.mp4 is a character device, not a regular file"),
    "final.mp4 socket": ("final.mp4", make_socket, "final.mp4 is a socket, not a regular file"),
    "metadata.json directory": ("metadata.json", make_directory,
                                "metadata.json is a directory, not a regular file"),
    "metadata.json FIFO": ("metadata.json", make_fifo,
                           "metadata.json is a FIFO, not a regular file"),
    "final.mp4 -> /etc/passwd": ("final.mp4", make_outside_link,
                                 "final.mp4 links outside the renders root (to /etc/passwd)"),
}


@pytest.mark.once        # refused by the tool's own checks, before ffmpeg
@pytest.mark.parametrize("case", SPECIAL)
def test_a_special_file_fails_its_title_alone_without_hanging(library, platforms, case):
    name, make, cause = SPECIAL[case]
    library.add("women", "18-23", "bad")
    library.add("women", "18-23", "good")
    kept = make(library.root / "women/18-23/bad" / name)
    started = time.monotonic()
    result = run_doit(*args_for(library, platforms))
    assert time.monotonic() - started < 120, "the batch must not hang"
    assert result.returncode != 0
    failed = [line for line in result.stderr.splitlines() if line.startswith("FAILED")]
    assert failed == [f"FAILED youtube:bad (women/18-23/bad): {cause}"]
    assert statuses(library.exports) == {("bad", "youtube"): "failed",
                                         ("good", "youtube"): "exported"}
    error = read_json(library.exports / "women/18-23/bad/youtube.error.json")
    assert error["cause"] == cause and error["error_type"] == "SourceError"
    status = run_doit("status", *args_for(library, platforms), check=0)
    assert f"FAILED youtube:bad (women/18-23/bad): {cause}" in status.stdout
    if kept is not None:
        kept.close()


@pytest.mark.once        # the library's names: refused before ffmpeg
@pytest.mark.parametrize("segment", ["registry.json", "index.html"])
def test_a_segment_named_like_an_exports_root_file_is_refused_alone(library, platforms,
                                                                     segment):
    library.add(segment, "18-23", "clash")
    library.add("women", "18-23", "good")
    result = run_doit(*args_for(library, platforms))
    assert result.returncode == 2, result.stderr     # a failure: README "In CI"
    assert f"the name '{segment}' is taken by a file of the exports root" in result.stderr
    assert (library.exports / "registry.json").is_file()
    assert statuses(library.exports) == {("good", "youtube"): "exported"}


@pytest.mark.parametrize("content, cause", [
    (b"just some text\n", "thumbnail.jpg cannot be read as an image: ffmpeg failed"),
])
def test_a_bad_thumbnail_is_named_and_leaves_no_target(library, platforms, content, cause):
    title = library.add("women", "18-23", "alpha")
    (title / "thumbnail.jpg").write_bytes(content)
    result = run_doit(*args_for(library, platforms))
    assert result.returncode != 0
    assert f"FAILED youtube:alpha (women/18-23/alpha): {cause}" in result.stderr
    assert "after" not in result.stderr.split("FAILED")[1], "a bad file is not retried"
    assert exported_videos(library.exports) == []
    out = library.exports / "women/18-23/alpha"
    assert sorted(p.name for p in out.iterdir()) == ["youtube.error.json"]
    assert leftovers(library.exports) == []


@pytest.mark.once        # refused by the tool's own checks, before ffmpeg
def test_a_linked_thumbnail_outside_the_renders_root_is_refused(library, platforms):
    title = library.add("women", "18-23", "alpha")
    (title / "thumbnail.jpg").symlink_to("/etc/passwd")
    result = run_doit(*args_for(library, platforms))
    assert ("FAILED youtube:alpha (women/18-23/alpha): thumbnail.jpg links outside the "
            "renders root (to /etc/passwd)") in result.stderr
    assert exported_videos(library.exports) == []


@pytest.mark.faults      # kills and interrupts: the tool's process handling
def test_kill_9_of_a_parallel_run_leaves_no_lock(batch):  # noqa: F811
    """The workers of `doit -n 2` die with the run and never keep the tree's lock."""
    library, platforms, ffmpeg = batch
    args = library.args(f"platforms_dir={platforms}", f"ffmpeg={ffmpeg}")
    run = start_doit("-n", "2", *args)
    wait_for(lambda: temporaries(library.exports))
    os.kill(run.pid, signal.SIGKILL)        # the run only, as `kill -9 $!` does
    run.wait()
    wait_for(lambda: not temporaries(library.exports), timeout=30)
    again = run_doit(*args)
    assert again.returncode == 0, again.stderr
    assert len(exported_videos(library.exports)) == 6
    assert leftovers(library.exports) == []
    assert finished(library.exports)


@pytest.mark.faults      # kills and interrupts: the tool's process handling
def test_a_source_replaced_during_its_encode_is_made_again_from_the_new_one(batch):  # noqa: F811
    """`mv other.mp4 final.mp4` mid-encode: the export is of the new bytes, and the
    registry, status and a later run agree that it is up to date."""
    library, platforms, ffmpeg = batch
    args = library.args(f"platforms_dir={platforms}", f"ffmpeg={ffmpeg}", "segment=women")
    final = library.root / "women/18-23/title-0/final.mp4"
    replacement = final.with_name("other.mp4")
    shutil.copy(library.root / "women/18-23/title-5/final.mp4", replacement)
    new_sha = hashlib.sha256(replacement.read_bytes()).hexdigest()
    for index in range(1, 6):
        shutil.rmtree(library.root / f"women/18-23/title-{index}")
    run = start_doit(*args)
    wait_for(lambda: temporaries(library.exports))
    os.replace(replacement, final)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    sidecar = read_json(library.exports / "women/18-23/title-0/youtube.export.json")
    assert sidecar["source"]["sha256"] == new_sha
    assert sidecar["source"]["probe"]["width"] == 352 + 8 * 5      # title-5's frame
    assert statuses(library.exports) == {("title-0", "youtube"): "exported"}
    status = run_doit("status", "--json", *args, check=0)
    assert json.loads(status.stdout)["total"]["exported"] == 1
    again = run_doit(*args, check=0)
    assert executed_tasks(again.stdout) == []


def worker_pids(run_pid):
    """The doit -n workers: the run's child processes that are Python (not ffmpeg)."""
    children = Path(f"/proc/{run_pid}/task/{run_pid}/children").read_text().split()
    return [int(pid) for pid in children
            if b"ffmpeg" not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]]


@pytest.mark.faults      # kills and interrupts: the tool's process handling
def test_kill_9_of_one_worker_fails_its_export_and_the_batch_finishes(batch):  # noqa: F811
    library, platforms, ffmpeg = batch
    args = library.args(f"platforms_dir={platforms}", f"ffmpeg={ffmpeg}")
    run = start_doit("-n", "2", *args)
    wait_for(lambda: temporaries(library.exports) and len(worker_pids(run.pid)) == 2)
    os.kill(worker_pids(run.pid)[0], signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode != 0, stdout + stderr
    failed = [line for line in stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "the worker process running it died (killed by signal 9)" \
        in failed[0], stderr
    assert len(exported_videos(library.exports)) == 5
    again = run_doit(*args, check=0)            # the next run makes it
    assert len(executed_tasks(again.stdout)) == 1
    assert len(exported_videos(library.exports)) == 6
    assert leftovers(library.exports) == []


def test_a_worker_waiting_for_a_job_ends_once_its_run_is_gone():
    """A `doit -n` worker whose run was killed (and whose one interrupt was spent, or never
    came) must not wait for jobs forever, holding the run's output pipes open."""
    jobs, results = multiprocessing.Queue(), multiprocessing.Queue()
    jobs.put("a job")
    with_run = OrphanAwareQueue(jobs, results, parent_pid=os.getppid())
    assert with_run.get() == "a job"
    orphaned = OrphanAwareQueue(jobs, results, parent_pid=os.getppid() + 1)  # not our parent
    started = time.monotonic()
    assert orphaned.get() is None, "no more jobs: the worker tears down and ends"
    assert time.monotonic() - started < 3 * POLL_S
