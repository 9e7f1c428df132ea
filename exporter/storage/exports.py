"""Where the exports live: a directory (`ExportsDirectory`), or a bucket (`ExportsBucket`,
exports=s3://BUCKET/PREFIX) published from a local tree.

With a bucket, the pipeline makes and verifies every export in a local exports tree (the
state directory: REELEXPORT_STATE_DIR/BUCKET/PREFIX) exactly as without one; once an export
is kept, its files are uploaded under PREFIX/{segment}/{age}/{title_id}/, the sidecar last,
so a sidecar in the bucket means its export is whole there (a PUT is atomic: no partial
object is ever visible under a key). The ETag and size each upload returned are kept in
doit's DB as the export's values; an export is up to date only when the bucket's listing
still shows exactly those, so an object deleted or overwritten in the bucket is published
again (from the local files, not encoded again). The run's root files (registry, history,
gallery) follow at its end. A lease (storage/lease.py) keeps a second coordinator out.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

from exporter.model import layout
from exporter.model.files import read_json, write_json_atomic
from exporter.model.history import append_missing, merged_text, parse_events
from exporter.model.locations import ObjectStoreError
from exporter.model.settings import Settings
from exporter.storage.lease import LEASE_KEY, Lease, NoLease, current_run_id
from exporter.storage.objects import ask
from exporter.storage.renders import BUCKET_ACCESS, SHARED_MOUNT, bucket_problem

PUBLISHED_VALUE = "_published"      # doit value: file name -> [size, etag] as uploaded
ROOT_FILES = (layout.REGISTRY, layout.GALLERY_PAGE)   # views: the history is merged
HISTORY_ATTEMPTS = 8        # conditional writes of the history, each after another writer's
# The bucket's history.jsonl as this tree last merged it: its ETag (a run whose listing
# shows the same one has nothing to take from it).
SYNCED = layout.HISTORY_SYNCED

# What a fetch returns of each file it brought: (size, etag, sha256).
Fetched = dict[str, tuple[int, str, str]]


class PublishedExport(Protocol):
    """What a store asks of an export (pipeline/export/job.ExportJob is one)."""

    title: Any              # .key: "segment/age/title_id"
    file_order: list[str]   # its files, the sidecar last


@dataclass(frozen=True)
class ExportsDirectory:
    """The exports in a directory tree: made in place; nothing to publish."""

    root: Path
    # a cluster worker makes an export in this very tree (a shared mount)
    tree_travels: ClassVar[bool] = True
    reach: ClassVar[str] = SHARED_MOUNT

    def __str__(self) -> str:
        return str(self.root)

    def load(self) -> dict[str, tuple[int, str]] | None:
        """At the start of a run: the store's exports as listed now (None: the tree is the
        store, and the library stamp sees its files)."""
        return None

    def intact(self, export: PublishedExport, recorded: dict[str, Any] | None) -> bool:
        """True when the store holds the export's files as this tool published them (asked
        of 40,000 exports on a full check: a tree answers without looking)."""
        return True

    def restore_sidecar(self, key: str, path: Path) -> None:
        """A local tree made anew: the export's sidecar as the store holds it."""

    def listed(self, key: str, names: list[str]) -> dict[str, str]:
        """Those of `names` the store holds apart from the tree (name -> ETag listed)."""
        return {}

    def fetch(self, key: str, directory: Path, etags: dict[str, str],
              strict: bool = False) -> Fetched:
        """Each file (name -> ETag) into `directory`; those fetched. `strict`: one that
        cannot be is an ObjectStoreError, else it is left out."""
        return {}

    def publish(self, key: str, directory: Path, names: list[str],
                unchanged: dict[str, list] | None = None) -> dict[str, list] | None:
        """The export's files (`names`, the sidecar last) into the store, but those
        `unchanged`; what each upload returned (file -> [size, etag]), None for a tree."""
        return None

    def remove(self, key: str, names: list[str]) -> None:
        """`doit clean`: the store's copy of the export, beyond the tree's files."""

    def publish_root_files(self) -> None:
        """The run's history (merged), registry and gallery page, to the store's root."""

    def sync_history(self) -> int:
        """The store's history and the tree's made one union, both ways (a tree's is the
        store's own: nothing to do). How many events the tree took from the store."""
        return 0

    def fenced_by(self, run_id: str | None) -> ExportsDirectory:
        """The store, publishing only while the lease of `run_id` holds."""
        return self

    def lease(self) -> Lease | NoLease:
        """This run's hold on the store (the exports tree's own lock is lock.py)."""
        return NoLease()

    def staged_at(self, root: Path) -> ExportsDirectory:
        return self

    def access_problem(self) -> str | None:
        """Run on a cluster worker: why it cannot write the exports (None: it can)."""
        root = str(self.root)
        try:
            os.makedirs(root, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root, prefix=".cluster-check-"):
                pass
        except OSError as error:
            return f"cannot write the exports root {root} ({error.strerror or error})"
        return None


