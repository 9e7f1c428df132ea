"""The distribution history: an append-only JSON Lines file of every export made, failed,
cleaned, forgotten and uploaded, in the exports root (history.jsonl).

Why a JSON Lines file: an event is one `write` of one line under an exclusive flock,
then fsync, so two processes appending at once (a run and an uploader) both land, whole;
a crash mid-append leaves at most that one line cut short, which readers skip and the
next append starts after. Nothing ever rewrites the file, so earlier events cannot be
damaged, and no command deletes it: `doit clean`, `doit forget` and the loss of doit's DB
leave it as it is. It needs no server and reads with `grep` and `jq`.

Across machines (exports in a bucket) the history is a union, never a copy: every event has
a unique `event_id`, and histories are merged by it (`append_missing`, `merged_text`): an
event recorded anywhere is kept everywhere, once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from exporter.model.errors import ExportError
from exporter.model.files import file_state, write_json_atomic
from exporter.model.layout import HISTORY, HISTORY_INDEX
from exporter.model.records import now_utc

LOG = logging.getLogger(__name__)

EVENT_VERSION = 1
KINDS = ("made", "failed", "cleaned", "forgotten", "uploaded")

Event = dict[str, Any]


class HistoryError(ExportError):
    """history.jsonl or its index cannot be read or written, or events it held are gone:
    one line naming the file and the cause. Nothing is written after it."""


def history_path(exports_root: Path) -> Path:
    return Path(exports_root) / HISTORY


def event(kind: str, export: str, **fields: Any) -> Event:
    """One event: its kind, the export's task name (`youtube:my-story`), when, and what."""
    if kind not in KINDS:
        raise ValueError(f"unknown history event kind {kind!r}")
    return {"v": EVENT_VERSION, "at": now_utc(), "event": kind, "export": export,
            "event_id": uuid.uuid4().hex, **fields}


def event_key(item: Event) -> str:
    """What tells one event from every other: its event_id; for an event written before
    events had one, the sha256 of its canonical JSON (the same line on every machine)."""
    if isinstance(item.get("event_id"), str):
        return item["event_id"]
    return hashlib.sha256(json.dumps(item, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def event_line(item: Event) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":")) + "\n"


def append_events(exports_root: Path, events: Iterable[Event]) -> None:
    """Append events durably: one write under an exclusive lock, then fsync.

    A line cut short by an earlier crash is ended first, so it stays one bad line rather
    than swallowing the first of these.
    """
    text = "".join(event_line(e) for e in events)
    if text:
        append_text(exports_root, lambda data: text)


def append_missing(exports_root: Path, events: Iterable[Event]) -> int:
    """Append those of `events` the history does not hold (by event_key), in their order,
    under the same lock as its reading: the union of the two histories. How many."""
    events = list(events)
    added = []

    def missing(data: bytes) -> str:
        held = {event_key(item) for item in parse_events(data, history_path(exports_root))}
        for item in events:
            if event_key(item) not in held:
                held.add(event_key(item))
                added.append(item)
        return "".join(event_line(item) for item in added)

    append_text(exports_root, missing, read=True)
    return len(added)


def merged_text(ours: bytes, theirs: bytes, path: Path) -> bytes | None:
    """`theirs` (another copy of the history) with the events of `ours` it lacks appended,
    in their order; None when it lacks none."""
    held = {event_key(item) for item in parse_events(theirs, path)}
    more = [item for item in parse_events(ours, path) if event_key(item) not in held]
    if not more:
        return None
    if theirs and not theirs.endswith(b"\n"):
        theirs += b"\n"
    return theirs + "".join(event_line(item) for item in more).encode()


def append_text(exports_root: Path, text_for: Any, read: bool = False) -> None:
    """Append `text_for(data)` under an exclusive lock (`data`: the history's bytes when
    `read`, else b""), then fsync."""
    path = history_path(exports_root)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        raise HistoryError(f"{path} cannot be appended to ({error.strerror}): nothing was "
                           "recorded") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        text = text_for(os.pread(fd, size, 0) if read and size else b"")
        if not text:
            return
        if size and os.pread(fd, 1, size - 1) != b"\n":
            text = "\n" + text
        data = text.encode()
        while data:
            written = os.write(fd, data)
            data = data[written:]
        os.fsync(fd)
    except OSError as error:
        raise HistoryError(f"{path} cannot be appended to ({error.strerror}): the events "
                           "may be cut short (readers skip a cut line)") from None
    finally:
        os.close(fd)        # closing releases the lock


