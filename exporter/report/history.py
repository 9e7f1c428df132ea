"""`doit history`, `doit uploaded` and the recording `doit forget`: the distribution history
(model/history.py) from the command line."""

import json
import sys
import time
from pathlib import Path

from doit import get_var
from doit.cmd_forget import Forget
from doit.cmdparse import CmdParseError
from doit.exceptions import InvalidDodoFile

from exporter import __version__
from exporter.model import layout
from exporter.model.history import (
    HistoryError,
    append_events,
    check_history,
    event,
    read_events,
)
from exporter.model.errors import ExportError
from exporter.model.locations import ObjectStoreError
from exporter.model.records import read_record, remake_causes
from exporter.model.settings import resolve_settings
from exporter.model.uploads import UploadRefused, record_upload
from exporter.pipeline.plumbing.command import ExportCommand, flag, value
from exporter.pipeline.export.job import current_inputs, ffmpeg_version, sha256_or_none
from exporter.pipeline.export.library import load_build
from exporter.pipeline.plumbing.lock import LockHeld, acquire, release
from exporter.pipeline.export.stamp import check_stamp, write_stamp
from exporter.report.view import refresh_view, write_gallery
from exporter.storage.exports import exports_store

# ---- doit history ---------------------------------------------------------------------------


def events_of(events, name):
    """The events of one export (`youtube:my-story`) or of every export of one title
    (`my-story`), newest first."""
    if ":" in name:
        chosen = [e for e in events if e["export"] == name]
    else:
        chosen = [e for e in events if e["export"].partition(":")[2] == name]
    return list(reversed(chosen))


def shown(text):
    """`text` as one printable line: a control character (a newline that would forge a
    line, an escape sequence) is shown escaped, never sent to the terminal."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in str(text))


def event_detail(item):
    """What happened, in a few words."""
    kind = item["event"]
    if kind == "made":
        video = {"kept": "video kept", "signed": "video kept, signed again"}.get(
            item.get("video"), item.get("mode") or "?")
        return (f"{', '.join(item.get('causes') or [])}: {video}, "
                f"sha256 {(item.get('sha256') or '?')[:12]}, {item.get('size_bytes')} bytes")
    if kind == "failed":
        return item.get("cause") or "unknown cause"
    if kind == "cleaned":
        return "removed " + ", ".join(item.get("files") or [])
    if kind == "uploaded":
        version = ("" if item.get("current", True) or item.get("stale")
                   else " (an earlier version)")
        stale = (f" (stale: {', '.join(item['stale'])} since it was made)"
                 if item.get("stale") else "")
        return (f"id {item.get('id')}{' ' + item['url'] if item.get('url') else ''}, "
                f"sha256 {(item.get('sha256') or '?')[:12]}{version}{stale}")
    return "doit's record of it removed"


def format_history(name, events):
    if not events:
        return f"{name}: no events in the history\n"
    lines = [tuple(map(shown, (e["at"], e["export"], e["event"], event_detail(e))))
             for e in events]
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
    no export. The totals written, or None when there is no registry yet (the next run
    writes it, history included)."""
    view = refresh_view(build)
    if view is None:
        return None
    write_gallery(build, view, made=set())
    if check is not None:
        write_stamp(build, view.totals["all"], {}, check.proven_entries(),
                    view.history_state)
    return view.totals["all"]


# Who holds the tree's lock while an upload refreshes the registry (pipeline/plumbing/lock.py writes
# it beside its pid): another `doit uploaded` waits for it, a run (anything else) does not.
UPLOADED_HOLDER = "doit uploaded"
# Each holds the lock for one refresh (a second or so): a waiter gives up after this long.
WAIT_FOR_UPLOADS_S = 60.0
POLL_S = 0.05


