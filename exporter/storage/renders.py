"""Where the renders live: a directory (`RendersDirectory`), or a bucket
(`RendersBucket`, renders=s3://BUCKET/PREFIX) read through a local mirror.

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
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from exporter.model import layout
from exporter.model.errors import SourceChanged
from exporter.model.files import (
    file_state,
    read_json,
    sha256_or_none,
    write_json_atomic,
    write_text_atomic,
)
from exporter.model.locations import ObjectStoreError
from exporter.model.settings import Settings
from exporter.model.sources import INPUT_NAMES, NAME_PATTERN, SOURCE_NAME, Title
from exporter.storage.objects import ask

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

SHARED_MOUNT = "the same renders and exports paths (a shared mount)"
BUCKET_ACCESS = "the buckets (the AWS_* settings on every worker)"


@dataclass(frozen=True)
class RendersDirectory:
    """The renders in a directory tree: read where they are."""

    root: Path
    # a render changed during its export is read again at once, in the same run
    rereads_at_once: ClassVar[bool] = True
    reach: ClassVar[str] = SHARED_MOUNT        # what every cluster worker must reach
    sends_file_events: ClassVar[bool] = True   # `doit watch` is told of changes (inotify)

    def __str__(self) -> str:
        return str(self.root)

    def refresh(self) -> list[str]:
        """Bring `root` up to date with the store; the objects refused, one line each."""
        return []

    def source_sha256(self, title: Title, sidecar: dict[str, Any] | None) -> str | None:
        """The sha256 of the render an export of `title` is made from (None: none)."""
        return sha256_or_none(title.source)

    def open(self, title: Title, exports_root: Path, needed: Callable[[], bool]) -> Title:
        """`title` with its render readable on this machine, when `needed()` says the
        export reads it."""
        return title

    def states(self, title: Title) -> tuple | None:
        """The title's files as they are before the export reads them."""
        return tuple(file_state(title.directory / name) for name in INPUT_NAMES)

    def changed(self, title: Title, states: tuple | None) -> str | None:
        """Why the inputs the export read are not the ones there now (None: they are)."""
        if states is not None and self.states(title) != states:
            return (f"{title.source.name}, metadata.json or thumbnail.jpg changed while the "
                    "export was made")
        return None

    def downloads(self, exports_root: Path, jobs: Callable[[], Iterable[Any]]) -> Downloads:
        """What keeps this run's downloaded renders, and removes them when done."""
        return Downloads()

    def access_problem(self) -> str | None:
        """Run on a cluster worker: why it cannot read the renders (None: it can)."""
        root = str(self.root)
        if not os.path.isdir(root) or not os.access(root, os.R_OK | os.X_OK):
            return f"cannot read the renders root {root}"
        return None


@dataclass(frozen=True)
class RendersBucket:
    """renders=s3://...: the bucket's titles, mirrored in `root` with each final.mp4 a note;
    a render is downloaded by the export that reads it."""

    url: str
    root: Path                      # the mirror
    # a render replaced during its export is seen as listed by the next run
    rereads_at_once: ClassVar[bool] = False
    reach: ClassVar[str] = BUCKET_ACCESS
    sends_file_events: ClassVar[bool] = False  # `doit watch` lists it every poll= seconds

    def __str__(self) -> str:
        return self.url

    def refresh(self) -> list[str]:
        return refresh_mirror(self.url, self.root)

    def source_sha256(self, title: Title, sidecar: dict[str, Any] | None) -> str | None:
        """As far as the listing tells, without downloading it (listed_source_sha256); the
        file's own once downloaded."""
        if title.fetched is not None:
            return sha256_or_none(title.fetched)
        return listed_source_sha256(title, sidecar)

    def open(self, title: Title, exports_root: Path, needed: Callable[[], bool]) -> Title:
        """Downloaded (SourceChanged when the bucket no longer holds the version listed)."""
        return with_fetched_render(title, exports_root) if needed() else title

    def states(self, title: Title) -> tuple | None:
        return None         # the mirror is not rewritten during a run

    def changed(self, title: Title, states: tuple | None) -> str | None:
        return replaced_in_bucket(title)

    def downloads(self, exports_root: Path, jobs: Callable[[], Iterable[Any]]
                  ) -> FetchedRenders:
        return FetchedRenders(exports_root, jobs())

    def access_problem(self) -> str | None:
        return bucket_problem(self.url, "read", "the renders")

    def titles_listed(self) -> dict[str, list]:
        """The prefix's objects now (key -> [size, etag]), for `doit watch`."""
        return ask("list", self.url)


