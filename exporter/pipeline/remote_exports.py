"""exports=s3://BUCKET/PREFIX: each export made in a local tree, then published to the bucket.

The pipeline makes and verifies every export in a local exports tree (the state directory:
REELEXPORT_STATE_DIR/BUCKET/PREFIX) exactly as without a bucket; once an export is kept,
its files are uploaded under PREFIX/{segment}/{age}/{title_id}/, the sidecar last, so a
sidecar in the bucket means its export is whole there (a PUT is atomic: no partial object is
ever visible under a key). The ETag and size each upload returned are kept in doit's DB as
the export's values; an export is up to date only when the bucket's listing still shows
exactly those, so an object deleted or overwritten in the bucket is published again (from
the local files, not encoded again). The run's root files (registry, history, gallery)
follow at its end. A lease object keeps a second coordinator out of the prefix.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.media.objects import ask
from exporter.model import layout
from exporter.model.errors import ExportError
from exporter.model.files import read_json, write_text_atomic
from exporter.model.locations import ObjectStoreError

if TYPE_CHECKING:
    from exporter.pipeline.job import ExportJob

PUBLISHED_VALUE = "_published"      # doit value: file name -> [size, etag] as uploaded
LEASE_KEY = ".reelexport/lease.json"
LEASE_STALE_S = 3600                # a lease not renewed this long: its coordinator died
LEASE_RENEW_S = 300                 # a run renews its lease this often (as exports start
#                                     and finish; REELEXPORT_LEASE_RENEW_S overrides it)
ROOT_FILES = (layout.REGISTRY, layout.HISTORY, layout.GALLERY_PAGE)


class LeaseHeld(ExportError):
    """Another coordinator is exporting into the same exports prefix."""


class LeaseLost(ExportError):
    """Another coordinator took this run's lease over: this run must stop writing."""


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


def published_intact(job: ExportJob, recorded: dict[str, Any] | None) -> bool:
    """True when every file of the export is in the bucket as this tool uploaded it (as the
    prefix was listed by this process; listed now if it was not)."""
    if not recorded:
        return False
    listing = LISTED.get(job.exports_url) or list_exports(job.exports_url)
    return all(recorded.get(name) is not None
               and listing.get(f"{job.title.key}/{name}") == tuple(recorded[name])
               for name in file_names(job))


def file_names(job: ExportJob) -> list[str]:
    """The export's files (its targets), the sidecar last: the order they are published."""
    sidecar = job.file_names["sidecar"]
    return sorted((path.name for path in job.targets), key=lambda name: name == sidecar)


def publish_export(url: str, job: ExportJob,
                   unchanged: dict[str, list] | None = None) -> dict[str, list]:
    """Upload the export's files, its sidecar last, but those `unchanged` (file name ->
    [size, etag] of the bytes the bucket already holds); what each upload returned (for
    doit's DB). ObjectStoreError (one line) when one cannot be uploaded: the export is then
    not recorded as published, and the next run uploads it again."""
    unchanged = unchanged or {}
    names = [name for name in file_names(job) if name not in unchanged]
    items = [[str(job.out_dir / name), f"{job.title.key}/{name}", None] for name in names]
    return {**unchanged, **{name: [answer["size"], answer["etag"]] for name, answer
                            in zip(names, done("put", url, items), strict=True)}}


def publish_root_files(url: str, exports: Path) -> None:
    """The run's registry, history and gallery page, to the prefix's root."""
    items = [[str(exports / name), name, None] for name in ROOT_FILES
             if (exports / name).is_file()]
    if items:
        done("put", url, items)


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