OPTIONAL_TEXT = ("event_id", "title", "id", "url", "sha256", "cause", "mode", "video", "error_type")
OPTIONAL_LISTS = ("causes", "files", "stale")


def shape_problem(item: Any) -> str | None:
    """Why a parsed line is not an event this version can show, or None."""
    if not isinstance(item, dict):
        return "not a JSON object"
    if item.get("event") not in KINDS:
        return (f"unknown event {item['event']!r}" if "event" in item else 'no "event"')
    for key in ("export", "at"):
        if not isinstance(item.get(key), str):
            return f'no "{key}"' if key not in item else f'"{key}" is not a string'
    if ":" not in item["export"]:
        return f'"export" {item["export"]!r} is not platform:title_id'
    for key in OPTIONAL_TEXT:
        if item.get(key) is not None and not isinstance(item[key], str):
            return f'"{key}" is not a string'
    for key in OPTIONAL_LISTS:
        value = item.get(key)
        if value is not None and not (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value)):
            return f'"{key}" is not a list of strings'
    return None


def parse_events(data: bytes, path: Path, first_line: int = 1) -> list[Event]:
    """The events in `data` (lines of the history at `path`, the first of them line number
    `first_line`), in order. A line that is not JSON (an append cut short by a crash) or
    not an event (written by hand, or by something else) is skipped, with one warning
    naming the first such line, its cause, and how many were skipped."""
    events, skipped, first = [], 0, None
    for number, line in enumerate(data.split(b"\n"), start=first_line):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            problem = "not JSON (an append cut short by a crash?)"
        else:
            problem = shape_problem(item)
        if problem is None:
            events.append(item)
            continue
        skipped += 1
        first = first or f"{path}:{number}: {problem}"
    if skipped:
        more = f"; {skipped} lines skipped in all" if skipped > 1 else ""
        LOG.warning(f"WARNING {first}: line skipped{more}")
    return events


