"""doit reporter: live progress, one line per failed export, registry.json after every run."""

import gc
import logging
import os
import signal
import sys
from pathlib import Path

from doit.exceptions import TaskFailed, UnmetDependency
from doit.reporter import ConsoleReporter

from exporter.media.shared import SharedCache
from exporter.model import layout
from exporter.model.errors import ExportError
from exporter.model.files import remove_stale_temps
from exporter.model.spec import remember_validated
from exporter.pipeline.plumbing import db
from exporter.pipeline.placement.cluster import ClusterError
from exporter.pipeline.export.action import still_wanted
from exporter.pipeline.plumbing.interrupts import reap_workers, stop_on_interrupt_once
from exporter.pipeline.export.library import load_build
from exporter.pipeline.plumbing.lock import HELD, acquire_or_exit
from exporter.storage.exports import PUBLISHED_VALUE
from exporter.storage.lease import LeaseHeld, LeaseLost
from exporter.pipeline.export.stamp import write_stamp
from exporter.report.batch import Batch, exports_in_run
from exporter.report.gallery import PAGE
from exporter.report.history import refresh_registry
from exporter.report.view import regenerate_registry, write_gallery
from exporter.report.progress import ProgressDisplay

LOG = logging.getLogger(__name__)


def wanted_in(build):
    """still_wanted for the shared-encode cache's records, the library's exports made on
    the first record asked of (an empty cache asks nothing: 40,000 take ~0.3 s to make)."""
    jobs_by_name = {}

    def wanted(record):
        if not jobs_by_name:
            jobs_by_name.update((job.task_name, job) for job in build.all_jobs)
        return still_wanted(jobs_by_name, record)
    return wanted


