"""The exports' states, title by title: what the library stamp proves a no-op by.

One stat per export file (210,000 at 10,000 titles of four platforms), the price of
certifying the bytes (docs/performance.md): read through statx into one buffer where libc
has it (model/file_states.py), shared with a forked child on two cores or more, and begun
as early as the command line names the exports root: while doit and this package import,
list the library and take the inputs' states, the child has read most of them.

Imports nothing heavy: the loader begins the child before its own imports.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import mmap
import os
import signal
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from exporter.model import layout
from exporter.model.file_states import directory_states


def title_outputs(exports: Path, keys: list[str], file_names: list[str]) -> dict[str, str]:
    """Per title: a digest of its exports directory's state and of each of its exports'
    files' states (`file_names`: every platform's targets). The directory's state changes
    when a file is created, removed or renamed; a file's own state, when it is written in
    place (ctime cannot be set back), which the directory's does not show.

    One stat per file, the price of certifying the bytes (docs/performance.md): 200,000 at
    10,000 titles of four platforms. With two cores or more, a forked child shares them
    (SharedDigests; threads do not help: each stat is too short to give up the GIL for;
    two threads were twice as slow as one, two processes 1.7 times as fast)."""
    shared = SharedDigests.start(str(exports), keys, file_names)
    return shared.finish() if shared else outputs_digests(str(exports), keys, file_names)


FORK_FROM = 2000        # titles: below, a fork costs more than the half it takes
CHUNK = 200             # titles claimed at a time by each of the two processes


class SharedDigests:
    """outputs_digests of `keys` by a forked child and this process together, whatever
    else each is doing: the child takes chunks of titles from the front from the moment it
    starts; this process, from the back once it calls finish(); they stop where they meet,
    so both end about together however busy this process was meanwhile.

    Each writes the chunk it claims into shared memory (the child's ascending, this
    process's descending) before reading the other's, and stops only when the other has
    claimed a chunk strictly past its own: a chunk is then never missed, at worst taken by
    both (the same digests). A child that fails has its titles taken here instead."""

    def __init__(self, root: str, keys: list[str], file_names: list[str]):
        self.root, self.keys, self.file_names = root, keys, file_names
        self.chunks = (len(keys) + CHUNK - 1) // CHUNK
        self.claims = mmap.mmap(-1, 16)      # [the child's chunk, this process's chunk]
        self.set_claim(0, -1)
        self.set_claim(1, self.chunks)
        self.wait: Callable[[], dict | None] = lambda: None
        self.stop: Callable[[], None] = lambda: None

    @classmethod
    def start(cls, root: str, keys: list[str], file_names: list[str]) -> SharedDigests | None:
        """Begun in a child; None when the library is too small or this machine has one
        core (outputs_digests alone is then faster)."""
        if len(keys) < FORK_FROM or len(os.sched_getaffinity(0)) < 2:
            return None
        shared = cls(root, keys, file_names)
        shared.wait, shared.stop = fork_json(shared.child_digests)
        return shared

    def claim(self, side: int) -> int:
        return struct.unpack_from("q", self.claims, 8 * side)[0]

    def set_claim(self, side: int, chunk: int) -> None:
        struct.pack_into("q", self.claims, 8 * side, chunk)

    def chunk_digests(self, chunk: int) -> dict[str, str]:
        return outputs_digests(self.root, self.keys[chunk * CHUNK:(chunk + 1) * CHUNK],
                               self.file_names)

    def child_digests(self) -> dict[str, str]:
        digests = {}
        for chunk in range(self.chunks):
            self.set_claim(0, chunk)
            if self.claim(1) < chunk:
                break
            digests.update(self.chunk_digests(chunk))
        return digests

    def finish(self) -> dict[str, str]:
        """Every title's digest: this process's chunks, then the child's."""
        mine, lowest = {}, self.chunks
        for chunk in reversed(range(self.chunks)):
            self.set_claim(1, chunk)
            if self.claim(0) > chunk:
                break
            mine.update(self.chunk_digests(chunk))
            lowest = chunk
        theirs = self.wait()
        if theirs is None:
            theirs = {}
            for chunk in range(lowest):
                theirs.update(self.chunk_digests(chunk))
        return {**theirs, **mine}


def fork_json(compute: Callable[[], Any]) -> tuple[Callable[[], Any], Callable[[], None]]:
    """compute() in a forked child, meanwhile: (wait, stop). wait() gives its result (None
    when the child could not: the caller computes it itself); stop() kills a child no
    longer wanted. A child never waited for is stopped when this process exits."""
    try:
        read, write = os.pipe()
        pid = os.fork()
    except OSError:
        return (lambda: None), (lambda: None)
    if pid == 0:        # the child: its result down the pipe, then out, running nothing else
        status = 1
        try:
            os.close(read)
            with os.fdopen(write, "wb") as pipe:
                pipe.write(json.dumps(compute()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    waited = []

    def wait() -> Any:
        waited.append(True)
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        try:
            return json.loads(data) if status == 0 else None
        except ValueError:
            return None

    def stop_unwaited() -> None:
        if not waited:
            waited.append(True)
            with contextlib.suppress(OSError):
                os.close(read)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    atexit.register(stop_unwaited)
    return wait, stop_unwaited


class EarlyOutputs:
    """The stamp's title_outputs, begun before they are asked for (SharedDigests): the
    child works while this process imports, lists the library and takes its inputs'
    states, then both finish the rest. The keys are the stamp's titles, not the
    listing's; the file names the ones the stamp was written for, or those given."""

    def __init__(self, exports: Path | str, file_names: list[str] | None = None):
        self.root = os.path.abspath(exports)
        self.keys: list[str] = []
        self.shared: SharedDigests | None = None
        try:
            with open(os.path.join(self.root, layout.STAMP), "rb") as file:
                stamp = json.load(file)
        except (OSError, ValueError):
            stamp = None
        titles = stamp.get("titles") if isinstance(stamp, dict) else None
        if file_names is None and isinstance(stamp, dict):
            file_names = stamp.get("file_names")
        self.file_names = file_names
        if isinstance(titles, dict) and isinstance(file_names, list):
            self.keys = list(titles)
            self.shared = SharedDigests.start(self.root, self.keys, file_names)

    def digests(self, keys: list[str], file_names: list[str]) -> dict[str, str] | None:
        """The digests of `keys`, when the child was computing exactly those (once)."""
        if self.shared is None or keys != self.keys or file_names != self.file_names:
            return None
        shared, self.shared = self.shared, None
        return shared.finish()

    def stop(self) -> None:
        if self.shared is not None:
            self.shared.stop()
            self.shared = None


BEGUN: list[EarlyOutputs] = []      # by begin_early, at most one


def begin_early(exports: str | None) -> None:
    """Begin the stamp's output states of the exports root the command line names, before
    anything else is imported or read (the loader, at its import)."""
    if exports is not None:
        BEGUN.append(EarlyOutputs(exports))


def early_outputs(exports: Path, file_names: list[str]) -> EarlyOutputs:
    """The states begun at import, when they are of this root and these files; else
    begun now (the platforms just loaded), the other child stopped."""
    root = os.path.abspath(exports)
    while BEGUN:
        early = BEGUN.pop()
        if early.root == root and early.file_names == file_names:
            return early
        early.stop()
    return EarlyOutputs(exports, file_names)


ABSENT = "absent"


def outputs_digests(root: str, keys: list[str], file_names: list[str],
                    reader_of: Callable[[list[str]], Any] = directory_states
                    ) -> dict[str, str]:
    """title_outputs for `keys`, in this process: each title's directory opened, its own
    state and its files' read relative to it (sparing the kernel the whole path again),
    through statx into one buffer where libc has it (model/file_states.py: half the time
    of os.stat's), else os.stat. A title missing some files has them named before its
    digest (`absent NAME,NAME DIGEST`): the same stat proves a target is there
    (absent_files)."""
    reader = reader_of(file_names)
    opened, digests = os.O_RDONLY | os.O_DIRECTORY, {}
    for key in keys:
        try:
            directory = os.open(f"{root}/{key}", opened)
        except OSError as error:
            digests[key] = f"no folder: {error.errno}"
            continue
        try:
            states, failures = reader.read(directory)
        finally:
            os.close(directory)
        if failures:    # missing, or a link loop, no permission: not proven
            states += repr(failures).encode()
        digest = hashlib.blake2b(states, digest_size=12).hexdigest()
        absent = [file_names[index] for index, _ in failures if index >= 0]
        digests[key] = f"{ABSENT} {','.join(absent)} {digest}" if absent else digest
    return digests


def absent_files(digest: str, file_names: Iterable[str]) -> set[str]:
    """The files of `file_names` outputs_digests found missing (or unreadable) for a title:
    all of them when its folder was not there."""
    if digest.startswith(f"{ABSENT} "):
        return set(digest.split(" ")[1].split(","))
    return set(file_names) if digest.startswith("no folder") else set()


