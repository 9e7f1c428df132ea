"""doit reporter: one line per failed export, and registry.json rewritten after every run."""

import sys

from doit.exceptions import TaskFailed, UnmetDependency
from doit.reporter import ConsoleReporter


class ExportReporter(ConsoleReporter):
    desc = "reelexport: one-line failures, registry after the run"

    lock_fd = None

    def initialize(self, tasks, selected_tasks):
        """Take the exports tree's lock before any task runs; refuse at once if it is held."""
        from .lock import LockHeld, acquire
        from .run import stop_on_interrupt_once
        from .tasks import load_build
        try:
            self.lock_fd = acquire(load_build().settings.exports / ".lock")
        except LockHeld as held:
            sys.stderr.write(f"reelexport: refused: {held}\n")
            raise SystemExit(4) from None
        # SIGTERM (a scheduler, `kill`) stops the run like Ctrl-C: doit saves what finished.
        stop_on_interrupt_once()

    def add_failure(self, task, fail):
        # A group or the registry waiting on a failed export is not news: the export said it.
        if not isinstance(fail, UnmetDependency):
            self.failures.append({"task": task, "exception": fail})

    def complete_run(self):
        """Called after doit has saved its DB, so the registry sees this run's results."""
        from .ledger import regenerate_registry
        from .run import reap_workers
        from .tasks import load_build
        reap_workers()
        for failure in self.failures:
            fail = failure["exception"]
            # TaskFailed carries our one-line cause; anything else is unexpected: show it all.
            text = fail.message.strip() if isinstance(fail, TaskFailed) else fail.get_msg()
            sys.stderr.write(f"FAILED {text}\n")
        for error in self.runtime_errors:
            sys.stderr.write(f"ERROR {error}\n")
        if self.lock_fd is None:
            return          # refused: another run owns the tree and its registry
        document = regenerate_registry(load_build())
        counts = document["totals"]["all"]
        summary = ", ".join(f"{counts[s]} {s}" for s in ("exported", "stale", "failed", "pending"))
        self.write(f"registry: {summary}\n")
