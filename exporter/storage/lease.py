"""The lease on an exports prefix in a bucket: one coordinator at a time.

A lease object (LEASE_KEY) is written only if none is there (S3's If-None-Match), renewed
conditionally on its ETag as the run goes, dropped at its end; one not renewed for
LEASE_STALE_S, or whose holder this machine shows dead, is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from exporter.model.errors import ExportError
from exporter.model.files import read_json, write_text_atomic
from exporter.model.locations import ObjectStoreError
from exporter.storage.objects import ask

LEASE_KEY = ".reelexport/lease.json"
LEASE_STALE_S = 3600                # a lease not renewed this long: its coordinator died
LEASE_RENEW_S = 300                 # a run renews its lease this often (as exports start
#                                     and finish; REELEXPORT_LEASE_RENEW_S overrides it)


class LeaseHeld(ExportError):
    """Another coordinator is exporting into the same exports prefix."""


class LeaseLost(ExportError):
    """Another coordinator took this run's lease over: this run must stop writing."""




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


class NoLease:
    """An exports directory's: its lock (pipeline/plumbing/lock.py) keeps other runs out."""

    def keep(self) -> None:
        pass

    def drop(self) -> None:
        pass
