"""The library stamp: proof, title by title, that exports were up to date when a run ended.

A no-op of a large library spends its time in doit's per-task machinery: a Task object and
a dependency check for every export. When nothing doit would look at has changed since a
run that found or made a title's exports up to date, that work can only conclude "up to
date" again; the stamp lets `doit` skip it (exporter.pipeline.plumbing.loader), for the whole library
(the no-op) or for every title but the few that changed (a partial run).

The stamp holds digests of file states (inode, size, mtime, ctime; ctime cannot be set back
by hand, so a `touch -d` or a restored mtime still counts):

- global inputs, taken when the run loaded its tasks: versions, roots, preset and ffmpeg,
  every platform's up-to-date key (doit's config_changed), the platform YAML files and this
  package's code;
- global outputs, taken after the run ended: doit's DB (`forget`, `ignore`, `clean` change
  it), the registry and the gallery; and the history as the registry read it;
- per title, for each title some of whose exports were up to date at the end: its inputs
  (final.mp4, metadata.json, thumbnail.jpg: doit's file_dep) as loaded, its exports
  directory (a target created, deleted or renamed changes it) and each export's files (a
  write in place changes its ctime), and the platforms whose exports were up to date.

A global part differing means the normal path: doit checks every task by content (a file
whose state differs from the one saved is hashed: pipeline/plumbing/checker.py for the inputs,
pipeline/export/outputs.py for the exports' own files). A title differing, new, not in the stamp, or
whose entry lacks a selected platform (it failed, or was not selected) is checked; the
others are not. The stamp is conservative by construction: it can send a title down the
slow path needlessly, never skip a change doit would have seen.
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
from array import array
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import doit

from exporter import __version__
from exporter.model import layout, records
from exporter.model.file_states import directory_states
from exporter.model.files import file_state, read_json, write_json_atomic
from exporter.model.sources import INPUT_NAMES, Title
from exporter.pipeline.export.job import up_to_date_key

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from exporter.media.credentials import Credentials
    from exporter.model.settings import Settings
    from exporter.model.spec import Spec
    from exporter.pipeline.export.job import ExportJob

STAMP_NAME = layout.STAMP
STAMP_VERSION = 5
# Stands for "the history file as it is now" (its state may be None: no file yet).
NOW = object()
CODE_DIR = Path(__file__).resolve().parents[1]     # the exporter package, every layer


class Build(Protocol):
    """What the stamp reads of a loaded library (exporter.pipeline.export.library.Build), named
    here so that the stamp needs nothing of the module that uses it."""

    settings: Settings
    problems: list[str]
    ffmpeg: str
    credentials: Credentials | None
    all_specs: dict[str, Spec]
    selected_specs: dict[str, Spec]
    titles: list[Title]
    all_jobs: list[ExportJob]
    inputs_fingerprint: str
    title_inputs: dict[str, str]
    early_outputs: EarlyOutputs | None


class Fingerprint:
    """An incremental digest of values, fed in a fixed order."""

    def __init__(self):
        self._digest = hashlib.blake2b(digest_size=20)

    def feed(self, *values: object) -> None:
        self._digest.update(repr(values).encode())
        self._digest.update(b"\0")

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def inputs_fingerprint(build: Build) -> str:
    """Everything an export task's up-to-date check reads besides the titles' own files,
    the exports tree and the DB."""
    settings = build.settings
    fingerprint = Fingerprint()
    fingerprint.feed(STAMP_VERSION, __version__, doit.__version__, str(settings.renders),
                     str(settings.exports), str(settings.platforms_dir), settings.preset,
                     build.ffmpeg, tuple(build.problems))
    for path in sorted([*CODE_DIR.rglob("*.py"), *settings.platforms_dir.iterdir()]):
        fingerprint.feed(str(path), file_state(path))
    for spec in build.all_specs.values():
        fingerprint.feed(spec.name, up_to_date_key(spec, settings.preset, build.ffmpeg,
                                                        build.credentials))
    return fingerprint.hexdigest()


def with_published(base: str, published: dict[str, Any] | None) -> str:
    """The inputs fingerprint with the bucket's exports as listed (exports=s3://...)."""
    if published is None:
        return base
    fingerprint = Fingerprint()
    fingerprint.feed(base, sorted(published.items()))
    return fingerprint.hexdigest()


