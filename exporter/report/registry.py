"""Dep DB status + sidecars -> registry.json. Pure: the same inputs give the same document.

The registry is a view of doit's DB and the sidecars, regenerated at every run (see
report/ledger.registry_document, which also carries over the unchanged row of an export
doit found up to date: the row a full regeneration would give, without reading again; and
report/view.py, which carries a whole unchanged title's bytes).
"""

import json
from datetime import datetime, timezone

import orjson

from exporter.model.files import file_state
from exporter.model.history import Event, distribution_facts
from exporter.model.records import export_facts, failure_facts

STATUSES = ("exported", "stale", "failed", "pending", "removed")
REGISTRY_VERSION = 2


def registry_state(path):
    """The state of registry.json (inode, size, times) as text: what tells one version of
    the file from the next (it is replaced, never rewritten in place)."""
    return repr(file_state(path))


def export_status(target_present, up_to_date, error_present):
    """exported: made and up to date; failed: last attempt failed; stale: made from
    inputs that have changed since; pending: never made. (removed: the export is on disk
    but its title has left the renders root; see ledger.removed_rows.)"""
    if target_present and up_to_date:
        return "exported"
    if error_present:
        return "failed"
    if target_present:
        return "stale"
    return "pending"


def registry_row(identity, status, output_path, sidecar=None, error=None):
    """One (title, platform) entry; fields copied from the sidecar or the error record."""
    row = {**identity, "status": status, "path": output_path}
    if sidecar and status in ("exported", "stale", "removed"):
        row.update(export_facts(sidecar))
    if error and status == "failed":
        row.update(failure_facts(error))
    return row


def with_distribution(row, events: list[Event]):
    """The row with what the history says of its export: versions made, last upload, and
    whether the uploaded copy is outdated (the current export differs from it)."""
    current = row.get("sha256") if row["status"] in ("exported", "stale", "removed") else None
    facts = distribution_facts(events, current)
    if all(row.get(name, facts) == value for name, value in facts.items()):
        queue = queue_state(row)
        # a row carried over from the last registry mostly has them already: not copied
        return row if row.get("queue") == queue else {**row, "queue": queue}
    row = {**row, **facts}
    return {**row, "queue": queue_state(row)}


def queue_state(row, now=None):
    """Where the export stands in the upload queue: registry.json's `queue`."""
    return upload_standing(row, now)[0]


def upload_standing(row, now=None):
    """(state, fields) of one registry row in the upload queue: uploaded (the current
    version), ready, needs (the fields its request lacks, or a `publish_at` passed by `now`),
    or held (stale, failed, pending, removed: whether uploaded or not, it is not the file). The one answer `doit uploads`, `doit status`,
    registry.json and the gallery give."""
    if row["status"] != "exported":
        return "held", []
    if row.get("uploaded") and not row.get("upload_outdated"):
        return "uploaded", []
    needs = list(row.get("needs") or [])
    moment = row.get("publish_at")
    if moment and schedule_passed(moment, now or datetime.now(timezone.utc)):
        needs.append("publish_at")
    return ("needs", needs) if needs else ("ready", [])


def schedule_passed(moment, now):
    """A publish_at (as the row has it, UTC) that is not in the future of `now`: the APIs
    schedule only a time to come (YouTube's publishAt, Facebook's scheduled_publish_time)."""
    try:
        when = datetime.fromisoformat(moment) if isinstance(moment, str) else None
    except ValueError:
        return False        # the request's schema refused it when it was made
    return when is not None and when.tzinfo is not None and when <= now


def empty_totals():
    return {**{status: 0 for status in STATUSES}, "size_bytes": 0, "duration_s": 0.0,
            "uploaded": 0, "upload_outdated": 0}


def add_to_totals(totals, row):
    totals[row["status"]] += 1
    if row.get("uploaded"):
        totals["uploaded"] += 1
        totals["upload_outdated"] += bool(row.get("upload_outdated"))
    if row["status"] in ("exported", "stale"):
        totals["size_bytes"] += row.get("size_bytes") or 0
        totals["duration_s"] = round(totals["duration_s"] + (row.get("duration_s") or 0), 3)