@dataclass(frozen=True)
class ExportsBucket:
    """exports=s3://...: each export made in the local tree `root`, then published."""

    url: str
    root: Path                      # the local tree the exports are made in
    run_id: str | None = None       # the lease whose holder alone may publish (None: any)
    # the local tree is this machine's: a cluster worker makes an export in its own
    tree_travels: ClassVar[bool] = False
    reach: ClassVar[str] = BUCKET_ACCESS

    def __str__(self) -> str:
        return self.url

    def load(self) -> dict[str, tuple[int, str]]:
        """The history as the bucket holds it merged into the tree's (a new tree starts
        from it; uploads recorded on another machine show here), then the exports listed."""
        listing = list_exports(self.url)
        listed = HISTORY_LISTED.get(self.url)
        if listed is not None and listed != synced_etag(self.root):
            pull_history(self.url, self.root, listed)
        return listing

    def intact(self, export: PublishedExport, recorded: dict[str, Any] | None) -> bool:
        """As the prefix was listed by this process (listed now if it was not)."""
        if not recorded:
            return False
        listing = LISTED.get(self.url) or list_exports(self.url)
        key = export.title.key
        return all(recorded.get(name) is not None
                   and listing.get(f"{key}/{name}") == tuple(recorded[name])
                   for name in export.file_order)

    def restore_sidecar(self, key: str, path: Path) -> None:
        """Then the export is judged by what its sidecar records, and what it records as
        made from these inputs is fetched, not encoded again."""
        listed = (LISTED.get(self.url) or {}).get(f"{key}/{path.name}")
        if listed is not None and not path.exists():
            # not there, or replaced since the listing: the export is then made anew
            ask("get", self.url, [[f"{key}/{path.name}", str(path), listed[1]]])

    def listed(self, key: str, names: list[str]) -> dict[str, str]:
        listing = LISTED.get(self.url) or {}
        return {name: listing[f"{key}/{name}"][1] for name in names
                if f"{key}/{name}" in listing}

    def fetch(self, key: str, directory: Path, etags: dict[str, str],
              strict: bool = False) -> Fetched:
        names = list(etags)
        if not names:
            return {}
        items = [[f"{key}/{name}", str(directory / name), etags[name]] for name in names]
        answers = (done if strict else ask)("get", self.url, items)
        return {name: ((directory / name).stat().st_size, answer["etag"], answer["sha256"])
                for name, answer in zip(names, answers, strict=True) if "error" not in answer}

    def publish(self, key: str, directory: Path, names: list[str],
                unchanged: dict[str, list] | None = None) -> dict[str, list]:
        """ObjectStoreError (one line) when one cannot be uploaded: the export is then not
        recorded as published, and the next run uploads it again."""
        unchanged = unchanged or {}
        names = [name for name in names if name not in unchanged]
        items = [[str(directory / name), f"{key}/{name}", None] for name in names]
        return {**unchanged, **{name: [answer["size"], answer["etag"]] for name, answer
                                in zip(names, self.put(items), strict=True)}}

    def put(self, items: list[list[Any]]) -> list[dict[str, Any]]:
        """PUTs that must all succeed, fenced by the run's lease when it holds one."""
        run_id = self.run_id or current_run_id()
        if run_id is None:
            return done("put", self.url, items)
        return done("fenced-put", self.url, {"lease": LEASE_KEY, "run_id": run_id,
                                             "items": items})

    def remove(self, key: str, names: list[str]) -> None:
        """The sidecar first (it says "whole")."""
        ask("delete", self.url, [f"{key}/{name}" for name in reversed(names)])

    def publish_root_files(self) -> None:
        self.sync_history()
        items = [[str(self.root / name), name, None] for name in ROOT_FILES
                 if (self.root / name).is_file()]
        if items:
            self.put(items)

    def sync_history(self) -> int:
        """The bucket's events this tree lacks appended here; this tree's events the
        bucket lacks appended there, by a write conditional on the version read (If-Match,
        or If-None-Match when there is none), read and merged again when another writer
        came between. Never a copy over the other: no event recorded anywhere is lost."""
        return sync_history(self.url, self.root)

    def fenced_by(self, run_id: str | None) -> ExportsBucket:
        return replace(self, run_id=run_id) if run_id else self

    def lease(self) -> Lease:
        return Lease(self.url, self.root)

    def staged_at(self, root: Path) -> ExportsBucket:
        """The same bucket, its exports made in the tree `root` (a worker's own)."""
        return replace(self, root=root)

    def access_problem(self) -> str | None:
        """A listing of the prefix, and a probe object put and deleted."""
        return bucket_problem(self.url, "write", "the exports")


