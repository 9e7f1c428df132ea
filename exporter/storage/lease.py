"""The lease on an exports prefix in a bucket: one coordinator at a time.

A lease object (LEASE_KEY) is written only if none is there (S3's If-None-Match), renewed
conditionally on its ETag as the run goes, dropped at its end; one not renewed for
LEASE_STALE_S, or whose holder this very machine shows dead (the same boot, the same PID
namespace, its process gone), is taken over. The lease names its holder by a random run id,
and every object the run publishes is fenced by it (the storage helper's fenced-put reads
the lease first): a run that lost its lease cannot write.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
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
# The run id of the lease this process's run holds: set by Lease, inherited by the run's
# `doit -n` workers (forked after), sent to cluster workers in each work order.
RUN_ID_VARIABLE = "REELEXPORT_LEASE_RUN_ID"


class LeaseHeld(ExportError):
    """Another coordinator is exporting into the same exports prefix."""


class LeaseLost(ExportError):
    """Another coordinator took this run's lease over: this run must stop writing."""




def current_run_id() -> str | None:
    """The run id whose lease fences this process's publishing (None: no lease)."""
    return os.environ.get(RUN_ID_VARIABLE) or None


def take_lease(url: str, exports: Path, run_id: str) -> tuple[str, float]:
    """Hold the prefix for this run (a lease object written only if none is there: S3's
    If-None-Match); one not renewed for LEASE_STALE_S is taken over, conditionally on its
    ETag. LeaseHeld names the holder otherwise. Returns the lease's ETag and taken_at."""
    taken_at = time.time()
    path = lease_note(exports, taken_at, run_id)
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
        renewed = f"renewed {silent:.0f} s ago" if silent < 120 else f"silent {silent / 60:.0f} min"
        raise LeaseHeld(f"{url}: another run is exporting into it (run "
                        f"{str(document.get('run_id', '?'))[:12]}, host "
                        f"{document.get('host', '?')}, pid {document.get('pid', '?')}, for "
                        f"{age / 60:.0f} min, {renewed}; its lease {url}/{LEASE_KEY} is "
                        f"taken over once not renewed for {LEASE_STALE_S // 60} min, or at "
                        "once from the same machine when its process is gone)")
    finally:
        path.unlink(missing_ok=True)


def renew_lease(url: str, exports: Path, etag: str, taken_at: float, run_id: str) -> str:
    """Write the lease again, only if it is still this run's (If-Match its ETag): its
    renewed_at tells any other coordinator that this run is alive. Its new ETag; LeaseLost
    when another run took it over (this one was silent past LEASE_STALE_S)."""
    path = lease_note(exports, taken_at, run_id)
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


def lease_note(exports: Path, taken_at: float, run_id: str) -> Path:
    """The lease's document, in a local file to upload: which run holds it (and where it
    runs: enough for this very machine to tell that its process is gone), since when, and
    when it was last renewed."""
    note = {"run_id": run_id, **this_process(), "taken_at": taken_at,
            "renewed_at": time.time(), "local_tree": str(exports)}
    path = exports / ".lease.json"
    write_text_atomic(path, json.dumps(note) + "\n")
    return path


class Lease:
    """This run's hold on an exports prefix: taken at its start, renewed as it goes (every
    LEASE_RENEW_S, as exports start and finish), dropped at its end."""

    def __init__(self, url: str, exports: Path) -> None:
        self.url, self.exports = url, exports
        self.run_id = uuid.uuid4().hex
        self.etag, self.taken_at = take_lease(url, exports, self.run_id)
        self.renewed = time.monotonic()
        os.environ[RUN_ID_VARIABLE] = self.run_id      # fences what this run publishes

    def keep(self) -> None:
        """Renew it when due; LeaseLost when another run took it over."""
        every = float(os.environ.get("REELEXPORT_LEASE_RENEW_S") or LEASE_RENEW_S)
        if time.monotonic() - self.renewed >= every:
            self.etag = renew_lease(self.url, self.exports, self.etag, self.taken_at,
                                    self.run_id)
            self.renewed = time.monotonic()

    def drop(self) -> None:
        drop_lease(self.url, self.etag)


def this_process() -> dict[str, Any]:
    """Where this process runs: host (for people), boot id and PID namespace (for this very
    machine to tell it is the same one), pid and its start time (a pid taken again later is
    another process)."""
    return {"host": socket.gethostname(), "boot_id": read_text("/proc/sys/kernel/random/boot_id"),
            "pid_ns": read_link("/proc/self/ns/pid"), "pid": os.getpid(),
            "pid_start": process_start(os.getpid())}


def holder_is_gone(document: dict[str, Any]) -> bool:
    """True when this very machine (the same boot, the same PID namespace) shows that the
    lease's process no longer runs: gone, a zombie (killed, not yet reaped), or its pid now
    another process's. Anything this machine cannot tell is not gone."""
    here = this_process()
    if not here["boot_id"] or not here["pid_ns"]:
        return False
    if document.get("boot_id") != here["boot_id"] or document.get("pid_ns") != here["pid_ns"]:
        return False
    try:
        pid = int(document.get("pid") or 0)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    started = process_start(pid)
    return started is None or started != document.get("pid_start")


def process_start(pid: int) -> int | None:
    """The process's start time (clock ticks since boot; None: no such live process)."""
    stat = read_text(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()    # after the command name, which may hold spaces
    if not fields or fields[0] == "Z":
        return None                             # a zombie: killed, its parent not yet told
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read().strip() or None
    except OSError:
        return None


def read_link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


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
