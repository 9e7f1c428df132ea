"""renders=s3://BUCKET/PREFIX: a bucket's titles, read by the pipeline as a renders tree.

The mirror (exports/.renders/BUCKET/PREFIX) holds each title's metadata.json and
thumbnail.jpg, downloaded when their ETag changes, and in place of final.mp4 a note naming
the object with its ETag and size. doit hashes the note as the export's dependency, so a
render is up to date by its ETag and a no-op downloads nothing. An export downloads its
render (the version listed: a conditional GET) into exports/.fetched, kept until every
selected platform of the title is done, and checks at its end that the bucket still holds
that version: a render replaced meanwhile is never recorded as exported.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.media.objects import ask
from exporter.model import layout
from exporter.model.errors import SourceChanged
from exporter.model.files import read_json, write_json_atomic, write_text_atomic
from exporter.model.sources import INPUT_NAMES, NAME_PATTERN, SOURCE_NAME

if TYPE_CHECKING:
    from collections.abc import Iterable

    from exporter.pipeline.job import ExportJob

NOTE_FORMAT = "reelexport-render-in-bucket/1"


def title_key_problem(url: str, parts: list[str]) -> str | None:
    """Why an object's key cannot be a title's file in the mirror (None: it can)."""
    for part in parts[:3]:
        if not NAME_PATTERN.match(part) or ".." in part:
            return (f"{url}/{'/'.join(parts)}: invalid name {part!r}: use letters, digits, "
                    "'-', '_', '.' (no leading dot, no '..', at most 128 characters)")
    return None


def note_text(url: str, key: str, size: int, etag: str) -> str:
    return json.dumps({"format": NOTE_FORMAT, "location": url, "key": key, "size": size,
                       "etag": etag}, sort_keys=True) + "\n"


def read_note(path: Path) -> dict[str, Any] | None:
    """The note a mirror's final.mp4 is (None: absent, or not a note)."""
    note = read_json(path)
    return note if isinstance(note, dict) and note.get("format") == NOTE_FORMAT else None


def refresh_mirror(url: str, mirror: Path) -> list[str]:
    """Make `mirror` the bucket's titles as they are now (one LIST, and a GET of each
    metadata.json or thumbnail.jpg whose ETag changed); the objects refused, one line each.

    Only objects at SEGMENT/AGE/TITLE/{final.mp4,metadata.json,thumbnail.jpg} are titles'
    files; other objects are not looked at. A file is rewritten only when it changed, so
    unchanged titles keep their notes' states (the library stamp's fast path)."""
    mirror.mkdir(parents=True, exist_ok=True)
    problems, wanted = [], {}
    for key, (size, etag) in ask("list", url).items():
        parts = key.split("/")
        if len(parts) != 4 or parts[3] not in INPUT_NAMES:
            continue
        problem = title_key_problem(url, parts)
        if problem:
            problems.append(problem)
        else:
            wanted[key] = (size, etag)
    etags_file = etags_path(mirror)
    etags = read_json(etags_file) or {}
    before = dict(etags)
    downloads = []
    for key, (size, etag) in wanted.items():
        path = mirror / key
        if path.name == SOURCE_NAME:
            text = note_text(url, key, size, etag)
            if not path.is_file() or path.read_text(encoding="utf-8", errors="replace") != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomic(path, text)
        elif etags.get(key) != etag or not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            downloads.append([key, str(path), etag])
    answers = ask("get", url, downloads) if downloads else []
    for (key, _, _), answer in zip(downloads, answers, strict=True):
        if "error" in answer:       # replaced or deleted since the LIST: the next run sees it
            problems.append(answer["error"])
        else:
            etags[key] = answer["etag"]
    remove_unlisted(mirror, wanted, etags)
    if etags != before:
        write_json_atomic(etags_file, etags)
    return problems


def etags_path(mirror: Path) -> Path:
    """The ETags of the mirror's downloaded files (relative key -> ETag), beside the mirror,
    not in it: the renders root's own state is part of the library stamp, so a run that
    changes nothing must write nothing there."""
    return mirror.with_name(f".{mirror.name}.etags.json")


def remove_unlisted(mirror: Path, wanted: dict[str, Any], etags: dict[str, str]) -> None:
    """Delete the mirror's title files the bucket no longer holds, then emptied directories."""
    for path in mirror.glob("*/*/*/*"):
        key = path.relative_to(mirror).as_posix()
        if key not in wanted and path.name in INPUT_NAMES:
            path.unlink(missing_ok=True)
            etags.pop(key, None)
    for pattern in ("*/*/*", "*/*", "*"):
        for directory in mirror.glob(pattern):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()


def fetched_dir(exports_root: Path, title_key: str) -> Path:
    return Path(exports_root, layout.FETCHED_RENDERS, title_key)


def with_fetched_render(job: ExportJob) -> ExportJob:
    """The job reading the render its note names, downloaded once per title and version
    (the title's other platforms take the same file). SourceChanged when the bucket no
    longer holds the version listed; ObjectStoreError when the bucket cannot be read."""
    note = read_note(job.title.directory / SOURCE_NAME)
    if note is None:            # no final.mp4: the export says it is missing
        return job
    target = fetched_dir(job.exports_root, job.title.key) / note["etag"] / SOURCE_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # a sibling platform may be downloading it
        if not target.is_file():
            answer = ask("get", note["location"], [[note["key"], str(target), note["etag"]]])[0]
            if "error" in answer:
                raise SourceChanged(f"{SOURCE_NAME} cannot be read from the bucket as listed "
                                    f"({answer['error']})")
    remote = f"{note['location']}/{note['key']}"
    return replace(job, title=replace(job.title, fetched=target, remote=remote,
                                      remote_etag=note["etag"]))


def listed_source_sha256(job: ExportJob, sidecar: dict[str, Any] | None) -> str | None:
    """The render's sha256 as far as the bucket's listing tells, without downloading it:
    the one its export recorded while the object keeps the ETag recorded with it; else a
    value no sha256 equals (the render changed), or None (there is none)."""
    note = read_note(job.title.directory / SOURCE_NAME)
    if note is None:
        return None
    source = (sidecar or {}).get("source") or {}
    return source.get("sha256") if source.get("etag") == note["etag"] else f"etag:{note['etag']}"


def replaced_in_bucket(job: ExportJob) -> str | None:
    """Why the bucket no longer holds the render version this export read (None: it does)."""
    if job.title.remote is None:        # a render on disk, or none read from a bucket
        return None
    note = read_note(job.title.directory / SOURCE_NAME)
    if note is None:
        return None
    now = ask("head", note["location"], [note["key"]])[note["key"]]
    if now is None:
        return f"{SOURCE_NAME} was deleted from the bucket during the export"
    if now[1] != note["etag"]:
        return f"{SOURCE_NAME} was replaced in the bucket during the export"
    return None


class FetchedRenders:
    """The downloaded renders of a run, each removed once every selected platform of its
    title is done (a run over the whole library never holds it all), the rest at the end."""

    def __init__(self, exports_root: Path, jobs: Iterable[ExportJob]) -> None:
        self.root = Path(exports_root, layout.FETCHED_RENDERS)
        self.title_of = {job.task_name: job.title.key for job in jobs}
        self.left: dict[str, int] = {}
        for title_key in self.title_of.values():
            self.left[title_key] = self.left.get(title_key, 0) + 1

    def finished(self, task_name: str) -> None:
        title_key = self.title_of.pop(task_name, None)
        if title_key is None:
            return
        self.left[title_key] -= 1
        if self.left[title_key] == 0:
            shutil.rmtree(self.root / title_key, ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