def title_inputs(titles: list[Title]) -> dict[str, str]:
    """Per title: a digest of its directory and its input files' states.

    30,000 stats at 10,000 titles, before the first task of every run: a plain loop, joined
    strings, and the states packed as 64-bit numbers (not a repr of tuples) take half the
    time of file_state's tuples.
    """
    stat, digests = os.stat, {}
    for title in titles:
        directory = str(title.directory)
        numbers = array("q")
        add = numbers.extend
        for name in INPUT_NAMES:
            try:
                state = stat(f"{directory}/{name}")
                add((state.st_ino, state.st_size, state.st_mtime_ns, state.st_ctime_ns))
            except FileNotFoundError:
                add((-1,))
            except OSError as error:    # a link loop, no permission: the title's failure
                add((-2, error.errno))
        digests[title.key] = hashlib.blake2b(directory.encode() + b"\0" + numbers.tobytes(),
                                             digest_size=12).hexdigest()
    return digests


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

    @classmethod
    def start(cls, root: str, keys: list[str], file_names: list[str]) -> SharedDigests | None:
        """Begun in a child; None when the library is too small or this machine has one
        core (outputs_digests alone is then faster)."""
        if len(keys) < FORK_FROM or len(os.sched_getaffinity(0)) < 2:
            return None
        shared = cls(root, keys, file_names)
        shared.wait = fork_json(shared.child_digests)
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


def fork_json(compute: Callable[[], Any]) -> Callable[[], Any]:
    """compute() in a forked child, meanwhile; the returned function waits for its result
    (None when the child could not give it: the caller computes it itself). A child never
    waited for is stopped when this process exits."""
    try:
        read, write = os.pipe()
        pid = os.fork()
    except OSError:
        return lambda: None
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
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    atexit.register(stop_unwaited)
    return wait


class EarlyOutputs:
    """The stamp's title_outputs, begun as soon as the platforms are known (SharedDigests):
    the child works while this process lists the library and takes its inputs' states,
    then both finish the rest. The stamped titles' keys are the stamp's, not the
    listing's."""

    def __init__(self, settings: Settings, file_names: list[str]):
        self.keys: list[str] = []
        self.file_names = file_names
        self.shared: SharedDigests | None = None
        stamp = read_json(stamp_path(settings))
        titles = stamp.get("titles") if isinstance(stamp, dict) else None
        if isinstance(titles, dict):
            self.keys = list(titles)
            self.shared = SharedDigests.start(str(settings.exports), self.keys, file_names)

    def digests(self, keys: list[str], file_names: list[str]) -> dict[str, str] | None:
        """The digests of `keys`, when the child was computing exactly those (once)."""
        if self.shared is None or keys != self.keys or file_names != self.file_names:
            return None
        shared, self.shared = self.shared, None
        return shared.finish()


ABSENT = "absent"


def outputs_digests(root: str, keys: list[str], file_names: list[str]) -> dict[str, str]:
    """title_outputs for `keys`, in this process: each title's directory opened, its own
    state and its files' read relative to it (sparing the kernel the whole path again),
    through statx into one buffer where libc has it (model/file_states.py: half the time
    of os.stat's), else os.stat. A title missing some files has them named before its
    digest (`absent NAME,NAME DIGEST`): the same stat proves a target is there
    (absent_files)."""
    reader = directory_states(file_names)
    if reader is None:
        return outputs_digests_by_os_stat(root, keys, file_names)
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


