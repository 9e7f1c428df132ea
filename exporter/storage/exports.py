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
from typing import Any, ClassVar

from exporter.model import layout
from exporter.model.locations import ObjectStoreError
from exporter.storage.lease import Lease, NoLease
from exporter.storage.objects import ask
from exporter.storage.renders import BUCKET_ACCESS, SHARED_MOUNT

PUBLISHED_VALUE = "_published"      # doit value: file name -> [size, etag] as uploaded
ROOT_FILES = (layout.REGISTRY, layout.HISTORY, layout.GALLERY_PAGE)

# What a fetch returns of each file it brought: (size, etag, sha256).
Fetched = dict[str, tuple[int, str, str]]


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

    def intact(self, key: str, names: list[str], recorded: dict[str, Any] | None) -> bool:
        """True when the store holds the export's files as this tool published them."""
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
        """The run's registry, history and gallery page, to the store's root."""

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
    # the local tree is this machine's: a cluster worker makes an export in its own
    tree_travels: ClassVar[bool] = False
    reach: ClassVar[str] = BUCKET_ACCESS

    def __str__(self) -> str:
        return self.url

    def load(self) -> dict[str, tuple[int, str]]:
        restore_history(self.url, self.root)
        return list_exports(self.url)

    def intact(self, key: str, names: list[str], recorded: dict[str, Any] | None) -> bool:
        """As the prefix was listed by this process (listed now if it was not)."""
        if not recorded:
            return False
        listing = LISTED.get(self.url) or list_exports(self.url)
        return all(recorded.get(name) is not None
                   and listing.get(f"{key}/{name}") == tuple(recorded[name])
                   for name in names)

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
                                in zip(names, done("put", self.url, items), strict=True)}}

    def remove(self, key: str, names: list[str]) -> None:
        """The sidecar first (it says "whole")."""
        ask("delete", self.url, [f"{key}/{name}" for name in reversed(names)])

    def publish_root_files(self) -> None:
        items = [[str(self.root / name), name, None] for name in ROOT_FILES
                 if (self.root / name).is_file()]
        if items:
            done("put", self.url, items)

    def lease(self) -> Lease:
        return Lease(self.url, self.root)

    def staged_at(self, root: Path) -> ExportsBucket:
        """The same bucket, its exports made in the tree `root` (a worker's own)."""
        return replace(self, root=root)

    def access_problem(self) -> str | None:
        """A listing of the prefix, and a probe object put and deleted."""
        try:
            ask("probe", self.url, "write")
        except ObjectStoreError as error:
            return f"cannot write the exports in {self.url} ({error})"
        return None


def exports_store(url: str | None, root: Path) -> ExportsDirectory | ExportsBucket:
    """The exports' store: a bucket when exports= is an s3:// URL (`root` is then the local
    tree they are made in), else the directory `root`."""
    return ExportsBucket(url, root) if url else ExportsDirectory(root)


def export_keys(listing: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """The objects of a listing that are files of exports (SEGMENT/AGE/TITLE/NAME)."""
    return {key: (size, etag) for key, (size, etag) in listing.items()
            if key.count("/") == 3 and not key.startswith(".")}


# The last listing of each exports prefix made by this process (url -> listing): what the
# up-to-date checks compare with, listed once per run (Build) and again at its end.
LISTED: dict[str, dict[str, tuple[int, str]]] = {}


def list_exports(url: str) -> dict[str, tuple[int, str]]:
    """The exports' files in the bucket now: relative key -> (size, etag)."""
    LISTED[url] = export_keys(ask("list", url))
    return LISTED[url]


def done(command: str, url: str, items: list[list[Any]]) -> list[dict[str, Any]]:
    """The helper's answers to a `put` or `get` of several objects, each of which must have
    succeeded: the first one that did not is raised as its one line."""
    answers = ask(command, url, items)
    for answer in answers:
        if "error" in answer:
            raise ObjectStoreError(answer["error"])
    return answers


def restore_history(url: str, exports: Path) -> None:
    """A local tree made anew (another machine, a lost state directory) starts from the
    bucket's history: the one file of the prefix that cannot be made again."""
    history = exports / layout.HISTORY
    if history.exists():
        return
    if ask("head", url, [layout.HISTORY]).get(layout.HISTORY) is not None:
        exports.mkdir(parents=True, exist_ok=True)
        done("get", url, [[layout.HISTORY, str(history), None]])


