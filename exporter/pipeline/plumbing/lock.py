"""One writer per exports tree: an exclusive flock on {exports}/.lock.

The kernel drops an flock when its last holder exits, however it exits, so a lock left by
a dead run is simply taken over; there is no stale-lock cleanup to get wrong. A process
forked while the lock is held (a `doit -n N` worker) closes its inherited copy at once and
is told to stop when its parent dies: otherwise a `kill -9` of the run would leave workers
that keep the tree locked forever.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
from pathlib import Path

from exporter.media.ffmpeg import die_with_parent
from exporter.model import layout
from exporter.model.errors import ExportError

LOG = logging.getLogger(__name__)


class LockHeld(ExportError):
    """Another live process is writing into the same exports tree."""


def acquire(lock_path: Path | str, by: str = "") -> int:
    """Lock `lock_path` for this process (and its children) or raise LockHeld at once.
    The lock file then reads the pid, and `by` (what holds it) in parentheses."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise LockHeld(f"{lock_path} is held by pid {holder}: another run is writing "
                       f"into {lock_path.parent}; wait for it or stop it") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}{f' ({by})' if by else ''}\n".encode("ascii"), 0)
    stat = os.fstat(fd)
    _HELD[fd] = (stat.st_dev, stat.st_ino)
    return fd


def release(fd: int) -> None:
    """Give the lock back before the process ends (a command that held it briefly)."""
    _HELD.pop(fd, None)
    os.close(fd)


# Lock descriptors this process holds: fd -> (device, inode) of the lock file. A closed
# descriptor's number can be reused, so the child checks the identity before closing.
_HELD = {}


def release_in_child() -> None:
    """In a process forked while a lock is held (a `doit -n` worker): drop the inherited
    lock descriptor, so the flock stays with the run alone, and die with the run."""
    inherited = False
    for fd, identity in list(_HELD.items()):
        try:
            stat = os.fstat(fd)
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) == identity:
            os.close(fd)
            inherited = True
    _HELD.clear()
    if inherited:
        die_with_parent(signal.SIGTERM)   # its handler stops ffmpeg, deletes the temporary
        if os.getppid() != _FORKED_BY[0]:
            # The run died before the line above. Not a SIGTERM to ourselves: its
            # KeyboardInterrupt would be raised in this at-fork hook, where Python reports
            # and drops exceptions, and the worker would then wait for jobs forever.
            os._exit(128 + signal.SIGTERM)


# The pid of the process that forks, noted just before: a run killed between the fork and
# die_with_parent would otherwise leave its worker waiting forever.
_FORKED_BY = [0]


def note_forking_process() -> None:
    _FORKED_BY[0] = os.getpid()


os.register_at_fork(before=note_forking_process, after_in_child=release_in_child)


# The exit status of a run refused because another holds the exports (the tree's lock, or
# a bucket prefix's lease): `doit watch` waits and tries again on it.
HELD = 4


def acquire_or_exit(exports: Path | str) -> int:
    """The exports tree's lock, or exit 4 at once saying who holds it."""
    try:
        return acquire(Path(exports) / layout.LOCK)
    except LockHeld as held:
        LOG.error(f"reelexport: refused: {held}")
        raise SystemExit(HELD) from None
    except OSError as error:        # a read-only root, a directory named .lock
        LOG.error(f"reelexport: refused: the exports root cannot be written: "
                  f"{error.filename or exports}: {error.strerror or error}")
        raise SystemExit(3) from None