def outputs_digests_by_os_stat(root: str, keys: list[str],
                               file_names: list[str]) -> dict[str, str]:
    """outputs_digests where statx is not to be had: the states go into the digest as
    64-bit numbers (repr was a third of the time)."""
    stat, opened = os.stat, os.O_RDONLY | os.O_DIRECTORY
    digests = {}
    for key in keys:
        try:
            directory = os.open(f"{root}/{key}", opened)
        except OSError as error:
            digests[key] = f"no folder: {error.errno}"
            continue
        numbers = array("q")
        add = numbers.extend
        absent = []
        try:
            state = stat(directory)
            add((state.st_ino, state.st_mtime_ns, state.st_ctime_ns))
            for name in file_names:
                try:
                    state = stat(name, dir_fd=directory)
                    add((state.st_ino, state.st_size, state.st_mtime_ns, state.st_ctime_ns))
                except FileNotFoundError:
                    add((-1,))
                    absent.append(name)
                except OSError as error:    # a link loop, no permission: not proven
                    add((-2, error.errno))
                    absent.append(name)
        finally:
            os.close(directory)
        digest = hashlib.blake2b(numbers.tobytes(), digest_size=12).hexdigest()
        digests[key] = f"{ABSENT} {','.join(absent)} {digest}" if absent else digest
    return digests


def absent_files(digest: str, file_names: Iterable[str]) -> set[str]:
    """The files of `file_names` outputs_digests found missing (or unreadable) for a title:
    all of them when its folder was not there."""
    if digest.startswith(f"{ABSENT} "):
        return set(digest.split(" ")[1].split(","))
    return set(file_names) if digest.startswith("no folder") else set()


def export_file_owners(build: Build) -> dict[str, str]:
    """The files every platform's export of a title owns -> that platform, in the order
    of the platforms, then of records.TARGET_KINDS."""
    return {names[kind]: spec for spec in build.all_specs
            for names in [records.export_file_names(spec)] for kind in records.TARGET_KINDS}


def export_file_names(build: Build) -> list[str]:
    """The names of the files every platform's export of a title owns."""
    return list(export_file_owners(build))


def outputs_fingerprint(build: Build) -> str:
    """doit's DB, the registry and the gallery, as they are now."""
    settings = build.settings
    fingerprint = Fingerprint()
    for path in (settings.dep_file, settings.registry_file, settings.exports / layout.GALLERY_PAGE):
        fingerprint.feed(str(path), file_state(path))
    return fingerprint.hexdigest()


def history_fingerprint(build: Build, history_state: object = NOW) -> str:
    history = build.settings.exports / layout.HISTORY
    return repr(file_state(history) if history_state is NOW else history_state)


def stamp_path(settings: Settings) -> Path:
    return settings.exports / STAMP_NAME


@dataclass(frozen=True)
class StampCheck:
    """What the stamp proves for this library and this selection now."""

    stamp: dict[str, Any]
    # titles whose inputs and exports folder are as stamped -> the platforms then proven up
    # to date (their exports, and registry rows, are as that run left them)
    held: dict[str, frozenset[str]]
    proven: frozenset[str]          # titles needing no check: held, selected platforms proven
    changed: frozenset[str]         # titles of the library it does not prove
    removed: frozenset[str]         # titles it proved that the library no longer has
    history_changed: bool           # an upload (or a late event) since the registry was made

    @property
    def everything(self) -> bool:
        """Every title proven and none gone: the whole run is a no-op."""
        return not self.changed and not self.removed

    def proven_entries(self) -> dict[str, list]:
        """The stamp's entries of the held titles, as a new stamp keeps them."""
        return {key: self.stamp["titles"][key] for key in self.held}

    def proven_outcomes(self, jobs: list) -> dict[str, str]:
        """{task name: "up-to-date"} of the exports the stamp proves: nothing to check."""
        return {job.task_name: "up-to-date" for job in jobs
                if job.spec.name in self.held.get(job.title.key, ())}


def check_stamp(build: Build) -> StampCheck | None:
    """What the stamp proves, or None when a global part differs (everything is checked)."""
    loaded = usable_stamp(build)
    return None if loaded is None else prove_titles(build, loaded)


@dataclass(frozen=True)
class LoadedStamp:
    """A stamp whose global parts held when the run loaded, and whether the history had
    changed since it was written then (the run's own events come later)."""

    stamp: dict[str, Any]
    history_changed: bool


