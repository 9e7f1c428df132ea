"""Atomic file helpers (real files, no ffmpeg)."""

import os
import subprocess
import tempfile

import pytest

from exporter.model.files import (
    remove_stale_temps,
    scratch_directory,
    temp_path_for,
    write_json_atomic,
)

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once


def test_json_is_written_atomically_and_not_rewritten_when_equal(tmp_path):
    path = tmp_path / "a" / "doc.json"
    assert write_json_atomic(path, {"b": 1, "a": [1, 2]}) is True
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    stamp = path.stat().st_mtime_ns
    assert write_json_atomic(path, {"a": [1, 2], "b": 1}) is False
    assert path.stat().st_mtime_ns == stamp
    assert write_json_atomic(path, {"a": 2}) is True
    assert os.listdir(path.parent) == ["doc.json"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_temporaries_are_hidden_and_cleaned(tmp_path):
    target = tmp_path / "youtube.mp4"
    temp = temp_path_for(target)
    assert temp.parent == tmp_path and temp.name.startswith(".youtube.mp4.")
    temp.write_bytes(b"partial")
    (tmp_path / ".youtube.mp4.99999.tmp").write_bytes(b"from a killed run")
    (tmp_path / ".tiktok.mp4.1.tmp").write_bytes(b"someone else's")
    remove_stale_temps(target)
    assert sorted(os.listdir(tmp_path)) == [".tiktok.mp4.1.tmp"]


def test_a_scratch_directory_a_killed_run_left_is_deleted_by_the_next(tmp_path, monkeypatch):
    """The colour check's glimpses live in the system's temp: a run killed with kill -9
    leaves its directory, named with its process id; the next encode deletes it once that
    process is gone, never one of a live process."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"reelexport-glimpses-{dead.pid}-k9"
    stale.mkdir()
    (stale / "render.nut").write_bytes(b"left by a killed run")
    alive = tmp_path / f"reelexport-glimpses-{os.getppid()}-live"
    alive.mkdir()
    with scratch_directory("reelexport-glimpses-") as directory:
        assert directory.is_dir() and directory.name.startswith(f"reelexport-glimpses-{os.getpid()}-")
        assert not stale.exists() and alive.exists()
    assert not directory.exists()
