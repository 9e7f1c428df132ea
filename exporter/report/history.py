"""`doit history`, `doit uploaded` and the recording `doit forget`: the distribution history
(model/history.py) from the command line."""

import json
import sys

from doit import get_var
from doit.cmd_forget import Forget
from doit.cmdparse import CmdParseError
from doit.exceptions import InvalidDodoFile

from exporter.model import layout
from exporter.model.history import append_events, event, read_events
from exporter.model.settings import resolve_settings
from exporter.model.uploads import UploadRefused, record_upload
from exporter.pipeline.command import ExportCommand, flag, value
from exporter.pipeline.library import load_build
from exporter.pipeline.lock import LockHeld, acquire, release
from exporter.pipeline.stamp import check_stamp, write_stamp
from exporter.report.gallery import write_gallery
from exporter.report.ledger import refresh_distribution

# ---- doit history ---------------------------------------------------------------------------


def events_of(events, name):
    """The events of one export (`youtube:my-story`) or of every export of one title
    (`my-story`), newest first."""
    if ":" in name:
        chosen = [e for e in events if e["export"] == name]
    else:
        chosen = [e for e in events if e["export"].partition(":")[2] == name]
    return list(reversed(chosen))


def event_detail(item):
    """What happened, in a few words."""
    kind = item["event"]
    if kind == "made":
        video = "video kept" if item.get("video") == "kept" else item.get("mode") or "?"
        return (f"{', '.join(item.get('causes') or [])}: {video}, "
                f"sha256 {(item.get('sha256') or '?')[:12]}, {item.get('size_bytes')} bytes")
    if kind == "failed":
        return item.get("cause") or "unknown cause"
    if kind == "cleaned":
        return "removed " + ", ".join(item.get("files") or [])
    if kind == "uploaded":
        version = "" if item.get("current", True) else " (an earlier version)"
        return (f"id {item.get('id')}{' ' + item['url'] if item.get('url') else ''}, "
                f"sha256 {(item.get('sha256') or '?')[:12]}{version}")
    return "doit's record of it removed"


def format_history(name, events):
    if not events:
        return f"{name}: no events in the history\n"
    lines = [(e["at"], e["export"], e["event"], event_detail(e)) for e in events]
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "".join("  ".join([*(cell.ljust(w) for cell, w in zip(line, widths)), line[3]])
                   + "\n" for line in lines)


class History(ExportCommand):
    """doit command plugin: the events of one title or one export, newest first."""

    name = "history"
    doc_purpose = "what happened to one title or export: made, failed, cleaned, uploaded"
    doc_usage = "TITLE_ID | PLATFORM:TITLE_ID [--json] [exports=...]"
    doc_description = ("Read-only: the exports root's history.jsonl, newest first. It "
                       "runs while another doit run is going.")
    cmd_options = (flag("json", "print the events as JSON"),)
    names = (1, "one title (my-story) or export (youtube:my-story)")

    def run(self, params, args):
        settings = resolve_settings(get_var)
        events = events_of(read_events(settings.exports)[0], args[0])
        if params["json"]:
            sys.stdout.write(json.dumps({"name": args[0], "events": events}, indent=2) + "\n")
        else:
            sys.stdout.write(format_history(args[0], events))
        return 0


# ---- doit uploaded --------------------------------------------------------------------------


def refresh_registry(build, check):
    """Rewrite registry.json's distribution fields (and the gallery) from the history, and
    keep what the library stamp (`check`, None: it proves nothing) proves: an upload changes
    no export. The document written, or None when there is no registry yet (the next run
    writes it, history included)."""
    document, history_state, before = refresh_distribution(build)
    if document is None:
        return None
    write_gallery(build, document, changed=set(), before=before)
    if check is not None:
        write_stamp(build, document["totals"]["all"], {}, check.proven_entries(),
                    history_state)
    return document


class Uploaded(ExportCommand):
    """doit command plugin: record that an export was uploaded (the upload stage calls it)."""

    name = "uploaded"
    doc_purpose = "record that an export was uploaded: its post id, URL and file"
    doc_usage = ("PLATFORM:TITLE_ID --id POST_ID [--url URL] [--sha256 SHA256 "
                 "[--earlier-version]] [exports=...]")
    doc_description = ("Appends an `uploaded` event to history.jsonl (safe while a run is "
                       "going) and updates registry.json when no run holds the tree.")
    cmd_options = (
        value("id", "the platform's id of the post (required)"),
        value("url", "the post's URL"),
        value("sha256", "sha256 of the file uploaded (default: the current export)"),
        flag("earlier", "the file uploaded is an earlier version (by --sha256)",
             long="earlier-version"),
    )
    names = (1, "one export (youtube:my-story)")

    def run(self, params, args):
        if not params["id"]:
            raise CmdParseError("doit uploaded needs the post's --id")
        settings = resolve_settings(get_var)
        try:
            item = record_upload(settings.exports, args[0], params["id"], params["url"] or None,
                                 params["sha256"] or None, params["earlier"])
        except UploadRefused as error:
            sys.stderr.write(f"reelexport: upload not recorded: {error}\n")
            return 1
        try:
            lock_fd = acquire(settings.exports / layout.LOCK)
        except LockHeld:
            sys.stdout.write(f"recorded: {args[0]} uploaded as {item['id']}; a run holds "
                             "the tree, registry.json shows it after the run\n")
            return 0
        try:
            build = load_build()
            refreshed = refresh_registry(build, check_stamp(build)) is not None
        except InvalidDodoFile as error:
            refreshed = False
            sys.stderr.write(f"reelexport: registry not refreshed ({error})\n")
        finally:
            release(lock_fd)
        where = "registry.json updated" if refreshed else "the next run writes registry.json"
        sys.stdout.write(f"recorded: {args[0]} uploaded as {item['id']}; {where}\n")
        return 0


# ---- doit forget ----------------------------------------------------------------------------


class RecordingForget(Forget):
    """doit's `forget`, which also appends a `forgotten` event for each export it forgets."""

    name = "forget"

    def _execute(self, forget_sub, forget_disable_default, forget_all):
        exports = {task.name for task in self.task_list if task.actions}
        groups = {task.name for task in self.task_list if not task.actions}
        if set(self.sel_tasks or ()) & groups:
            forget_sub = True   # `doit forget export:TITLE` forgets that title's exports
        forgotten = []
        remove = self.dep_manager.remove

        def recording_remove(name):
            forgotten.append(name)
            remove(name)

        self.dep_manager.remove = recording_remove
        result = super()._execute(forget_sub, forget_disable_default, forget_all)
        if forget_all:
            forgotten = sorted(exports)
        titles = {job.task_name: job.title.key for job in load_build().all_jobs}
        append_events(load_build().settings.exports,
                      [event("forgotten", name, title=titles.get(name))
                       for name in forgotten if name in exports])
        return result
