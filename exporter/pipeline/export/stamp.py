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

import hashlib
import os
from array import array
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import doit

from exporter import __version__
from exporter.model import layout, records
from exporter.model.files import file_state, read_json, write_json_atomic
from exporter.model.sources import INPUT_NAMES, Title
from exporter.pipeline.export.job import up_to_date_key
from exporter.pipeline.export.output_states import (
    EarlyOutputs,
    absent_files,
    title_outputs,
)

if TYPE_CHECKING:
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
        # what the next run's output states are taken of, before its platforms are loaded
        "file_names": list(owners),
        "titles": dict(sorted(titles.items())),
    }, compact=True)


def remove_stamp(settings: Settings) -> None:
    stamp_path(settings).unlink(missing_ok=True)
