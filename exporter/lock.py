"""One writer per exports tree: an exclusive flock on {exports}/.lock.

The kernel drops an flock when its last holder exits, however it exits, so a lock left by
a dead run is simply taken over; there is no stale-lock cleanup to get wrong. A process
forked while the lock is held (a `doit -n N` worker) closes its inherited copy at once and
is told to stop when its parent dies: otherwise a `kill -9` of the run would leave workers
that keep the tree locked forever.
"""

import fcntl
import os
import signal
import sys
from pathlib import Path

from .errors import ExportError
from .run import die_with_parent


class LockHeld(ExportError):
    """Another live process is writing into the same exports tree."""


def acquire(lock_path):
    """Lock `lock_path` for this process (and its children) or raise LockHeld at once."""
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
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    os.register_at_fork(after_in_child=lambda: release_in_child(fd))
    return fd


def release_in_child(fd):
    """In a process forked while the lock is held: drop the inherited lock descriptor (the
    flock stays with the parent alone) and die with the parent."""
    try:
        os.close(fd)
    except OSError:
        pass
    die_with_parent(signal.SIGTERM)   # its handler stops ffmpeg and deletes the temporary


def acquire_or_exit(exports):
    """The exports tree's lock, or exit 4 at once saying who holds it."""
    try:
        return acquire(Path(exports) / ".lock")
    except LockHeld as held:
        sys.stderr.write(f"reelexport: refused: {held}\n")
        raise SystemExit(4) from None