def take_lease(url: str, exports: Path) -> tuple[str, float]:
    """Hold the prefix for this run (a lease object written only if none is there: S3's
    If-None-Match); one not renewed for LEASE_STALE_S is taken over, conditionally on its
    ETag. LeaseHeld names the holder otherwise. Returns the lease's ETag and taken_at."""
    taken_at = time.time()
    path = lease_note(exports, taken_at)
    try:
        answer = ask("put", url, [[str(path), LEASE_KEY, "create"]])[0]
        if "changed" not in answer:
            if "error" in answer:
                raise ObjectStoreError(answer["error"])
            return answer["etag"], taken_at
        holder = exports / ".lease-held.json"
        got = ask("get", url, [[LEASE_KEY, str(holder), None]])[0]   # its ETag comes back
        document = read_json(holder) or {}
        holder.unlink(missing_ok=True)
        silent = time.time() - float(document.get("renewed_at") or
                                     document.get("taken_at") or 0)
        if "error" not in got and (silent > LEASE_STALE_S or holder_is_gone(document)):
            answer = ask("put", url, [[str(path), LEASE_KEY, {"e_tag": got["etag"]}]])[0]
            if "error" not in answer:
                return answer["etag"], taken_at
        age = time.time() - float(document.get("taken_at") or 0)
        raise LeaseHeld(f"{url}: another run is exporting into it (host "
                        f"{document.get('host', '?')}, pid {document.get('pid', '?')}, for "
                        f"{age / 60:.0f} min; its lease {url}/{LEASE_KEY} is taken over "
                        f"once not renewed for {LEASE_STALE_S // 60} min)")
    finally:
        path.unlink(missing_ok=True)


def renew_lease(url: str, exports: Path, etag: str, taken_at: float) -> str:
    """Write the lease again, only if it is still this run's (If-Match its ETag): its
    renewed_at tells any other coordinator that this run is alive. Its new ETag; LeaseLost
    when another run took it over (this one was silent past LEASE_STALE_S)."""
    path = lease_note(exports, taken_at)
    try:
        answer = ask("put", url, [[str(path), LEASE_KEY, {"e_tag": etag}]])[0]
    finally:
        path.unlink(missing_ok=True)
    if "changed" in answer:
        raise LeaseLost(f"{url}: another run took over this run's lease ({url}/{LEASE_KEY}), "
                        "so this run stops; the exports it finished are kept")
    if "error" in answer:
        raise ObjectStoreError(answer["error"])
    return answer["etag"]


def lease_note(exports: Path, taken_at: float) -> Path:
    """The lease's document, in a local file to upload: who holds it, since when, and when
    it was last renewed."""
    note = {"host": socket.gethostname(), "pid": os.getpid(), "taken_at": taken_at,
            "renewed_at": time.time(), "local_tree": str(exports)}
    path = exports / ".lease.json"
    write_text_atomic(path, json.dumps(note) + "\n")
    return path


class Lease:
    """This run's hold on an exports prefix: taken at its start, renewed as it goes (every
    LEASE_RENEW_S, as exports start and finish), dropped at its end."""

    def __init__(self, url: str, exports: Path) -> None:
        self.url, self.exports = url, exports
        self.etag, self.taken_at = take_lease(url, exports)
        self.renewed = time.monotonic()

    def keep(self) -> None:
        """Renew it when due; LeaseLost when another run took it over."""
        every = float(os.environ.get("REELEXPORT_LEASE_RENEW_S") or LEASE_RENEW_S)
        if time.monotonic() - self.renewed >= every:
            self.etag = renew_lease(self.url, self.exports, self.etag, self.taken_at)
            self.renewed = time.monotonic()

    def drop(self) -> None:
        drop_lease(self.url, self.etag)


def holder_is_gone(document: dict[str, Any]) -> bool:
    """True when the lease was taken on this machine by a process that no longer runs (a
    run killed before it could drop it)."""
    if document.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(document.get("pid") or 0), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False
    return False


def drop_lease(url: str, etag: str) -> None:
    """Delete the lease while it is this run's (a HEAD first: obstore's delete takes no
    If-Match), never one another run took over."""
    now = ask("head", url, [LEASE_KEY]).get(LEASE_KEY)
    if now is not None and now[1] == etag:
        ask("delete", url, [LEASE_KEY])