class ExportReporter(ConsoleReporter):
    desc = "reelexport: one-line failures, registry after the run"

    lock_fd = None
    progress = None     # report/progress.ProgressDisplay, from initialize to complete_run
    fetched = None      # the renders store's downloads (storage/renders.py)
    lease = None        # the exports store's lease (storage/lease.py)
    lease_lost = False  # another run took it over: this one writes nothing more there

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        # task name -> "up-to-date" | "done" | "failed": what this run's doit decided, so
        # the registry need not check those exports again (report/ledger.py).
        self.outcomes = {}
        # exports=s3://...: task name -> its files as uploaded by this run (file -> size, etag)
        self.published = {}
        # the files of the root this run could not write (a full disk, a directory in
        # place of one): each said in one line; the run then exits 2, its exports kept
        self.unwritten = []
        # doit's DB failing to save is said by the backend (pipeline/plumbing/db.py); the run exits
        # 2 here, after the registry, rather than there, before it
        db.REPORTER_EXITS_ON_SAVE_FAILURE[0] = True

    def initialize(self, tasks, selected_tasks):
        """Take the exports tree's lock before any task runs; refuse at once if it is held.
        In cluster mode, first check the cluster (every worker sees the storage)."""
        build = load_build()
        settings = build.settings
        if build.proven_up_to_date is None:
            try:
                where = build.place.check(build.renders, build.exports)
                if where:
                    LOG.info(where)
            except ClusterError as error:
                LOG.error(f"reelexport: refused: {error}")
                raise SystemExit(3) from None
            finally:
                build.place.close()     # `doit -n` workers fork next: each connects itself
        try:
            self.lock_fd = acquire_or_exit(settings.exports)
            # what a killed run was writing in the root (a registry, a gallery page): the
            # lock says no one writes them now
            for name in layout.REWRITTEN_FILES:
                remove_stale_temps(settings.exports / name)
        except OSError as error:        # a read-only root, a directory named .lock
            LOG.error(f"reelexport: refused: the exports root cannot be written: "
                      f"{error.filename}: {error.strerror}")
            raise SystemExit(3) from None
        writes_nothing = (build.proven_up_to_date is not None
                          and not build.stamp_check.history_changed)
        # a bucket's prefix: one coordinator at a time (a proven no-op writes nothing there)
        if not writes_nothing:
            try:
                self.lease = build.exports.lease()
            except LeaseHeld as error:      # another coordinator: as with the tree's lock
                LOG.error(f"reelexport: refused: {error}")
                raise SystemExit(HELD) from None
            except ExportError as error:    # the bucket cannot be written
                LOG.error(f"reelexport: refused: {error}")
                raise SystemExit(3) from None
        # SIGTERM (a scheduler, `kill`) stops the run like Ctrl-C: doit saves what finished.
        stop_on_interrupt_once()
        sys.excepthook = self.interrupt_hook(sys.excepthook)
        # renders in a bucket: each title's downloaded render, until it is done
        self.fetched = build.renders.downloads(settings.exports, lambda: build.jobs)
        gc.freeze()     # the loaded tasks live to the end: keep them out of collections
        gc.enable()     # (disabled while loading them: pipeline/plumbing/tasks.doit_config)
        if load_build().proven_up_to_date is None:
            self.start_progress(tasks, selected_tasks)

    def interrupt_hook(self, previous):
        """sys.excepthook: an interrupt that reaches the top is one line, not doit's
        traceback, and the run then dies by the same signal (exit 130 for SIGINT, 143 for
        SIGTERM in a shell), as Unix tools do. Anything else keeps its traceback."""
        def hook(kind, value, traceback):
            if not issubclass(kind, KeyboardInterrupt):
                return previous(kind, value, traceback)
            signum = signal.SIGTERM if "SIGTERM" in str(value) else signal.SIGINT
            LOG.error(f"reelexport: interrupted by {signum.name}: {self.kept_text()}; "
                      "the next run resumes the rest")
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        return hook

    def kept_text(self):
        done = sum(outcome == "done" for outcome in self.outcomes.values())
        return (f"{done} export{'s' if done != 1 else ''} finished in this run "
                f"{'are' if done != 1 else 'is'} kept, no partial file is left")

    def start_progress(self, tasks, selected_tasks):
        """Live progress of the exports this run may execute (we hold the lock: ours alone)."""
        build = load_build()
        names = exports_in_run(tasks, selected_tasks, [job.task_name for job in build.jobs])
        self.progress = ProgressDisplay(build.settings.exports, Batch(names), self.outstream)
        self.progress.start()

    def execute_task(self, task):
        super().execute_task(task)
        if task.actions:    # piped (a CI log): the line as the export starts, not buffered
            self.outstream.flush()
        self.keep_lease()
        if self.progress:
            self.progress.batch.started(task.name)

    def task_over(self, task):
        self.keep_lease()
        if self.fetched:
            self.fetched.finished(task.name)

    def keep_lease(self):
        """A long run keeps its lease on the bucket's prefix; one another run took over
        (this one silent past its staleness) stops this run as Ctrl-C would."""
        if self.lease is None:
            return
        try:
            self.lease.keep()
        except LeaseLost as error:
            self.lease, self.lease_lost = None, True
            LOG.error(f"reelexport: stopped: {error}")
            os.kill(os.getpid(), signal.SIGTERM)
        except ExportError as error:    # the bucket unreachable a moment: tried again next
            LOG.warning(f"WARNING the lease was not renewed: {error}")

    def add_success(self, task):
        if task.actions:    # groups (export:x, youtube, registry) run nothing
            self.outcomes[task.name] = "done"
            self.task_over(task)
            if PUBLISHED_VALUE in task.values:  # exports=s3://...: what its upload returned
                self.published[task.name] = task.values[PUBLISHED_VALUE]
        if self.progress:
            self.progress.batch.finished(task.name, ok=True)

    def skip_uptodate(self, task):
        if task.actions:    # a group is up to date only on the fast path: not news
            super().skip_uptodate(task)
            self.outcomes[task.name] = "up-to-date"
            self.task_over(task)
        if self.progress:
            self.progress.batch.skipped(task.name)

    def add_failure(self, task, fail):
        if task.actions:
            self.outcomes[task.name] = "failed"
            self.task_over(task)
        if self.progress:
            self.progress.batch.finished(task.name, ok=False)
        # A group or the registry waiting on a failed export is not news: the export said it.
        if not isinstance(fail, UnmetDependency):
            self.failures.append({"task": task, "exception": fail})

    def complete_run(self):
        """Called after doit has saved its DB, so the registry sees this run's results."""
        try:
            self.finish_run()
        finally:
            if self.lease:
                try:
                    self.lease.drop()
                except ExportError as error:
                    LOG.error(f"ERROR the lease was not released: {error}")

    def finish_run(self):
        reap_workers()
        if self.fetched:
            self.fetched.clear()
        if self.progress:
            self.progress.stop()    # gives the terminal back before anything else prints
        cluster_lost = []
        for failure in self.failures:
            fail = failure["exception"]
            # TaskFailed carries our one-line cause; anything else is unexpected: show it all.
            text = fail.message.strip() if isinstance(fail, TaskFailed) else fail.get_msg()
            if "cluster: the scheduler" in text:
                cluster_lost.append(text)       # one cause: said once, below
                continue
            LOG.error(f"FAILED {text}")
        if cluster_lost:
            cause = cluster_lost[0].split("): ", 1)[-1]
            LOG.error(f"FAILED {len(cluster_lost)} export{'s' * (len(cluster_lost) > 1)}: "
                      f"{cause}")
        for error in self.runtime_errors:
            LOG.error(f"ERROR {error}")
        if self.lock_fd is None:
            return          # refused: another run owns the tree and its registry
        build = load_build()
        check = build.stamp_check
        if build.proven_up_to_date is not None:
            stamp = build.proven_up_to_date
            self.write(f"{build.selected_count} exports up to date: nothing changed since the "
                       f"run of {stamp['written_at']} that left every export up to date\n")
            totals = stamp["registry_totals"]
            if check.history_changed:       # uploads recorded since: the registry shows them
                refreshed = self.bookkeeping("registry.json", refresh_registry, build, check)
                totals = refreshed or totals
                self.publish_root(build)
            self.write_summary(totals)
            self.exit_if_unwritten()
            return
        if check is not None:
            # of the selection: a title outside it is neither checked nor counted
            selected = {title.key for title in build.titles}
            unchanged = len(check.proven & selected)
            self.write(f"{unchanged} title{'s' * (unchanged != 1)} unchanged since the run of "
                       f"{check.stamp['written_at']} (not checked); "
                       f"{len(check.changed & selected)} checked, "
                       f"{len(check.removed)} removed\n")
        # encodes no export links to, unless made for an export still to make
        self.bookkeeping("the shared-encode cache", SharedCache(build.settings.exports).prune,
                         wanted_in(build))
        view = self.bookkeeping("registry.json", regenerate_registry, build, self.outcomes,
                                check)
        if view is None:
            self.write_outcomes()
            self.exit_if_unwritten()
            return
        # cards read their exports' sidecars and captions again where one was made
        made = {layout.title_id_of(name) for name, outcome in self.outcomes.items()
                if outcome != "up-to-date"}
        self.bookkeeping(PAGE, write_gallery, build, view, made)
        history_state, totals = view.history_state, view.totals["all"]
        if self.published:      # the stamp proves the prefix as this run left it
            build.note_published(self.published)
        self.publish_root(build)
        # the stamp proves the next run has nothing to do: not while a file is behind
        if not (self.runtime_errors or build.problems or self.unwritten or db.SAVE_FAILURES):
            self.bookkeeping(layout.STAMP, write_stamp, build, totals,
                             self.platforms_made_up_to_date(build, check),
                             check.proven_entries() if check is not None else {},
                             history_state)
            # platform files validated at load, before a first run had made the root
            remember_validated(build.settings.platforms_checked_file)
        self.write_summary(totals)
        self.exit_if_unwritten()

    def publish_root(self, build):
        """Exports in a bucket: the registry, history and gallery, to the prefix's root."""
        if not self.lease_lost:
            self.bookkeeping("the bucket's root files", build.exports.publish_root_files)

    def bookkeeping(self, name, write, *args, **kwargs):
        """One of the run's own writes after the exports (registry, gallery, stamp). A file
        that cannot be written (a full disk, a directory in its place, a read-only root)
        is one line naming it and the cause: the exports made are kept, and the other
        writes still happen. Returns what `write` returns, or None when it failed."""
        try:
            return write(*args, **kwargs)
        except (OSError, ExportError) as error:    # ExportError: the history's, one line
            if isinstance(error, OSError):
                where = error.filename or name
                cause = f"cannot write {where}: {error.strerror or error}"
            else:
                where, cause = None, str(error)
            also = "" if where and Path(where).name == name else f"; {name} not written"
            LOG.error(f"reelexport: {cause}{also}; the exports are kept, the next run "
                      "writes it again")
            self.unwritten.append(name)
            return None

    def exit_if_unwritten(self):
        """A run whose registry, gallery, stamp or doit DB could not be written exits 2 (as
        for a failed export: README "In CI"), each cause said above in one line."""
        if self.unwritten or db.SAVE_FAILURES:
            raise SystemExit(2)

    def write_outcomes(self):
        """The summary when the registry could not be written: what this run did."""
        counts = {outcome: sum(value == outcome for value in self.outcomes.values())
                  for outcome in ("done", "up-to-date", "failed")}
        self.write(f"registry: not written; in this run {counts['done']} exports done, "
                   f"{counts['up-to-date']} up to date, {counts['failed']} failed\n")

    def platforms_made_up_to_date(self, build, check):
        """Per title this run touched: the platforms whose exports it found or made up to
        date, or that the stamp proved and the run left alone (only this run's tasks write
        a title's folder while it holds the lock). The stamp proves them from now on, those
        with their targets in place (write_stamp). Only the touched titles are looked at."""
        held = check.held if check is not None else {}
        touched = {layout.title_id_of(name) for name in self.outcomes}
        platforms = {}
        for title in build.all_titles:
            if title.title_id not in touched:
                continue                    # untouched: its entry, if any, is kept
            jobs = [build.job(title, spec) for spec in build.all_specs.values()]
            key = title.key
            outcomes = [self.outcomes.get(job.task_name) for job in jobs]
            platforms[key] = {
                job.spec.name for job, outcome in zip(jobs, outcomes)
                if (outcome in ("up-to-date", "done")
                    or (outcome is None and job.spec.name in held.get(key, ())))}
        return platforms

    def write_summary(self, totals):
        summary = ", ".join(f"{totals[s]} {s}" for s in ("exported", "stale", "failed", "pending"))
        if totals.get("removed"):
            summary += f", {totals['removed']} removed (their titles left the renders root)"
        self.write(f"registry: {summary}\n")