def usable_stamp(build: Build) -> LoadedStamp | None:
    """The stamp, when its global parts hold for this build; None: everything is checked."""
    if build.problems:
        return None
    stamp = read_json(stamp_path(build.settings))
    if (not isinstance(stamp, dict) or stamp.get("version") != STAMP_VERSION
            or stamp.get("inputs") != build.inputs_fingerprint
            or stamp.get("outputs") != outputs_fingerprint(build)
            or not isinstance(stamp.get("titles"), dict)):
        return None
    return LoadedStamp(stamp, stamp.get("history") != history_fingerprint(build))


def unprovable_titles(build: Build, loaded: LoadedStamp) -> frozenset[str]:
    """The selected titles the stamp cannot prove whatever their exports show: new, their
    inputs changed, or a selected platform missing from their entry. Known from the inputs'
    states alone, before the 200,000 output stats: a run that has these to check starts
    them at once (exporter.pipeline.plumbing.loader) and proves the rest meanwhile."""
    stamped, selected_platforms = loaded.stamp["titles"], frozenset(build.selected_specs)
    return frozenset(
        title.key for title in build.titles
        if not (entry := stamped.get(title.key))
        or entry[0] != build.title_inputs[title.key]
        or not selected_platforms <= frozenset(entry[2]))


def prove_titles(build: Build, loaded: LoadedStamp) -> StampCheck:
    """The stamp's verdict title by title: inputs and exports' states as stamped.

    Per export: a title is held when its inputs and exports folder are as stamped, and its
    entry names the platforms proven then. A title needs no check when it is held and, if
    selected, every selected platform is among them (`doit platforms=youtube` every day
    proves YouTube's exports alone); an unselected held title's rows stay true as they are.
    """
    stamp = loaded.stamp
    stamped = stamp["titles"]
    keys, file_names = list(stamped), export_file_names(build)
    early = getattr(build, "early_outputs", None)
    now_out = ((early.digests(keys, file_names) if early else None)
               or title_outputs(build.settings.exports, keys, file_names))
    held = {key: frozenset(entry[2]) for key, digest in build.title_inputs.items()
            if (entry := stamped.get(key)) and entry[:2] == [digest, now_out.get(key)]}
    selected_titles = {title.key for title in build.titles}
    selected_platforms = frozenset(build.selected_specs)
    proven = frozenset(key for key, platforms in held.items()
                       if key not in selected_titles or selected_platforms <= platforms)
    return StampCheck(stamp, held, proven, frozenset(build.title_inputs) - proven,
                      frozenset(stamped) - frozenset(build.title_inputs),
                      loaded.history_changed)


def write_stamp(build: Build, registry_totals: dict[str, Any], fresh: dict[str, set[str]],
                still_proven: dict[str, list], history_state: object = NOW) -> None:
    """Record the exports now proven: `fresh`, title -> the platforms whose exports this
    run found or made up to date (digests taken now: a title touched by the run and absent
    here loses its entry), and `still_proven`, entries of the previous stamp that held at
    load, kept as they were for titles the run did not touch (a change since shows).

    A platform with a target missing now is left out (deleted by someone else while the
    run went on: doit's check would find it missing), known from the very stats digested."""
    titles = {key: entry for key, entry in still_proven.items() if key not in fresh}
    made = sorted(key for key, platforms in fresh.items()
                  if platforms and key in build.title_inputs)
    owners = export_file_owners(build)
    outputs = title_outputs(build.settings.exports, made, list(owners))
    for key in made:
        platforms = fresh[key] - {owners[name] for name in absent_files(outputs[key], owners)}
        if platforms:
            titles[key] = [build.title_inputs[key], outputs[key], sorted(platforms)]
    write_json_atomic(stamp_path(build.settings), {
        "version": STAMP_VERSION,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "exports": len(build.title_inputs) * len(build.all_specs),
        "registry_totals": registry_totals,
        "inputs": build.inputs_fingerprint,
        "outputs": outputs_fingerprint(build),
        "history": history_fingerprint(build, history_state),
        "titles": dict(sorted(titles.items())),
    }, compact=True)


def remove_stamp(settings: Settings) -> None:
    stamp_path(settings).unlink(missing_ok=True)
