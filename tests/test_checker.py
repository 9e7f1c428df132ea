"""exporter.checker.MD5Checker: doit's states, each file hashed once per process."""

import os

from doit import dependency

from exporter.pipeline import checker
from exporter.pipeline.checker import MD5Checker


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


def test_states_are_doits_and_four_tasks_hash_a_source_once(tmp_path, monkeypatch):
    source = tmp_path / "final.mp4"
    source.write_bytes(b"x" * 100_000)
    calls = counting_md5(monkeypatch)
    states = [MD5Checker().get_state(str(source), None) for _ in range(4)]
    assert calls == [str(source)]
    assert states == [dependency.MD5Checker().get_state(str(source), None)] * 4
    assert MD5Checker().get_state(str(source), states[0]) is None   # same mtime: no hash


def test_a_new_mtime_or_file_is_hashed_again(tmp_path, monkeypatch):
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
