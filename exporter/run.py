"""The one place that starts processes and puts files into place.

Every file lands under its final name only by os.replace from a temporary name in the
same directory, after it is complete: a crash leaves a '.*.tmp' file, never a target.
"""

import ctypes
import functools
import hashlib
import io
import json
import multiprocessing
import os
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import EncodeError
from .progress import progress_updates

STDERR_TAIL_LINES = 20
TEMP_SUFFIX = ".tmp"
# ffmpeg messages that mean the machine, not the input, failed: worth another attempt.
IO_ERROR_MARKERS = ("No space left on device", "Input/output error", "File too large",
                    "Disk quota exceeded", "Stale file handle")


def run_ffmpeg(argv, progress=None):
    """Run ffmpeg; EncodeError with its stderr tail when it fails or is killed.

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


PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent(signum):
    """Ask Linux to send `signum` to this process when its parent dies.

    A `kill -9` of a run must not leave a worker holding the tree's lock, nor an ffmpeg
    that finishes (and re-opens, for +faststart) a temporary the next run has removed.
    """
    _LIBC.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)


def ffmpeg_dies_with_us():
    """preexec_fn of every ffmpeg: killed when the process that runs it dies. Only a
    system call, so it is safe in the child between fork and exec."""
    die_with_parent(signal.SIGKILL)


def follow_progress(process, progress):
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


def interrupt_once(signum, frame):
    """Ctrl-C / SIGTERM handler: raise KeyboardInterrupt once, then ignore both signals.

    An interrupt reaches doit, its workers and ffmpeg together, and doit then sends its
    workers SIGTERM: a second interrupt landing inside a worker's cleanup would skip it
    and leave ffmpeg finishing a temporary file. One interrupt per process is enough.
    """
    # A Python no-op rather than SIG_IGN: a signal already caught at the C level when the
    # handler becomes SIG_IGN surfaces as "OSError: Signal 15 ignored due to race condition".
    signal.signal(signal.SIGINT, ignore_signal)
    signal.signal(signal.SIGTERM, ignore_signal)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def ignore_signal(signum, frame):
    """Handler for the interrupts after the first: they change nothing."""


def stop_on_interrupt_once():
    """Install interrupt_once for SIGINT and SIGTERM (inherited by `doit -n` workers)."""
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)


def reap_workers(grace_s=15.0):
    """Wait for `doit -n` workers still cleaning up after an interrupt, then kill stragglers.

    Python joins child processes at exit; a worker that never ends would hang the run
    after Ctrl-C. A killed straggler can leave a temporary, which the next run removes.
    """
    deadline = time.monotonic() + grace_s
    for child in multiprocessing.active_children():
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join()


def finish_despite_interrupts(cleanup):
    """Run a short, idempotent cleanup to its end even if more interrupts arrive meanwhile
    (Ctrl-C reaches a worker, then doit's SIGTERM follows); then re-raise the last one."""
    pending = None
    while True:
        try:
            cleanup()
            break
        except KeyboardInterrupt as interrupt:
            pending = interrupt
    if pending is not None:
        raise pending


def interrupted(returncode, stderr_tail):
    """True when ffmpeg stopped because the user interrupted the run (Ctrl-C, kill).

    That is not a failure of the export: it must not be recorded, retried or remembered.
    """
    if returncode < 0:
        return -returncode in (signal.SIGINT, signal.SIGTERM)
    return "received signal 2" in stderr_tail or "received signal 15" in stderr_tail


def file_identity(path):
    """(device, inode, size, mtime in ns): changes whenever the file's content can have.

    Files are replaced, never rewritten in place, by this tool (a new inode), so this is a
    safe key for remembering what was computed from a file within one process.
    """
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _sha256_of(path, identity, chunk_size=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path):
    """sha256 of a file, hashed once per process while the file is unchanged (the four
    platform exports of a title hash the same source)."""
    return _sha256_of(str(path), file_identity(path))


def temp_path_for(target):
    """A hidden temporary name beside `target`, unique per process: '.youtube.mp4.1234.tmp'."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}{TEMP_SUFFIX}")


@contextmanager
def temporary(target):
    """A hidden temporary name beside `target` for the block, deleted afterwards however the
    block ends, interrupts included (once published by `publish`, it is already gone)."""
    temp = temp_path_for(target)
    try:
        yield temp
    finally:
        finish_despite_interrupts(lambda: temp.unlink(missing_ok=True))


def remove_stale_temps(target):
    """Delete temporaries a killed run left for `target` (any pid)."""
    target = Path(target)
    for stale in target.parent.glob(f".{target.name}.*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def publish(temp, target):
    """Make a complete temporary file visible under its final name, durably."""
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, target)


def current_umask():
    """The process umask (tempfile creates 0600 files; published files follow the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_text(document):
    """Canonical JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json_atomic(path, document):
    """Write `document` to `path` atomically; skip the write when the content is unchanged.

    Returns True when the file was (re)written.
    """
    return write_text_atomic(path, json_text(document))


def write_text_atomic(path, text):
    """Write `text` to `path` atomically (temporary file + rename), only when it differs.

    Returns True when the file was (re)written.
    """
    path = Path(path)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent,
                                         prefix=f".{path.name}.", suffix=TEMP_SUFFIX,
                                         delete=False)
    try:
        with handle:
            handle.write(text)
        os.chmod(handle.name, 0o666 & ~current_umask())
        publish(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return True


def read_json(path):
    """Parsed JSON from path, or None when it is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
