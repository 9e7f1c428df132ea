"""The distribution history: an append-only JSON Lines file of every export made, failed,
cleaned, forgotten and uploaded, in the exports root (history.jsonl).

Why a JSON Lines file: an event is one `write` of one line under an exclusive flock,
then fsync, so two processes appending at once (a run and an uploader) both land, whole;
a crash mid-append leaves at most that one line cut short, which readers skip and the
next append starts after. Nothing ever rewrites the file, so earlier events cannot be
damaged, and no command deletes it: `doit clean`, `doit forget` and the loss of doit's DB
leave it as it is. It needs no server and reads with `grep` and `jq`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from exporter.model.files import file_state, read_json, write_json_atomic
from exporter.model.layout import HISTORY, HISTORY_INDEX
from exporter.model.records import now_utc

LOG = logging.getLogger(__name__)

EVENT_VERSION = 1
KINDS = ("made", "failed", "cleaned", "forgotten", "uploaded")

Event = dict[str, Any]


def history_path(exports_root: Path) -> Path:
    return Path(exports_root) / HISTORY


def event(kind: str, export: str, **fields: Any) -> Event:
    """One event: its kind, the export's task name (`youtube:my-story`), when, and what."""
    if kind not in KINDS:
        raise ValueError(f"unknown history event kind {kind!r}")
    return {"v": EVENT_VERSION, "at": now_utc(), "event": kind, "export": export, **fields}


def append_events(exports_root: Path, events: Iterable[Event]) -> None:
    """Append events durably: one write under an exclusive lock, then fsync.

    A line cut short by an earlier crash is ended first, so it stays one bad line rather
    than swallowing the first of these.
    """
    text = "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in events)
    if not text:
        return
    fd = os.open(history_path(exports_root), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            text = "\n" + text
        data = text.encode()
        while data:
            written = os.write(fd, data)
            data = data[written:]
        os.fsync(fd)
    finally:
        os.close(fd)        # closing releases the lock


def parse_events(data: bytes, path: Path) -> list[Event]:
    """The whole events in `data` (lines of the history at `path`), in order. Damaged lines
    (a crash mid-append) are skipped with one warning naming how many."""
    events, damaged = [], 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if isinstance(item, dict) and item.get("event") in KINDS and "export" in item:
            events.append(item)
        else:
            damaged += 1
    if damaged:
        LOG.warning(f"WARNING {path}: {damaged} damaged line{'s' if damaged > 1 else ''} "
                    "skipped (an append cut short by a crash)")
    return events


def read_events(exports_root: Path) -> tuple[list[Event], tuple | None]:
    """Every whole event, oldest first, and the file's state before it was read."""
    path = history_path(exports_root)
    state = file_state(path)
    try:
        return parse_events(path.read_bytes(), path), state
    except FileNotFoundError:
        return [], state


def compact(index: dict[str, list[Event]], item: Event) -> None:
    """Fold one event into the index: per export, one `made` per distinct video and the
    last `uploaded`: all distribution_facts needs."""
    kind = item["event"]
    if kind not in ("made", "uploaded"):
        return
    entry = index.setdefault(item["export"], [])
    if kind == "made":
        if not any(e["event"] == "made" and e.get("sha256") == item.get("sha256")
                   for e in entry):
            entry.append({"event": "made", "sha256": item.get("sha256")})
        return
    entry[:] = [e for e in entry if e["event"] != "uploaded"]
    entry.append({key: item.get(key) for key in ("event", "at", "id", "url", "sha256")})


def distribution_index(exports_root: Path, save: bool = True
                       ) -> tuple[dict[str, list[Event]], tuple | None]:
    """Per export, what the registry shows of its history; and the history file's state
    before it was read.

    Kept in HISTORY_INDEX with the offset read up to, so each run reads only the events
    appended since (the file is append-only); a replaced or shorter file is read again from
    the start. A last line still being written is left for the next read. `save=False`
    (read-only commands) uses the index but never writes it.
    """
    path = history_path(exports_root)
    state = file_state(path)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return {}, state
    saved_path = Path(exports_root) / HISTORY_INDEX
    saved = read_json(saved_path)
    with open(path, "rb") as file:
        # the first line (its event's time in ms) tells this file from a new one that got
        # the same inode number
        head = hashlib.sha256(file.readline()).hexdigest()
        if (isinstance(saved, dict) and saved.get("version") == EVENT_VERSION
                and saved.get("inode") == stat.st_ino and saved.get("head") == head
                and 0 <= saved.get("offset", -1) <= stat.st_size
                and isinstance(saved.get("index"), dict)):
            index, offset = saved["index"], saved["offset"]
        else:
            index, offset = {}, 0
        file.seek(offset)
        data = file.read()
    whole = data[:data.rfind(b"\n") + 1]
    for item in parse_events(whole, path):
        compact(index, item)
    if save and whole:
        try:
            write_json_atomic(saved_path, {"version": EVENT_VERSION, "inode": stat.st_ino,
                                           "head": head, "offset": offset + len(whole),
                                           "index": index}, compact=True)
        except OSError:
            pass            # a cache: the next read starts further back
    return index, state


def distribution_facts(events: list[Event], current_sha256: str | None) -> dict[str, Any]:
    """What a registry row shows of one export's history: versions made (distinct videos),
    its last upload, and whether the uploaded copy differs from the current export."""
    made = {e.get("sha256") for e in events if e["event"] == "made" and e.get("sha256")}
    uploads = [e for e in events if e["event"] == "uploaded"]
    last = uploads[-1] if uploads else None
    uploaded = ({"at": last["at"], "id": last.get("id"), "url": last.get("url"),
                 "sha256": last.get("sha256")} if last else None)
    return {"versions": len(made), "uploaded": uploaded,
            "upload_outdated": bool(last) and last.get("sha256") != current_sha256}
