"""exporter.checker.MD5Checker: doit's states, each file hashed once per process."""

import os

import pytest
from doit import dependency

from exporter.pipeline.plumbing import checker
from exporter.pipeline.plumbing.checker import MD5Checker

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once


def counting_md5(monkeypatch):
    """doit's own get_file_md5 (it still reads the file), counting its calls."""
    calls = []
    real = dependency.get_file_md5

    def counted(path):
        calls.append(path)
        return real(path)
    monkeypatch.setattr(dependency, "get_file_md5", counted)
    checker._md5_of.cache_clear()
    return calls


def test_states_extend_doits_and_four_tasks_hash_a_source_once(tmp_path, monkeypatch):
    source = tmp_path / "final.mp4"
    source.write_bytes(b"x" * 100_000)
    calls = counting_md5(monkeypatch)
    states = [MD5Checker().get_state(str(source), None) for _ in range(4)]
    assert calls == [str(source)]
    doits = dependency.MD5Checker().get_state(str(source), None)
    assert [state[:3] for state in states] == [doits] * 4    # mtime, size, md5 as doit's
    assert MD5Checker().get_state(str(source), states[0]) is None   # same state: no hash
    assert not MD5Checker().check_modified(str(source), source.stat(), states[0])
    assert calls == [str(source)] * 2       # ours once, doit's own once


def write_in_place_keeping_mtime(path, data):
    """What `cp -p` over an existing file does: the same inode rewritten, the old mtime
    put back."""
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.write(data)
        handle.truncate()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_new_bytes_with_the_old_mtime_are_a_change(tmp_path, monkeypatch):
    source = tmp_path / "final.mp4"
    source.write_bytes(b"x" * 1000)
    calls = counting_md5(monkeypatch)
    state = MD5Checker().get_state(str(source), None)
    write_in_place_keeping_mtime(source, b"y" * 1000)           # same size, same mtime
    assert source.stat().st_mtime == state[0]
    assert MD5Checker().check_modified(str(source), source.stat(), state)
    write_in_place_keeping_mtime(source, b"z" * 900)            # another size too
    assert MD5Checker().check_modified(str(source), source.stat(), state)
    assert calls == [str(source)] * 2
    # a state saved by doit's own checker (mtime, size, md5): the mtime is not trusted
    write_in_place_keeping_mtime(source, b"w" * 1000)
    legacy = [state[0], 1000, dependency.get_file_md5(str(tmp_path / "final.mp4"))]
    assert not MD5Checker().check_modified(str(source), source.stat(), legacy)
    legacy[2] = state[2]                                        # the md5 of b"x" * 1000
    assert MD5Checker().check_modified(str(source), source.stat(), legacy)


def test_a_touch_or_a_replacement_is_hashed_and_judged_by_content(tmp_path, monkeypatch):
    source = tmp_path / "final.mp4"
    source.write_bytes(b"x" * 1000)
    calls = counting_md5(monkeypatch)
    state = MD5Checker().get_state(str(source), None)
    os.utime(source, ns=(0, source.stat().st_mtime_ns + 10**9))       # touched: same bytes
    assert not MD5Checker().check_modified(str(source), source.stat(), state)
    replaced = tmp_path / "new"
    replaced.write_bytes(b"y" * 1000)                                   # same size, new bytes
    os.utime(replaced, ns=(0, source.stat().st_mtime_ns))              # and the same mtime
    os.replace(replaced, source)
    assert MD5Checker().check_modified(str(source), os.stat(source), state)
    assert calls == [str(source)] * 3