def row_count(row):
    """What one row adds to the totals: (kind, size_bytes, duration_s), the kind being
    (segment, age, platform, status, uploaded, upload outdated); only a made export's
    video counts its size and duration (0 otherwise: adding it changes no sum)."""
    status, uploaded = row["status"], row.get("uploaded")
    kind = (row["segment"], row["age"], row["platform"], status, bool(uploaded),
            bool(uploaded) and bool(row.get("upload_outdated")))
    if status in ("exported", "stale"):
        return kind, row.get("size_bytes") or 0, row.get("duration_s") or 0
    return kind, 0, 0


def totals_of(counts):
    """The registry's totals from each row's row_count, in the registry's row order.

    They are counted per distinct kind first and folded into each group after: 40,000 rows
    make a few hundred kinds, so the per-row work is one dict update, not four groups of
    additions. The order is part of the result (a sum of floats depends on it): a registry
    spliced from carried rows (report/splice.py) adds them in the same order."""
    counted = {}        # kind -> [rows, size_bytes, duration_s]
    for kind, size_bytes, duration_s in counts:
        sums = counted.get(kind)
        if sums is None:
            sums = counted[kind] = [0, 0, 0.0]
        sums[0] += 1
        sums[1] += size_bytes
        sums[2] += duration_s
    totals = {"all": empty_totals(), "by_segment": {}, "by_age": {}, "by_platform": {}}
    for kind in sorted(counted):
        segment, age, platform, status, uploaded, outdated = kind
        count, size_bytes, duration_s = counted[kind]
        for group in (totals["all"],
                      totals["by_segment"].setdefault(segment, empty_totals()),
                      totals["by_age"].setdefault(age, empty_totals()),
                      totals["by_platform"].setdefault(platform, empty_totals())):
            group[status] += count
            group["uploaded"] += count if uploaded else 0
            group["upload_outdated"] += count if outdated else 0
            group["size_bytes"] += size_bytes
            group["duration_s"] = round(group["duration_s"] + duration_s, 3)
    return totals


def row_order(row):
    return (row["segment"], row["age"], row["title_id"], row["platform"])


def build_registry(rows, platforms):
    """The registry document: rows sorted by (segment, age, title, platform) and totals."""
    rows = sorted(rows, key=row_order)
    return {
        "schema_version": REGISTRY_VERSION,
        "platforms": sorted(platforms),
        "totals": totals_of(map(row_count, rows)),
        "exports": rows,
    }


def row_bytes(row):
    """One row on one line, indented, keys sorted: orjson (a third of json's time) for
    what it writes (every row this tool makes), json for what it refuses (a NaN, a huge
    int)."""
    try:
        return b"    " + orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return ("    " + json.dumps(row, sort_keys=True, ensure_ascii=False,
                                    separators=(",", ":"))).encode()


ROWS_OPENING = b'{\n  "exports": [\n'
ROW_SEPARATOR = b",\n"


def registry_bytes(chunks, platforms, totals):
    """registry.json's bytes from its rows' bytes (`chunks`, in order: a title's rows
    joined by ROW_SEPARATOR, or one row each): sorted keys and an indent, but each
    export's row on one line, so it greps by title and 40,000 rows are written by a C
    encoder. The rows come first, at a fixed offset (ROWS_OPENING), so that a title's bytes
    can be carried from one version of the file to the next."""
    head = json.dumps({"platforms": platforms, "schema_version": REGISTRY_VERSION,
                       "totals": totals}, indent=2, sort_keys=True, ensure_ascii=False)
    rest = (head[2:] + "\n").encode()
    if not chunks:
        return b'{\n  "exports": [],\n' + rest
    return ROWS_OPENING + ROW_SEPARATOR.join(chunks) + b"\n  ],\n" + rest


def registry_text(document):
    """registry.json's text for `document` (see registry_bytes)."""
    return registry_bytes([row_bytes(row) for row in document["exports"]],
                          document["platforms"], document["totals"]).decode()