def bucket_problem(url: str, access: str, what: str) -> str | None:
    """Run on a cluster worker: why it cannot `access` ("read" or "write") `what` in the
    bucket at `url` (the storage helper's probe), or None."""
    try:
        ask("probe", url, access)
    except ObjectStoreError as error:
        return f"cannot {access} {what} in {url} ({error})"
    return None


def renders_store(settings: Settings) -> RendersDirectory | RendersBucket:
    """The renders' store: a bucket when renders= is an s3:// URL (settings.renders is then
    its mirror), else the directory settings.renders."""
    if settings.renders_url:
        return RendersBucket(settings.renders_url, settings.renders)
    return RendersDirectory(settings.renders)


class Downloads:
    """A directory's renders: nothing downloaded, nothing to remove."""

    def finished(self, task_name: str) -> None:
        pass

    def clear(self) -> None:
        pass


NOTE_FORMAT = "reelexport-render-in-bucket/1"


def title_key_problem(url: str, parts: list[str]) -> str | None:
    """Why an object's key cannot be a title's file in the mirror (None: it can)."""
    for part in parts[:3]:
        if not NAME_PATTERN.match(part) or ".." in part:
            return (f"{url}/{printable('/'.join(parts))}: invalid name {part!r}: use "
                    "letters, digits, "
                    "'-', '_', '.' (no leading dot, no '..', at most 128 characters)")
    return None


def note_text(url: str, key: str, size: int, etag: str) -> str:
    return json.dumps({"format": NOTE_FORMAT, "location": url, "key": key, "size": size,
                       "etag": etag}, sort_keys=True) + "\n"


def printable(key: str) -> str:
    """A key as one printable line: control and format characters escaped."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in key)


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
        if key.endswith("/") and len(parts) == 5 and parts[3] in INPUT_NAMES:
            problems.append(f"{url}/{printable(key)}: a key ending in '/' is not a title's "
                            f"file: rename it to {printable(key.rstrip('/'))}")
            continue
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


def with_fetched_render(title: Title, exports_root: Path) -> Title:
    """The title reading the render its note names, downloaded once per title and version
    (the title's other platforms take the same file). SourceChanged when the bucket no
    longer holds the version listed; ObjectStoreError when the bucket cannot be read."""
    note = read_note(title.directory / SOURCE_NAME)
    if note is None:            # no final.mp4: the export says it is missing
        return title
    target = fetched_dir(exports_root, title.key) / note["etag"] / SOURCE_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # a sibling platform may be downloading it
        if not target.is_file():
            answer = ask("get", note["location"], [[note["key"], str(target), note["etag"]]])[0]
            if "error" in answer:
                raise SourceChanged(f"{SOURCE_NAME} cannot be read from the bucket as listed "
                                    f"({answer['error']})")
    remote = f"{note['location']}/{note['key']}"
    return replace(title, fetched=target, remote=remote, remote_etag=note["etag"])


def listed_source_sha256(title: Title, sidecar: dict[str, Any] | None) -> str | None:
    """The render's sha256 as far as the bucket's listing tells, without downloading it:
    the one its export recorded while the object keeps the ETag recorded with it; else a
    value no sha256 equals (the render changed), or None (there is none)."""
    note = read_note(title.directory / SOURCE_NAME)
    if note is None:
        return None
    source = (sidecar or {}).get("source") or {}
    return source.get("sha256") if source.get("etag") == note["etag"] else f"etag:{note['etag']}"


def replaced_in_bucket(title: Title) -> str | None:
    """Why the bucket no longer holds the render version this export read (None: it does)."""
    if title.remote is None:        # none read from the bucket
        return None
    note = read_note(title.directory / SOURCE_NAME)
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

    def __init__(self, exports_root: Path, jobs: Iterable[Any]) -> None:
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