def read_events(exports_root: Path) -> tuple[list[Event], tuple | None]:
    """Every whole event, oldest first, and the file's state before it was read."""
    path = history_path(exports_root)
    state = file_state(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = None
    except OSError as error:
        raise HistoryError(f"{path} cannot be read ({error.strerror})") from None
    check_kept(exports_root, saved_index(exports_root), None if data is None else
               head_of(data), None if data is None else len(data))
    return parse_events(data or b"", path), state


def check_history(exports_root: Path) -> None:
    """HistoryError unless the history can take another event: readable, and holding every
    event HISTORY_INDEX read from it (an event appended to a new file after the old one was
    lost would begin a history that silently lacks them). Reads its first line only."""
    path = history_path(exports_root)
    saved = saved_index(exports_root)
    try:
        with open(path, "rb") as file:
            head, size = hashlib.sha256(file.readline()).hexdigest(), os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        head = size = None
    except OSError as error:
        raise HistoryError(f"{path} cannot be read ({error.strerror})") from None
    check_kept(exports_root, saved, head, size)


def head_of(data: bytes) -> str:
    """sha256 of the history's first line: it tells one history file from another."""
    return hashlib.sha256(data[:data.find(b"\n") + 1] if b"\n" in data else data).hexdigest()


def saved_index(exports_root: Path) -> dict[str, Any] | None:
    """HISTORY_INDEX as saved (None: absent or not JSON, a cache read again from scratch);
    HistoryError when something else stands in its place (a directory)."""
    path = Path(exports_root) / HISTORY_INDEX
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    except OSError as error:
        raise HistoryError(f"{path} cannot be read ({error.strerror}); it is what tells a "
                           f"lost {HISTORY} apart: remove it or make it readable") from None
    if (isinstance(saved, dict) and saved.get("version") == EVENT_VERSION
            and isinstance(saved.get("offset"), int) and isinstance(saved.get("index"), dict)):
        return saved
    return None


def check_kept(exports_root: Path, saved: dict | None, head: str | None,
               size: int | None) -> None:
    """HistoryError when the history (the sha256 of its first line and its size; None: no
    file) no longer holds the events HISTORY_INDEX (`saved`) read from it: deleted,
    replaced by a new file, or cut shorter. The registry would otherwise drop every upload
    recorded in them without a word."""
    if not saved or saved["offset"] <= 0:
        return
    path = history_path(exports_root)
    count = saved.get("events")
    held = (f"{count} event{'s' * (count != 1)}" if isinstance(count, int)
            else f"{saved['offset']} bytes of events")
    if head is None or size is None:
        what = "is missing"
    elif head != saved.get("head"):
        what = "was replaced (its first line is not the one read before)"
    elif size < saved["offset"]:
        what = f"was cut to {size} bytes"
    else:
        return
    raise HistoryError(f"{path} {what}, but {held} had been recorded in it "
                       f"({HISTORY_INDEX} read them): restore it from a backup; to start a "
                       f"new history instead, delete {HISTORY_INDEX}")


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
    if item.get("stale"):
        entry[-1]["stale"] = item["stale"]


def tail_of(file: Any, offset: int) -> str:
    """sha256 of the 64 bytes before `offset`: the index's offset is trusted only while the
    events before it are the ones read (a history rewritten in place is read again)."""
    start = max(0, offset - 64)
    file.seek(start)
    return hashlib.sha256(file.read(offset - start)).hexdigest()


def distribution_index(exports_root: Path, save: bool = True
                       ) -> tuple[dict[str, list[Event]], tuple | None]:
    """Per export, what the registry shows of its history; and the history file's state
    before it was read.

    Kept in HISTORY_INDEX with the offset (and the lines and events) read up to, so each
    run reads only the events appended since (the file is append-only); a restored copy
    (another inode, the same first line) is read again from the start, while a history
    deleted, replaced or cut shorter is a HistoryError (check_kept). A last line still
    being written is left for the next read. `save=False` (read-only commands) uses the
    index but never writes it.
    """
    path = history_path(exports_root)
    state = file_state(path)
    saved = saved_index(exports_root)
    saved_path = Path(exports_root) / HISTORY_INDEX
    try:
        with open(path, "rb") as file:
            stat = os.fstat(file.fileno())
            # the first line (its event's time in ms) tells this file from a new one that
            # got the same inode number
            head = hashlib.sha256(file.readline()).hexdigest()
            check_kept(exports_root, saved, head, stat.st_size)
            if (saved and saved.get("inode") == stat.st_ino and saved.get("head") == head
                    and 0 <= saved["offset"] <= stat.st_size
                    and isinstance(saved.get("lines"), int)
                    and isinstance(saved.get("events"), int)
                    and saved.get("tail") == tail_of(file, saved["offset"])):
                index, offset = saved["index"], saved["offset"]
                lines, count = saved["lines"], saved["events"]
            else:
                index, offset, lines, count = {}, 0, 0, 0
            file.seek(offset)
            data = file.read()
            whole = data[:data.rfind(b"\n") + 1]
            tail = tail_of(file, offset + len(whole))
    except FileNotFoundError:
        check_kept(exports_root, saved, None, None)
        return {}, state
    except OSError as error:
        raise HistoryError(f"{path} cannot be read ({error.strerror})") from None
    events = parse_events(whole, path, first_line=lines + 1)
    for item in events:
        compact(index, item)
    if save and whole:
        try:
            write_json_atomic(saved_path, {
                "version": EVENT_VERSION, "inode": stat.st_ino, "head": head,
                "tail": tail,
                "offset": offset + len(whole), "lines": lines + whole.count(b"\n"),
                "events": count + len(events), "index": index}, compact=True)
        except OSError as error:
            raise HistoryError(f"{saved_path} cannot be written ({error.strerror}); "
                               f"{HISTORY} is intact") from None
    return index, state


def distribution_facts(events: list[Event], current_sha256: str | None) -> dict[str, Any]:
    """What a registry row shows of one export's history: versions made (distinct videos),
    its last upload, and whether the uploaded copy is outdated: it differs from the current
    export, or it was uploaded while stale (made from inputs that had changed since)."""
    made = {e.get("sha256") for e in events if e["event"] == "made" and e.get("sha256")}
    uploads = [e for e in events if e["event"] == "uploaded"]
    last = uploads[-1] if uploads else None
    uploaded = ({"at": last["at"], "id": last.get("id"), "url": last.get("url"),
                 "sha256": last.get("sha256")} if last else None)
    return {"versions": len(made), "uploaded": uploaded,
            "upload_outdated": bool(last) and (last.get("sha256") != current_sha256
                                               or bool(last.get("stale")))}
