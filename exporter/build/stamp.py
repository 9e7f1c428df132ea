"""The library stamp: proof that every export was up to date when the last complete run ended.

A no-op of a large library spends its time in doit's per-task machinery: a Task object and
a dependency check for every export. When nothing doit would look at has changed since a
run that found or made *every* export up to date, that work can only conclude "up to date"
again; the stamp lets `doit` and `doit list` skip it (exporter.build.loader).

The stamp holds two fingerprints, each a digest of file states (inode, size, mtime, ctime;
ctime cannot be set back by hand, so a `touch -d` or a restored mtime still counts):

- inputs, taken when the run loaded its tasks: every title and its final.mp4,
  metadata.json and thumbnail.jpg (doit's file_dep), every platform's up-to-date key (doit's
  config_changed), the platform YAML files and this package's code;
- outputs, taken after the run ended: every title's exports directory (a target created,
  deleted or renamed changes it), doit's DB (`forget`, `ignore`, `clean` change it), the
  registry and the gallery.

Anything differing means the normal path: doit checks every task (content, not mtime: a
touched source is hashed and found unchanged) and the run writes a new stamp. The stamp is
conservative by construction: it can send a run down the slow path needlessly, never skip
a change doit would have seen.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import doit

from exporter import __version__
from exporter.build.job import up_to_date_key
from exporter.model import layout
from exporter.model.files import file_state, read_json, write_json_atomic
from exporter.model.sources import INPUT_NAMES

if TYPE_CHECKING:
    from exporter.build.tasks import Build
    from exporter.model.settings import Settings

STAMP_NAME = layout.STAMP
STAMP_VERSION = 1
# Stands for "the history file as it is now" (its state may be None: no file yet).
NOW = object()
CODE_DIR = Path(__file__).resolve().parents[1]     # the exporter package, every layer


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
    """Everything an export task's up-to-date check reads besides the exports tree and DB."""
    settings = build.settings
    fingerprint = Fingerprint()
    fingerprint.feed(STAMP_VERSION, __version__, doit.__version__, str(settings.renders),
                     str(settings.exports), str(settings.platforms_dir), settings.preset,
                     build.ffmpeg, tuple(build.problems))
    for path in sorted([*CODE_DIR.rglob("*.py"), *settings.platforms_dir.iterdir()]):
        fingerprint.feed(str(path), file_state(path))
    for spec in build.all_specs.values():
        fingerprint.feed(spec.name, up_to_date_key(spec, settings.preset, build.ffmpeg))
    for title in build.all_titles:
        directory = str(title.directory)
        fingerprint.feed(title.key, directory,
                         *(file_state(os.path.join(directory, name)) for name in INPUT_NAMES))
    return fingerprint.hexdigest()


def outputs_fingerprint(build: Build, history_state: object = NOW) -> str:
    """The exports tree as doit's target checks and the registry see it, doit's DB, and the
    history (`history_state`: as the registry read it; else as it is now)."""
    settings = build.settings
    fingerprint = Fingerprint()
    exports = str(settings.exports)
    for title in build.all_titles:
        fingerprint.feed(title.key, file_state(os.path.join(exports, title.key)))
    for path in (settings.dep_file, settings.registry_file, settings.exports / layout.GALLERY_PAGE,
                 settings.exports / layout.GALLERY_CACHE):
        fingerprint.feed(str(path), file_state(path))
    history = settings.exports / layout.HISTORY
    fingerprint.feed(str(history),
                     file_state(history) if history_state is NOW else history_state)
    return fingerprint.hexdigest()


def stamp_path(settings: Settings) -> Path:
    return settings.exports / STAMP_NAME


def holding_stamp(build: Build) -> dict[str, Any] | None:
    """The stamp when it still holds for this library, else None."""
    if build.problems:
        return None
    stamp = read_json(stamp_path(build.settings))
    if not isinstance(stamp, dict) or stamp.get("version") != STAMP_VERSION:
        return None
    if stamp.get("inputs") != build.inputs_fingerprint:
        return None
    if stamp.get("outputs") != outputs_fingerprint(build):
        return None
    return stamp


def targets_in_place(build: Build) -> bool:
    """Every export's targets exist: what doit's check of them would find right now.

    The outputs fingerprint is taken after the run, so a target deleted by someone else
    while the run went on would be in it; checking them first keeps that out of a stamp.
    """
    return all(os.path.exists(name) for job in build.all_jobs for name in job.target_names)


def write_stamp(build: Build, registry_totals: dict[str, Any],
                history_state: object = NOW) -> None:
    """Record that every export is up to date: call only after such a run has ended."""
    write_json_atomic(stamp_path(build.settings), {
        "version": STAMP_VERSION,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "exports": len(build.all_jobs),
        "registry_totals": registry_totals,
        "inputs": build.inputs_fingerprint,
        "outputs": outputs_fingerprint(build, history_state),
    })


def remove_stamp(settings: Settings) -> None:
    stamp_path(settings).unlink(missing_ok=True)
