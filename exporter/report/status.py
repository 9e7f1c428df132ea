"""`doit status`: exported / stale / failed / pending by segment, age and platform.

The statuses are the registry's own (report/ledger.registry_document: doit's dep DB and
the sidecars), computed as of now, so a source edited since the last run shows as stale;
registry.json itself when the library stamp proves nothing changed since it was written.
Nothing is encoded, written or locked: it is safe while a run holds the exports tree.
"""

import copy
import json
import os
import sqlite3
import sys
from pathlib import Path

from doit.dependency import DatabaseException
from doit.exceptions import InvalidDodoFile

from exporter.model import layout
from exporter.model.files import read_json
from exporter.model.history import distribution_index
from exporter.model.layout import task_name
from exporter.model.settings import Settings
from exporter.pipeline.plumbing.command import ExportCommand, flag
from exporter.pipeline.export.library import load_build
from exporter.pipeline.export.stamp import check_stamp
from exporter.report.formatting import (
    MADE,
    SOURCE_TYPE_WORDS,
    ffmpeg_release,
    format_duration,
    format_size,
)
from exporter.report.ledger import registry_document, with_history
from exporter.report.registry import STATUSES, add_to_totals, empty_totals, upload_standing


def select_rows(rows, segments=(), ages=(), platforms=()):
    """The registry rows a selection covers; an empty selection covers everything."""
    return [row for row in rows
            if (not segments or row["segment"] in segments)
            and (not ages or row["age"] in ages)
            and (not platforms or row["platform"] in platforms)]


def status_report(document, segments=(), ages=(), platforms=()):
    """Registry document -> {groups, total, failures} for the selected rows.

    One group per (segment, age, platform), sorted; failures carry their one-line cause.
    """
    rows = select_rows(document["exports"], segments, ages, platforms)
    groups, total = {}, empty_totals()
    for row in rows:
        add_to_totals(groups.setdefault((row["segment"], row["age"], row["platform"]),
                                        empty_totals()), row)
        add_to_totals(total, row)
    failures = [{"task": task_name(row["platform"], row["title_id"]),
                 "title": f"{row['segment']}/{row['age']}/{row['title_id']}",
                 "cause": one_line(row.get("cause")), "failed_at": row.get("failed_at")}
                for row in rows if row["status"] == "failed"]
    outdated = [{"task": task_name(row["platform"], row["title_id"]),
                 "title": f"{row['segment']}/{row['age']}/{row['title_id']}",
                 "uploaded_at": row["uploaded"]["at"], "id": row["uploaded"]["id"],
                 "url": row["uploaded"]["url"]}
                for row in rows if row.get("upload_outdated") and row.get("uploaded")]
    # exported, but its upload request lacks a field (a declaration): `doit uploads` holds it
    standings = [(row, upload_standing(row)) for row in rows]
    needs = [{"task": task_name(row["platform"], row["title_id"]),
              "title": f"{row['segment']}/{row['age']}/{row['title_id']}",
              "needs": fields}
             for row, (state, fields) in standings if state == "needs"]
    return {
        "needs": needs,
        "upload_outdated": outdated,
        "groups": [{"segment": segment, "age": age, "platform": platform, **totals}
                   for (segment, age, platform), totals in sorted(groups.items())],
        "total": total,
        "failures": failures,
        "made_with": made_with(rows),
        "lowest_quality": lowest_quality(rows),
        "highest_colour": highest_colour(rows),
    }


# How many of the lowest-scored exports `doit status` names, per metric.
LOWEST_SHOWN = 3


def lowest_quality(rows):
    """{metric: the LOWEST_SHOWN exports with the lowest mean score against their source}
    over the rows whose video exists (a remux, proven by its packets, has no score)."""
    scored = {}
    for row in rows:
        quality = row.get("quality") or {}
        if row["status"] in MADE and quality.get("metric") in ("vmaf", "ssim"):
            scored.setdefault(quality["metric"], []).append(
                {"task": task_name(row["platform"], row["title_id"]),
                 "title": f"{row['segment']}/{row['age']}/{row['title_id']}",
                 **{key: quality.get(key) for key in ("mean", "p5", "worst")}})
    return {metric: sorted(found, key=lambda item: (item["mean"], item["task"]))[:LOWEST_SHOWN]
            for metric, found in sorted(scored.items())}


def highest_colour(rows):
    """The LOWEST_SHOWN exports whose picture is furthest from the render's colour (the
    colour check's mean ΔE), over the rows whose video exists."""
    found = []
    for row in rows:
        colour = (row.get("quality") or {}).get("colour") or {}
        if row["status"] in MADE and colour.get("frames"):
            found.append({"task": task_name(row["platform"], row["title_id"]),
                          "title": f"{row['segment']}/{row['age']}/{row['title_id']}",
                          "mean": colour["mean"], "worst": colour["worst"]})
    return sorted(found, key=lambda item: (-item["mean"], item["task"]))[:LOWEST_SHOWN]


