"""The states of many files in one directory, at the kernel's price: statx(2) through ctypes.

The library stamp proves a no-op by the state of every export file: 210,000 stats at 10,000
titles. The syscall costs ~1.3 us on this project's machines; os.stat adds ~1.4 us of
Python around it (a stat_result with 20 fields, floats among them), as much again. Here
statx writes each state into one buffer and the fields that matter are read out of it all
at once, by strided views, so Python's share is one foreign call per file.

statx's layout is the same on every architecture (unlike struct stat). Where libc has no
statx (not glibc >= 2.28, not Linux), or the kernel refuses it, `directory_states` gives
OsStatStates: the same reading by os.stat, twice the time.
"""

from __future__ import annotations

import ctypes
import os
from array import array

RECORD = 256                    # sizeof(struct statx)
WORDS = RECORD // 8
# 64-bit words of a record: stx_ino, stx_size; stx_ctime and stx_mtime (seconds, then
# nanoseconds with 4 zeroed bytes: the kernel clears the whole record before filling it)
FIELDS = (4, 5, 12, 13, 14, 15)
MASK = 0x100 | 0x200 | 0x80 | 0x40          # STATX_INO | STATX_SIZE | STATX_CTIME | STATX_MTIME
AT_EMPTY_PATH = 0x1000


def _libc_statx():
    try:
        function = ctypes.CDLL(None, use_errno=True).statx
    except (AttributeError, OSError):
        return None
    function.restype = ctypes.c_int
    return function


class DirectoryStates:
    """Reads the states of one directory and of the same `names` in it, again and again.

    read(dir_fd) -> (bytes, failures): bytes that change when the directory or any of the
    files is created, removed, renamed, written or touched (inode, size, ctime, mtime of
    each; ctime cannot be set back), and (index into names, errno) of each that failed.
    """

    def __init__(self, names: list[str]):
        self.names = [name.encode() for name in names]
        self.buffer = ctypes.create_string_buffer(RECORD * (len(names) + 1))
        base = ctypes.addressof(self.buffer)
        self.records = [ctypes.c_void_p(base + RECORD * index) for index in range(len(names) + 1)]
        self.calls = list(zip(self.names, self.records[1:]))
        self.words = memoryview(self.buffer).cast("B").cast("Q")

    def read(self, dir_fd: int) -> tuple[bytes, list[tuple[int, int]]]:
        statx, mask, failures = STATX, MASK, []
        if statx(dir_fd, b"", AT_EMPTY_PATH, mask, self.records[0]):
            failures.append((-1, ctypes.get_errno()))
        for index, (name, record) in enumerate(self.calls):
            if statx(dir_fd, name, 0, mask, record):
                failures.append((index, ctypes.get_errno()))
        for index, _ in failures:       # a failed call leaves the last title's state there
            ctypes.memset(self.records[index + 1], 0, RECORD)
        words = self.words
        return b"".join(words[field::WORDS].tobytes() for field in FIELDS), failures


def _answers() -> bool:
    """statx answers here: a seccomp filter or an old kernel can refuse it (ENOSYS)."""
    directory = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return not DirectoryStates([]).read(directory)[1]
    finally:
        os.close(directory)


STATX = _libc_statx()
if STATX is not None and not _answers():
    STATX = None


class OsStatStates:
    """DirectoryStates by os.stat: the states as 64-bit numbers (repr was a third of the
    time), failures the same."""

    def __init__(self, names: list[str]):
        self.names = names

    def read(self, dir_fd: int) -> tuple[bytes, list[tuple[int, int]]]:
        stat, numbers, failures = os.stat, array("q"), []
        add = numbers.extend
        state = stat(dir_fd)
        add((state.st_ino, state.st_mtime_ns, state.st_ctime_ns))
        for index, name in enumerate(self.names):
            try:
                state = stat(name, dir_fd=dir_fd)
                add((state.st_ino, state.st_size, state.st_mtime_ns, state.st_ctime_ns))
            except OSError as error:    # missing, a link loop, no permission
                add((-1, error.errno))
                failures.append((index, error.errno))
        return numbers.tobytes(), failures


def directory_states(names: list[str]) -> DirectoryStates | OsStatStates:
    """A reader of these names' states: by statx where it is to be had, else os.stat."""
    return DirectoryStates(names) if STATX is not None else OsStatStates(names)
