"""Files put into place atomically, hashed once per process, read back as JSON.

Every file lands under its final name only by os.replace from a temporary name in the
same directory, after it is complete: a crash leaves a '.*.tmp' file, never a target.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


def finish_despite_interrupts(cleanup: Callable[[], object]) -> None:
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


def file_identity(path: Path | str) -> tuple[int, int, int, int, int]:
    """(device, inode, size, mtime, ctime in ns): changes whenever the file's content can
    have, a write in place with its old mtime put back (`cp -p`, `rsync -a`, `tar x`)
    included: the kernel sets ctime on every write and no call sets it back. A safe key for
    remembering what was computed from a file's bytes."""
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def file_state(path: Path | str) -> tuple[int, int, int, int] | tuple[str, int | None] | None:
    """What changes whenever the file at `path` is written, touched, replaced or removed."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as error:            # a link loop, no permission: the title's failure
        return ("unreadable", error.errno)
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@functools.lru_cache(maxsize=1024)
def _sha256_of(path, identity, chunk_size=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path | str) -> str:
    """sha256 of a file, hashed once per process while the file is unchanged (the four
    platform exports of a title hash the same source)."""
    return _sha256_of(str(path), file_identity(path))


def sha256_or_none(path: Path) -> str | None:
    """sha256 of a regular file; None when it is absent or anything else (a FIFO, a device:
    reading one would never end), which the export then refuses with its cause."""
    return sha256_file(path) if path.is_file() else None


def temp_path_for(target: Path | str) -> Path:
    """A hidden temporary name beside `target`, unique per process: '.youtube.mp4.1234.tmp'."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}{TEMP_SUFFIX}")


@contextmanager
def temporary(target: Path | str) -> Iterator[Path]:
    """A hidden temporary name beside `target` for the block, deleted afterwards however the
    block ends, interrupts included (once published by `publish`, it is already gone)."""
    temp = temp_path_for(target)
    try:
        yield temp
    finally:
        finish_despite_interrupts(lambda: temp.unlink(missing_ok=True))


def remove_stale_temps(target: Path | str) -> None:
    """Delete temporaries a killed run left for `target` (any pid)."""
    target = Path(target)
    for stale in target.parent.glob(f".{target.name}.*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


# Linux's FICLONE ioctl: the destination shares the source's blocks, copy-on-write (btrfs,
# XFS, bcachefs); a filesystem without it (ext4, tmpfs) refuses, and the bytes are copied.
FICLONE = 0x40049409


@contextmanager
def scratch_directory(prefix: str) -> Iterator[Path]:
    """A directory of the system's temp for the block, deleted afterwards; named with this
    process's id, so that one a killed run left (kill -9: nothing ran to delete it) is
    deleted by the next that makes one, once no process has that id."""
    root = Path(tempfile.gettempdir())
    for stale in root.glob(f"{prefix}*-*"):
        pid = stale.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    directory = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    try:
        yield directory
    finally:
        finish_despite_interrupts(lambda: shutil.rmtree(directory, ignore_errors=True))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # another user's process
        return True
    return True


def clone_file(source: Path | str, destination: Path | str) -> None:
    """Make `destination` a file of its own with `source`'s bytes: a reflink where the
    filesystem has them (no space, instant), else a copy. Never a hard link: a write in
    place to one of two links would change the other (docs/performance.md)."""
    with open(source, "rb") as src, open(destination, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return
        except OSError:
            pass
        try:
            shutil.copyfileobj(src, dst, 1 << 20)
        except OSError as error:        # a full disk: said of the file being written
            raise naming(error, destination) from None


def publish(temp: Path | str, target: Path | str) -> None:
    """Make a complete temporary file visible under its final name, durably."""
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, target)


def current_umask() -> int:
    """The process umask (tempfile creates 0600 files; published files follow the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_text(document: Any, compact: bool = False) -> str:
    """Canonical JSON text: sorted keys, two-space indent, trailing newline. `compact`
    (files only the tool reads, large ones): one line, by the C encoder; an indent makes
    json use its pure-Python encoder, several times slower."""
    if compact:
        return json.dumps(document, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":")) + "\n"
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json_atomic(path: Path | str, document: Any, compact: bool = False) -> bool:
    """Write `document` to `path` atomically; skip the write when the content is unchanged.

    Returns True when the file was (re)written.
    """
    return write_text_atomic(path, json_text(document, compact))


def write_text_atomic(path: Path | str, text: str) -> bool:
    """Write `text` to `path` atomically (temporary file + rename), only when it differs.

    Returns True when the file was (re)written.
    """
    return write_bytes_atomic(path, text.encode("utf-8"))


UNREAD = object()


def write_bytes_atomic(path: Path | str, data: bytes, before: Any = UNREAD) -> bool:
    """Write `data` to `path` atomically (temporary file + rename), only when it differs
    from the file's bytes (`before`: those bytes when the caller has read them already,
    None for no file). Returns True when the file was (re)written."""
    path = Path(path)
    if before is UNREAD:
        try:
            before = path.read_bytes()
        except OSError:     # absent, or not a file: the write says why
            before = None
    if before == data:
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile("wb", dir=path.parent,  # noqa: SIM115
                                             prefix=f".{path.name}.", suffix=TEMP_SUFFIX,
                                             delete=False)
    except OSError as error:
        raise naming(error, path) from None
    try:
        with handle:
            handle.write(data)
        os.chmod(handle.name, 0o666 & ~current_umask())
        publish(handle.name, path)
    except BaseException as error:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise naming(error, path) from None
        raise
    return True


def naming(error: OSError, path: Path | str) -> OSError:
    """`error` as an OSError of the same errno naming `path` (not its temporary file): a
    full disk or a directory in place of the file is said of the file a user knows."""
    if error.filename == str(path) and error.filename2 is None:
        return error
    return OSError(error.errno, error.strerror or str(error), str(path))


def read_json(path: Path | str) -> Any:
    """Parsed JSON from path, or None when it is missing, not a readable file (a
    directory in its place) or not valid JSON (nested too deeply, a number too long).
    json, not orjson: orjson parses registry.json's 40,000 rows a quarter faster but holds
    75 MB more (json shares the rows' key strings)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