def colour_lines(highest):
    """'highest colour ΔE (mean/worst): tiktok:a (women/18-23/a) 1.2/3.4, ...'."""
    if not highest:
        return []
    return ["highest colour ΔE (mean/worst): " + ", ".join(
        f"{item['task']} ({item['title']}) {item['mean']:g}/{item['worst']:g}"
        for item in highest)]


def lowest_lines(lowest):
    """'lowest VMAF (mean/p5/worst): tiktok:a (women/18-23/a) 91.2/88/85.1, ...'."""
    return [f"lowest {metric.upper()} (mean/p5/worst): " + ", ".join(
                f"{item['task']} ({item['title']}) {item['mean']:g}/{item['p5']:g}/"
                f"{item['worst']:g}" for item in items)
            for metric, items in lowest.items()]


def made_with(rows):
    """{ffmpeg -version line: number of exports it made} over the rows whose video exists.

    An ffmpeg change makes every export stale, so two lines here mean a library half
    re-made with a new ffmpeg (the registry row of each export names its own).
    """
    counts = {}
    for row in rows:
        if row["status"] in MADE:
            version = row.get("ffmpeg") or "unknown (made before ffmpeg was recorded)"
            counts[version] = counts.get(version, 0) + 1
    return dict(sorted(counts.items()))


def one_line(text):
    lines = (text or "unknown cause").strip().splitlines()
    return lines[0] if lines else "unknown cause"


TABLE_COLUMNS = ("segment", "age", "platform", *STATUSES, "uploaded", "outdated",
                 "size", "duration")


def table_cells(line):
    return [*(str(line[status]) for status in STATUSES), str(line.get("uploaded", 0)),
            str(line.get("upload_outdated", 0)), format_size(line["size_bytes"]),
            format_duration(line["duration_s"])]


def format_report(report):
    """The report as an aligned text table, then one FAILED line per failed export."""
    lines = [list(TABLE_COLUMNS)]
    lines += [[g["segment"], g["age"], g["platform"], *table_cells(g)] for g in report["groups"]]
    lines.append(["total", "", "", *table_cells(report["total"])])
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_COLUMNS))]
    text = []
    for line in lines:
        cells = [cell.ljust(width) if i < 3 else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(line, widths))]
        text.append("  ".join(cells).rstrip())
    text += [f"made with {ffmpeg_release(version)}: {count} exports"
             for version, count in report.get("made_with", {}).items()]
    text += lowest_lines(report.get("lowest_quality", {}))
    text += colour_lines(report.get("highest_colour", []))
    text += [f"FAILED {f['task']} ({f['title']}): {f['cause']}" for f in report["failures"]]
    text += needs_lines(report.get("needs", []))
    text += [f"UPLOAD OUTDATED {o['task']} ({o['title']}): uploaded {o['uploaded_at']} as "
             f"{o['id']}; the export has changed since" for o in report.get("upload_outdated", [])]
    return "\n".join(text) + "\n"


def needs_lines(needs):
    """One line for the exported exports whose upload request lacks a field (a declaration
    never guessed): how many, and which fields; `doit uploads` lists each."""
    if not needs:
        return []
    fields = {}
    for item in needs:
        for field in item["needs"]:
            fields[field] = fields.get(field, 0) + 1
    counts = ", ".join(f"{field} {count}" for field, count in sorted(fields.items()))
    return [(f"NEEDS {len(needs)} exported not ready to upload, lacking {counts}: "
             "`doit uploads` lists them")]


def lock_holder(lock_path, proc_locks="/proc/locks"):
    """Pid of the run holding the exports tree's flock, or None; read from /proc/locks.

    Never by taking the lock: even a probe would make a run starting at that moment refuse.
    """
    try:
        stat = os.stat(lock_path)
        locks = Path(proc_locks).read_text(encoding="ascii")
    except OSError:
        return None
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in locks.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 3144 fe:00:2146437 0 EOF"; waiters have a "->" field
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            return int(fields[4])
    return None


class EmptyLedger(Settings):
    """Settings whose dep DB is an empty in-memory one: nothing is up to date."""

    dep_file = ":memory:"


def current_registry(build):
    """The registry as of now, written nowhere.

    Without a dep DB (no run yet in this tree, or it was deleted) nothing is up to date; the
    check then runs on an empty in-memory DB rather than letting sqlite create the file.
    """
    check = check_stamp(build)
    if check is not None and check.everything:
        # nothing changed since the run that wrote registry.json left every export up to
        # date (pipeline/export/stamp.py): computing it again would give the same rows, but for
        # uploads recorded since
        document = read_json(build.settings.registry_file)
        if isinstance(document, dict) and "exports" in document:
            return (with_history(document,
                                 distribution_index(build.settings.exports, save=False)[0])
                    if check.history_changed else document)
    dep_file = build.settings.dep_file
    if not dep_file.exists():
        build = copy.copy(build)
        build.settings = EmptyLedger(**vars(build.settings))
    # titles the stamp proves keep their rows of registry.json; only the others are checked
    proven = check.proven_outcomes(build.all_jobs) if check is not None else {}
    previous = read_json(build.settings.registry_file) if proven else None
    try:
        return registry_document(build, proven, previous)
    except (DatabaseException, sqlite3.DatabaseError) as error:
        raise InvalidDodoFile(f"dependency DB {dep_file} cannot be read ({error}); "
                              "the next run sets it aside") from None


