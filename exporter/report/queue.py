"""`doit uploads`: the upload queue. What an upload stage polls, posts, then answers with
`doit uploaded` (report/history.py).

Ready: exported and up to date, its request needing nothing, and not uploaded (or uploaded
from an older version of the video). Everything else selected is held, with its reason:
stale (and why), failed (its cause), pending (never made), or needing a field its request
lacks (a declaration, a privacy the platform cannot take). Read-only, like `doit status`:
doit's DB, the sidecars and the metadata files as of now; nothing is written or locked.
"""

import json
import os
import sys
from datetime import datetime, timezone

from exporter.model.files import read_json
from exporter.model.layout import task_name
from exporter.model.requests import POSTING
from exporter.pipeline.plumbing.command import ExportCommand, flag
from exporter.pipeline.export.library import load_build
from exporter.report.history import stale_causes
from exporter.report.registry import upload_standing
from exporter.report.status import current_registry, select_rows

HELD_KINDS = ("needs", "stale", "failed", "pending")


def absolute(path):
    return os.path.abspath(path)


def queue_entry(job, row, metadata):
    """A ready export: its files, what its request stands for, what the stage adds."""
    upload = metadata.get("upload") or {}
    api = upload.get("api")
    outdated = row.get("uploaded") if row.get("upload_outdated") else None
    return {"export": job.task_name, "title": job.title.key, "platform": job.spec.name,
            "api": api, "video": absolute(job.path("video")),
            "cover": absolute(job.path("cover")), "request_file": absolute(job.path("metadata")),
            "sha256": row.get("sha256"), "privacy": upload.get("privacy"),
            "publish_at": upload.get("publish_at"),
            "declarations": {k: upload.get(k) for k in ("made_for_kids", "ai_generated")},
            "replaces": outdated,
            # its content credentials (C2PA): what its manifest states; None: unsigned
            "credentials": row.get("credentials"),
            **POSTING.get(api, {"endpoint": None, "adds": []})}


def held_entry(job, kind, reason, needs=()):
    return {"export": job.task_name, "title": job.title.key, "platform": job.spec.name,
            "held": kind, "reason": reason, "needs": list(needs)}


def request_needs(metadata):
    """What the metadata file says its request still needs ([] when none); a file made
    before requests existed needs one."""
    upload = metadata.get("upload") if isinstance(metadata, dict) else None
    if not isinstance(upload, dict) or not isinstance(upload.get("needs"), list):
        return [{"field": "request", "why": "its metadata file has no upload request: "
                                            "`doit` makes it again"}]
    return upload["needs"]


def schedule_needs(metadata, now):
    """A publish_at that has passed by `now` ([] when none): the APIs schedule only a time
    to come (YouTube's publishAt, Facebook's scheduled_publish_time), so a request made
    yesterday for this morning is no longer one they take. Judged when the queue is read,
    not when the export was made."""
    upload = metadata.get("upload") if isinstance(metadata, dict) else None
    moment = upload.get("publish_at") if isinstance(upload, dict) else None
    try:
        when = datetime.fromisoformat(moment) if isinstance(moment, str) else None
    except ValueError:
        return []       # the request's schema already refused it when it was made
    if when is None or when.tzinfo is None or when > now:
        return []
    return [{"field": "publish_at",
             "why": f"{moment} has passed: a schedule must be in the future (set a later "
                    "publish_at in metadata.json, or remove it to post now)"}]


def upload_queue(build, document=None, now=None):
    """{ready, held, uploaded, totals} for the selected exports (segment=, age=,
    platforms=), in the registry's order."""
    settings = build.settings
    document = document or current_registry(build)
    now = now or datetime.now(timezone.utc)
    jobs = {job.task_name: job for job in build.all_jobs}
    ready, held, uploaded = [], [], 0
    for row in select_rows(document["exports"], settings.segments, settings.ages,
                           settings.platforms):
        job = jobs.get(task_name(row["platform"], row["title_id"]))
        if job is None or row["status"] == "removed":
            continue
        status = row["status"]
        state, fields = upload_standing(row, now)
        if state == "uploaded":
            uploaded += 1
        elif state in ("needs", "ready"):
            metadata = read_json(job.path("metadata")) or {}
            if state == "ready":
                ready.append(queue_entry(job, row, metadata))
                continue
            said = request_needs(metadata) + schedule_needs(metadata, now)
            needs = [next((n for n in said if n["field"] == field),
                          {"field": field, "why": "its request lacks it"}) for field in fields]
            held.append(held_entry(job, "needs", needs_text(needs), fields))
        elif status == "stale":
            causes = stale_causes(build, job.task_name)
            held.append(held_entry(job, "stale", "stale: " + (
                ", ".join(causes) if causes else "doit's record of it says it is out of date")
                + f"; `doit {job.task_name}` makes it again"))
        elif status == "failed":
            held.append(held_entry(job, "failed", f"failed: {one_line(row.get('cause'))}"))
        else:
            held.append(held_entry(job, "pending", f"not exported yet: `doit {job.task_name}` "
                                                   "makes it"))
    totals = {"ready": len(ready), "uploaded": uploaded,
              **{kind: sum(h["held"] == kind for h in held) for kind in HELD_KINDS}}
    return {"exports": str(settings.exports), "ready": ready, "held": held,
            "totals": totals}


def needs_text(needs):
    """'needs made_for_kids, ai_generated (why); privacy (why)': fields of one reason
    together."""
    by_why = {}
    for item in needs:
        by_why.setdefault(item["why"], []).append(item["field"])
    return "needs " + "; ".join(f"{', '.join(fields)} ({why})" for why, fields in by_why.items())


def one_line(text):
    lines = (text or "unknown cause").strip().splitlines()
    return lines[0] if lines else "unknown cause"


def format_queue(queue):
    """READY lines, then HELD lines, then one line of totals."""
    lines = []
    for item in queue["ready"]:
        when = f", public at {item['publish_at']}" if item["publish_at"] else ""
        again = (f", replaces {item['replaces']['id']} (an older version)"
                 if item["replaces"] else "")
        lines.append(f"READY {item['export']} ({item['title']}): {item['privacy']}{when}"
                     f"{again}; {item['request_file']}")
    lines += [f"HELD {item['export']} ({item['title']}): {item['reason']}"
              for item in queue["held"]]
    totals = queue["totals"]
    lines.append(f"queue: {totals['ready']} ready, {totals['uploaded']} uploaded; held: "
                 + ", ".join(f"{totals[kind]} {label}" for kind, label in (
                     ("needs", "needing a field"), ("stale", "stale"), ("failed", "failed"),
                     ("pending", "pending"))))
    return "\n".join(lines) + "\n"


class Uploads(ExportCommand):
    """doit command plugin: `uploads = "exporter.report.queue:Uploads"` in pyproject.toml."""

    name = "uploads"
    doc_purpose = "the upload queue: exports ready to post, and those held with the reason"
    doc_usage = "[--json] [segment=...] [age=...] [platforms=...] [renders=...] [exports=...]"
    doc_description = ("Read-only, like `doit status`. Ready: exported, up to date, its "
                        "request needing nothing, not uploaded (or uploaded from an older "
                        "version). Each comes with its video, cover and request file "
                        "(metadata_{platform}.json: `request`); post it, then record it "
                        "with `doit uploaded`. docs/uploads.md.")
    cmd_options = (flag("json", "print the queue as JSON"),)

    def run(self, params, args):
        queue = upload_queue(load_build())
        if params["json"]:
            sys.stdout.write(json.dumps(queue, indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(format_queue(queue))
        return 0
