"""The one place that runs ffmpeg: its quiet prefix, its progress output, its stderr, and
its end when the process that runs it ends. (The input whitelists are part of each plan's
argv: exporter.media.plan.untrusted_input.)"""

from __future__ import annotations

import ctypes
import io
import signal
import subprocess
import threading
from collections.abc import Callable

from exporter.media.ffmpeg_progress import ProgressUpdate, progress_updates
from exporter.model.errors import EncodeError
from exporter.model.files import finish_despite_interrupts

STDERR_TAIL_LINES = 20
# ffmpeg messages that mean the machine, not the input, failed: worth another attempt.
IO_ERROR_MARKERS = ("No space left on device", "Input/output error", "File too large",
                    "Disk quota exceeded", "Stale file handle")
# How every ffmpeg here starts: quiet, never waiting for input, overwriting its temporary.
QUIET = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"]


def run_ffmpeg(argv: list[str],
               progress: Callable[[ProgressUpdate], object] | None = None) -> str:
    """Run ffmpeg; its stderr text (what a measuring filter prints); EncodeError with its
    stderr tail when it fails or is killed.

    On Ctrl-C or SIGTERM, ffmpeg is killed and waited for before the interrupt goes on: an
    ffmpeg left finishing its file could re-create the temporary after it was deleted.

    `progress`, when given, is called with each ProgressUpdate of ffmpeg's `-progress`
    output (about twice a second, the last one with done=True); `argv` itself is left as
    the caller recorded it.
    """
    if progress is not None:
        argv = [argv[0], "-progress", "pipe:1", "-nostats", *argv[1:]]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=ffmpeg_dies_with_us,
                               stdout=subprocess.DEVNULL if progress is None else subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        stderr_bytes = (process.communicate()[1] if progress is None
                        else follow_progress(process, progress))
    except BaseException:
        finish_despite_interrupts(lambda: (process.kill(), process.wait()))
        raise
    if process.returncode != 0:
        stderr = stderr_bytes.decode("utf-8", "replace").strip().splitlines()
        tail = "\n".join(stderr[-STDERR_TAIL_LINES:])
        if interrupted(process.returncode, tail):
            raise KeyboardInterrupt(f"ffmpeg stopped by {tail or 'a signal'}")
        if process.returncode < 0:
            number = -process.returncode
            cause = f"ffmpeg was killed by signal {number} ({signal.Signals(number).name})"
            raise EncodeError(cause, stderr_tail=tail, transient=True)
        last = stderr[-1] if stderr else "no message"
        cause = f"ffmpeg failed (exit {process.returncode}): {last}"
        raise EncodeError(cause, stderr_tail=tail,
                          transient=any(marker in tail for marker in IO_ERROR_MARKERS))
    return stderr_bytes.decode("utf-8", "replace")


PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent(signum: int) -> None:
    """Ask Linux to send `signum` to this process when its parent dies.

    A `kill -9` of a run must not leave a worker holding the tree's lock, nor an ffmpeg
    that finishes (and re-opens, for +faststart) a temporary the next run has removed.
    """
    _LIBC.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)


def ffmpeg_dies_with_us() -> None:
    """preexec_fn of every ffmpeg: killed when the process that runs it dies. Only a
    system call, so it is safe in the child between fork and exec."""
    die_with_parent(signal.SIGKILL)


def follow_progress(process: subprocess.Popen[bytes],
                    progress: Callable[[ProgressUpdate], object]) -> bytes:
    """Feed ffmpeg's stdout progress to `progress` until it exits; return its stderr bytes.

    stderr is drained by a thread meanwhile: ffmpeg blocks when a pipe nobody reads fills.
    """
    stderr = []
    drain = threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)
    drain.start()
    with io.TextIOWrapper(process.stdout, encoding="utf-8", errors="replace") as lines:
        for update in progress_updates(lines):
            progress(update)
    process.wait()
    drain.join()
    process.stderr.close()
    return stderr[0] if stderr else b""


def interrupted(returncode: int, stderr_tail: str) -> bool:
    """True when ffmpeg stopped because the user interrupted the run (Ctrl-C, kill).

    That is not a failure of the export: it must not be recorded, retried or remembered.
    """
    if returncode < 0:
        return -returncode in (signal.SIGINT, signal.SIGTERM)
    return "received signal 2" in stderr_tail or "received signal 15" in stderr_tail