def exports_store(settings: Settings) -> ExportsDirectory | ExportsBucket:
    """The exports' store: a bucket when exports= is an s3:// URL (settings.exports is then
    the local tree they are made in), else the directory settings.exports."""
    if settings.exports_url:
        return ExportsBucket(settings.exports_url, settings.exports)
    return ExportsDirectory(settings.exports)


def export_keys(listing: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """The objects of a listing that are files of exports (SEGMENT/AGE/TITLE/NAME)."""
    return {key: (size, etag) for key, (size, etag) in listing.items()
            if key.count("/") == 3 and not key.startswith(".")}


# The last listing of each exports prefix made by this process (url -> listing): what the
# up-to-date checks compare with, listed once per run (Build) and again at its end.
LISTED: dict[str, dict[str, tuple[int, str]]] = {}
HISTORY_LISTED: dict[str, str | None] = {}     # url -> the history's ETag in that listing


def list_exports(url: str) -> dict[str, tuple[int, str]]:
    """The exports' files in the bucket now: relative key -> (size, etag)."""
    listing = ask("list", url)
    HISTORY_LISTED[url] = (listing.get(layout.HISTORY) or (None, None))[1]
    LISTED[url] = export_keys(listing)
    return LISTED[url]


def done(command: str, url: str, items: list[list[Any]]) -> list[dict[str, Any]]:
    """The helper's answers to a `put` or `get` of several objects, each of which must have
    succeeded: the first one that did not is raised as its one line."""
    answers = ask(command, url, items)
    for answer in answers:
        if "error" in answer:
            raise ObjectStoreError(answer["error"])
    return answers


def synced_etag(root: Path) -> str | None:
    saved = read_json(root / SYNCED)
    return saved.get("etag") if isinstance(saved, dict) else None


def remember_synced(root: Path, etag: str) -> None:
    write_json_atomic(root / SYNCED, {"etag": etag})


def take_bucket_history(url: str, root: Path, etag: str) -> tuple[bytes, int] | None:
    """The bucket's history as the version `etag` (a conditional GET), its events this tree
    lacks appended here: (its bytes, how many were taken); None when it was replaced since."""
    copy = root / f".{layout.HISTORY}.bucket"
    try:
        got = ask("get", url, [[layout.HISTORY, str(copy), etag]])[0]
        if "error" in got:
            return None
        theirs = copy.read_bytes()
    finally:
        copy.unlink(missing_ok=True)
    return theirs, append_missing(root, parse_events(theirs, copy))


def pull_history(url: str, root: Path, etag: str) -> None:
    """The bucket's history (the version `etag`) merged into the tree's."""
    root.mkdir(parents=True, exist_ok=True)
    if take_bucket_history(url, root, etag) is not None:    # else replaced since the
        remember_synced(root, etag)                          # listing: merged at the end


def sync_history(url: str, root: Path) -> int:
    """ExportsBucket.sync_history; how many events this tree took from the bucket."""
    root.mkdir(parents=True, exist_ok=True)
    local, merged_file = root / layout.HISTORY, root / f".{layout.HISTORY}.merged"
    taken = 0
    try:
        for _ in range(HISTORY_ATTEMPTS):
            now = ask("head", url, [layout.HISTORY]).get(layout.HISTORY)
            theirs = b""
            if now is not None:
                found = take_bucket_history(url, root, now[1])
                if found is None:
                    continue        # replaced between the HEAD and the GET: again
                theirs, count = found
                taken += count
            ours = local.read_bytes() if local.is_file() else b""
            merged = merged_text(ours, theirs, local)
            if merged is None:
                if now is not None:
                    remember_synced(root, now[1])
                return taken
            merged_file.write_bytes(merged)
            condition = {"e_tag": now[1]} if now is not None else "create"
            answer = ask("put", url, [[str(merged_file), layout.HISTORY, condition]])[0]
            if "changed" in answer:
                continue            # another writer came between: read and merge again
            if "error" in answer:
                raise ObjectStoreError(answer["error"])
            remember_synced(root, answer["etag"])
            return taken
    finally:
        merged_file.unlink(missing_ok=True)
    raise ObjectStoreError(f"{url}/{layout.HISTORY}: written by others {HISTORY_ATTEMPTS} "
                           "times while this machine merged it; nothing is lost, the next "
                           "run or `doit uploaded` merges it again")
