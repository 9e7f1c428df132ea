"""doit's MD5 checker, hashing each file once per process instead of once per task.

A title's four platform tasks all have its final.mp4 as a file_dep, and doit's MD5Checker
hashes it for each of them when they are saved after a first run, and again for each when
its mtime changed: four reads of the same bytes. Here the digest is remembered by path and
exporter.model.files.file_identity: any write, rename or touch asks for a new one. The
states saved are doit's own (mtime, size, md5), so the DB stays readable by doit.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from doit import dependency

from exporter.model.files import file_identity


@functools.lru_cache(maxsize=None)
def _md5_of(path, identity):
    return dependency.get_file_md5(path)


def file_md5(path: str) -> str:
    """The file's md5, computed at most once per file identity (files.file_identity) in a
    process, as files.sha256_file does for sha256."""
    return _md5_of(path, file_identity(path))


class MD5Checker(dependency.MD5Checker):
    """doit's MD5Checker with file_md5. It keeps doit's class name on purpose: doit saves
    the checker's name with each task and re-runs every task whose checker changed, and
    nothing about the saved state has."""

    def check_modified(self, file_path: str, file_stat: os.stat_result,
                       state: tuple[float, int, str]) -> bool:
        timestamp, size, digest = state
        if file_stat.st_mtime == timestamp:
            return False
        if file_stat.st_size != size:
            return True
        return digest != file_md5(file_path)

    def get_state(self, dep: str, current_state: Any) -> tuple[float, int, str] | None:
        timestamp = os.path.getmtime(dep)
        if current_state and current_state[0] == timestamp:
            return None     # saved with this mtime already: nothing to hash
        return timestamp, os.path.getsize(dep), file_md5(dep)