def status_document(build):
    """What `doit status --json` prints: the report plus where it comes from."""
    settings = build.settings
    document = current_registry(build)
    report = status_report(document, settings.segments, settings.ages, settings.platforms)
    rows = select_rows(document["exports"], settings.segments, settings.ages,
                       settings.platforms)
    return {"exports": str(settings.exports), "run_in_progress": lock_holder(
        settings.exports / layout.LOCK), **report,
        "credentials": credentials_summary(build.credentials, rows)}


def credentials_summary(credentials, rows):
    """Whether exports are signed (content credentials, C2PA) and what the made ones carry:
    how many are signed by the signer configured, by another, or not at all, and what
    their manifests state of the render (AI-generated, partly, no AI claim)."""
    summary = {"signing": "on" if credentials else "off"}
    if credentials:
        summary["signer"] = credentials.identity()
    counts, states = {"signed": 0, "other_signer": 0, "unsigned": 0}, {}
    for row in rows:
        if row["status"] not in MADE:
            continue
        facts = row.get("credentials")
        if not facts:
            counts["unsigned"] += 1
            continue
        counts["signed" if credentials is None or facts.get("fingerprint")
               == credentials.fingerprint else "other_signer"] += 1
        source = (facts.get("digital_source_type") or "").rsplit("/", 1)[-1]
        claim = SOURCE_TYPE_WORDS.get(source, "no AI claim")
        states[claim] = states.get(claim, 0) + 1
    if credentials or counts["signed"]:
        summary.update(counts, states=dict(sorted(states.items())))
    return summary


def credentials_lines(summary):
    """'credentials: off (...)', or who signs and what the made exports carry."""
    if not summary:
        return []
    if summary["signing"] == "off":
        line = ("credentials: off (REELEXPORT_C2PA_CERT and REELEXPORT_C2PA_KEY sign every "
                "export: docs/credentials.md)")
        if summary.get("signed"):
            line += f"; {summary['signed']} exports carry them from an earlier run"
        return [line]
    signer = summary["signer"]
    made = summary["signed"] + summary["other_signer"] + summary["unsigned"]
    states = ", ".join(f"{count} {claim}" for claim, count in summary["states"].items())
    line = (f"credentials: signed by {signer['name']} (sha256 {signer['fingerprint'][:16]}, "
            f"until {signer['not_after'][:10]}): {summary['signed']} of {made} exports"
            + (f" ({states})" if states else ""))
    waiting = summary["other_signer"] + summary["unsigned"]
    if waiting:
        line += f"; {waiting} not signed by it yet (the next run signs them)"
    return [line]


def format_status(document):
    """Text output: a note when a run is going, then the table and failures."""
    pid = document["run_in_progress"]
    note = (f"a run (pid {pid}) is writing {document['exports']}: until it ends, exports it "
            "makes may read stale (doit saves its DB at the end)\n") if pid else ""
    return note + format_report(document) + "".join(
        line + "\n" for line in credentials_lines(document.get("credentials")))


class Status(ExportCommand):
    """doit command plugin: `status = "exporter.report.status:Status"` in pyproject.toml."""

    name = "status"
    doc_purpose = "exported, stale, failed and pending exports by segment, age and platform"
    doc_usage = ("[--json] [--check] [segment=...] [age=...] [platforms=...] [renders=...] "
                 "[exports=...]")
    doc_description = ("Read-only: doit's dep DB and the sidecars, as of now. Nothing is "
                       "encoded or written, and it runs while another doit run is going.")
    cmd_options = (flag("json", "print the report as JSON"),
                   flag("check", "exit 1 when any selected export is stale, failed or "
                        "pending"))

    def run(self, params, args):
        document = status_document(load_build())
        if params["json"]:
            sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        else:
            sys.stdout.write(format_status(document))
        if params["check"]:
            return check_verdict(document["total"])
        return 0


CHECKED_STATUSES = ("stale", "failed", "pending")


def check_verdict(total):
    """`doit status --check`: 1 (with the counts, on stderr) when anything selected is not
    exported and up to date, else 0."""
    waiting = {status: total.get(status, 0) for status in CHECKED_STATUSES}
    if not any(waiting.values()):
        sys.stderr.write(f"check: all {total.get('exported', 0)} selected exports are "
                         "exported and up to date\n")
        return 0
    sys.stderr.write("check: not up to date: " + ", ".join(
        f"{count} {status}" for status, count in waiting.items()) + "\n")
    return 1
