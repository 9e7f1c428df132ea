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
    """doit's MD5Checker that trusts no timestamp: a file is unchanged without hashing only
    when its size, inode, mtime and ctime are all as saved; on any difference its bytes are
    hashed and compared. doit's own answers "unchanged" as soon as the mtime is equal, so a
    render redelivered by `cp -p`, `rsync -a` or `tar x` (new bytes, old mtime) was never
    exported again. It keeps doit's class name on purpose: doit saves the checker's name with
    each task and re-runs every task whose checker changed. A state saved by an earlier
    version (mtime, size, md5) has no inode or ctime, so the file is hashed to be sure.
    """

    def check_modified(self, file_path: str, file_stat: os.stat_result,
                       state: list | tuple) -> bool:
        if len(state) == 5 and stat_fields(file_stat) == (state[0], state[1], *state[3:]):
            return False
        if file_stat.st_size != state[1]:
            return True
        return state[2] != file_md5(file_path)

    def get_state(self, dep: str, current_state: Any) -> tuple | None:
        fields = stat_fields(os.stat(dep))
        if current_state and len(current_state) == 5 and fields == (
                current_state[0], current_state[1], *current_state[3:]):
            return None     # saved with this very state already: nothing to hash
        mtime, size, inode, ctime = fields
        return mtime, size, file_md5(dep), inode, ctime


def stat_fields(stat: os.stat_result) -> tuple[float, int, int, int]:
    """(mtime, size, inode, ctime in ns): what any write, replacement or touch changes."""
    return stat.st_mtime, stat.st_size, stat.st_ino, stat.st_ctime_ns