def lock_text(lock_path):
    try:
        return Path(lock_path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def acquire_after_uploads(lock_path, wait_s=WAIT_FOR_UPLOADS_S):
    """The tree's lock for an upload: waited for while other `doit uploaded` calls hold it
    (so each refresh reads every upload recorded before it, and the last one written shows
    them all); LockHeld at once when a run (any other holder) holds it, or after `wait_s`.

    A holder's line is written just after it takes the lock, so a line without the uploaded
    tag is believed only when it is read twice (the previous holder's line being replaced
    reads once)."""
    deadline = time.monotonic() + wait_s
    run_seen = None
    while True:
        try:
            return acquire(lock_path, by=UPLOADED_HOLDER)
        except LockHeld:
            if time.monotonic() >= deadline:
                raise
            holder = lock_text(lock_path)
            if holder and UPLOADED_HOLDER not in holder:
                if holder == run_seen:
                    raise
                run_seen = holder
                time.sleep(2 * POLL_S)
                continue
            run_seen = None
            time.sleep(POLL_S)


def stale_causes(build, export):
    """Why `export` is not up to date (["source changed", ...]), [] when it is: its sidecar's
    inputs against the renders root's files and the platform spec, by content."""
    job = next((job for job in build.all_jobs if job.task_name == export), None)
    if job is None:
        return ["its title or platform left the library"]
    sidecar = read_record(job.path("sidecar"))
    inputs = current_inputs(job, sidecar)   # a render in a bucket is not downloaded to tell
    causes = remake_causes(sidecar, inputs,
                           spec_sha256=sha256_or_none(job.spec.path),
                           ffmpeg_version=ffmpeg_version(job.ffmpeg), tool_version=__version__,
                           output_missing=False, retried=False)
    return [] if causes == ["forced"] else causes


class Uploaded(ExportCommand):
    """doit command plugin: record that an export was uploaded (the upload stage calls it)."""

    name = "uploaded"
    doc_purpose = "record that an export was uploaded: its post id, URL and file"
    doc_usage = ("PLATFORM:TITLE_ID --id POST_ID [--url URL] [--sha256 SHA256 "
                 "[--earlier-version]] [exports=...]")
    doc_description = ("Appends an `uploaded` event to history.jsonl (safe while a run is "
                       "going) and updates registry.json when no run holds the tree. An "
                       "export whose last attempt failed is refused; a stale one is "
                       "recorded with a warning saying why it is stale.")
    cmd_options = (
        value("id", "the platform's id of the post (required)"),
        value("url", "the post's URL (http or https)", default=None),
        value("sha256", "sha256 of the file uploaded (default: the current export)"),
        flag("earlier", "the file uploaded is an earlier version (by --sha256)",
             long="earlier-version"),
    )
    names = (1, "one export (youtube:my-story)")

    def run(self, params, args):
        if not params["id"]:
            raise CmdParseError("doit uploaded needs the post's --id")
        export = args[0]
        settings = resolve_settings(get_var)
        store = exports_store(settings)
        try:        # with a bucket: what other machines recorded, first
            store.sync_history()
        except (ObjectStoreError, HistoryError) as error:
            sys.stderr.write(f"reelexport: upload not recorded: the exports' history cannot "
                             f"be read: {error}\n")
            return 3
        try:
            stale = stale_causes(load_build(), export) if ":" in export else []
            unchecked = None
        except InvalidDodoFile as error:    # no renders root, a bad spec: cannot tell
            stale, unchecked = [], str(error)
        try:
            item = record_upload(settings.exports, export, params["id"], params["url"],
                                 params["sha256"] or None, params["earlier"], stale)
        except UploadRefused as error:
            sys.stderr.write(f"reelexport: upload not recorded: {error}\n")
            return 1
        try:        # with a bucket: recorded there too, or this is not a success
            store.sync_history()
        except (ObjectStoreError, HistoryError) as error:
            sys.stderr.write(f"reelexport: {export}: recorded here, not yet in {store}: "
                             f"{error}; `doit uploaded` again publishes it (recorded once)\n")
            return 3
        recorded = "already recorded" if item.get("already") else "recorded"
        if item.get("stale") and not item.get("already"):
            sys.stderr.write(f"reelexport: warning: {export} was uploaded stale "
                             f"({', '.join(item['stale'])} since it was made); recorded as an "
                             f"outdated upload: `doit {export}` makes it again\n")
        if unchecked:
            sys.stderr.write(f"reelexport: warning: {export}: could not check that it is "
                             f"up to date ({unchecked})\n")
        where = refresh_after_upload(settings)
        sys.stdout.write(f"{recorded}: {export} uploaded as {item['id']}; {where}\n")
        return 0


def refresh_after_upload(settings):
    """registry.json refreshed after an upload, unless a run holds the tree; what was done,
    as the end of the line `doit uploaded` prints. Nothing here can undo the upload's record:
    a registry or gallery that cannot be written is a warning, never a failed command."""
    try:
        lock_fd = acquire_after_uploads(settings.exports / layout.LOCK)
    except LockHeld:
        return "a run holds the tree, registry.json shows it after the run"
    except OSError as error:        # a directory named .lock, a read-only root
        sys.stderr.write(f"reelexport: warning: registry not refreshed: the tree's lock "
                         f"cannot be taken ({error.filename}: {error.strerror})\n")
        return "the next run writes registry.json"
    try:
        build = load_build()
        refreshed = refresh_registry(build, check_stamp(build)) is not None
    except (InvalidDodoFile, OSError, ExportError) as error:
        refreshed = False
        cause = (f"{error.filename}: {error.strerror}" if isinstance(error, OSError)
                 and error.filename else str(error))
        sys.stderr.write(f"reelexport: warning: registry not refreshed ({cause})\n")
    finally:
        release(lock_fd)
    return "registry.json updated" if refreshed else "the next run writes registry.json"


# ---- doit forget ----------------------------------------------------------------------------


class EachLineOnce:
    """A stream that writes each distinct line once: doit's forget visits an export once
    for each group holding it (its platform, `export`, `export:TITLE`)."""

    def __init__(self, stream):
        self.stream, self.written = stream, set()

    def write(self, text):
        if text not in self.written:
            self.written.add(text)
            self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


class RecordingForget(Forget):
    """doit's `forget`, which also appends a `forgotten` event for each export it forgets."""

    name = "forget"

    def _execute(self, forget_sub, forget_disable_default, forget_all):
        exports_root = load_build().settings.exports
        try:
            check_history(exports_root)     # before anything is forgotten
        except HistoryError as error:
            raise InvalidDodoFile(f"nothing forgotten: {error}") from None
        exports = {task.name for task in self.task_list if task.actions}
        groups = {task.name for task in self.task_list if not task.actions}
        if set(self.sel_tasks or ()) & groups:
            forget_sub = True   # `doit forget export:TITLE` forgets that title's exports
        forgotten = {}          # in order, each once
        remove, stream = self.dep_manager.remove, self.outstream

        def recording_remove(name):
            forgotten[name] = True
            remove(name)

        self.dep_manager.remove = recording_remove
        self.outstream = EachLineOnce(stream)
        try:
            result = super()._execute(forget_sub, forget_disable_default, forget_all)
        finally:
            self.outstream = stream
        if forget_all:
            forgotten = sorted(exports)
        titles = {job.task_name: job.title.key for job in load_build().all_jobs}
        try:
            append_events(exports_root, [event("forgotten", name, title=titles.get(name))
                                         for name in forgotten if name in exports])
        except HistoryError as error:
            raise InvalidDodoFile(f"forgotten, but not recorded: {error}") from None
        return result
