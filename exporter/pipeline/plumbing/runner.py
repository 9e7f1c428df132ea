"""doit's process runner (`doit -n N`), made to notice a worker that dies.

doit 0.37's MRunner waits for each result with a blocking `result_q.get()`: a worker killed
by a signal (kill -9, the OOM killer) never answers, and the run waits forever with nothing
running. This runner waits with a timeout, and when a worker has died it reports the task
that worker was running as failed (the next run makes it; nothing of it was published:
targets only ever appear by rename), so the rest of the batch finishes.

The other way round, a worker must not outlive its run: it dies with it by PR_SET_PDEATHSIG
(exporter.pipeline.plumbing.lock), but a worker whose one interrupt was spent (a second SIGTERM is
ignored, so that it cannot cut a cleanup short) would wait for its next job forever, holding
the run's output pipes open. So a worker waiting for a job checks every second that the
process that forked it is still its parent, and ends when it is not.

doit has no setting for the runner class, so `install()` puts this one where doit's run
command looks it up (`doit.cmd_run.MRunner`).
"""

from __future__ import annotations

import os
import queue
from typing import Any

import doit.cmd_run
from doit.exceptions import TaskFailed
from doit.runner import ERROR, FAILURE, MRunner, Runner

from exporter.pipeline.export.action import export_action, preload_for_exports

POLL_S = 1.0


class PidTaggingQueue:
    """The result queue as a worker sees it: every message carries the worker's pid."""

    def __init__(self, result_q):
        self.result_q = result_q

    def put(self, message: dict[str, Any]) -> None:
        self.result_q.put({**message, "pid": os.getpid()})


class OrphanAwareQueue:
    """The job queue as a worker sees it: while it waits for a job, a parent gone (the
    run killed) reads as the end of the jobs, and the worker ends."""

    def __init__(self, job_q, result_q, parent_pid: int):
        self.job_q, self.result_q, self.parent_pid = job_q, result_q, parent_pid

    def get(self) -> Any:
        while True:
            try:
                return self.job_q.get(timeout=POLL_S)
            except queue.Empty:
                if os.getppid() != self.parent_pid:
                    # nobody reads the results any more: exit without waiting to flush them
                    self.result_q.cancel_join_thread()
                    return None


class FailedExportIsError:
    """A run in which any export failed exits 2, whatever was selected (docs: README "In
    CI"). doit says 1 for a failed task and 2 when a task depending on it could not run, so
    `doit youtube:t1` and `doit` would differ for the same failure; make says 2 for both."""

    def finish(self) -> None:
        if self.final_result == FAILURE:     # run_all returns final_result
            self.final_result = ERROR
        super().finish()


class ExportRunner(FailedExportIsError, Runner):
    """doit's serial runner, with the run's exit status decided above."""


class WatchfulMRunner(FailedExportIsError, MRunner):
    """MRunner that fails the task of a worker that died instead of waiting for it, and
    whose workers end when the run is gone."""

    starting = False            # get_next_job is being called while the workers are forked

    def execute_task_subprocess(self, job_q: Any, result_q: Any, reporter_class: Any) -> Any:
        return super().execute_task_subprocess(
            OrphanAwareQueue(job_q, result_q, self.parent_pid), PidTaggingQueue(result_q),
            reporter_class)

    def _run_start_processes(self, job_q, result_q):
        self.parent_pid = os.getpid()       # the workers' parent, as they will see it
        self.running = {}                   # worker pid -> name of the task it runs
        self.starting = True
        try:
            self.workers = super()._run_start_processes(job_q, result_q)
        finally:
            self.starting = False
        self.original_get = result_q.get
        result_q.get = self.next_result
        return self.workers

    def get_next_job(self, completed: Any) -> Any:
        """doit's next job; an export's, while the workers are forked, first has what an
        export imports imported here, for the workers forked after it to share."""
        job = super().get_next_job(completed)
        if self.starting and job is not None and exports_here(
                self.tasks.get(getattr(job, "name", None))):
            preload_for_exports()
        return job

    def next_result(self) -> dict[str, Any]:
        """The next worker message; a made-up failure for the task of a dead worker."""
        while True:
            try:
                message = self.original_get(timeout=POLL_S)
            except queue.Empty:
                dead = self.dead_worker_message()
                if dead is not None:
                    return dead
                continue
            self.track(message)
            return message

    def track(self, message: dict[str, Any]) -> None:
        pid = message.get("pid")
        if message.get("reporter") == "execute_task":
            self.running[pid] = message["name"]
        elif "reporter" not in message and "exit" not in message:
            self.running.pop(pid, None)

    def dead_worker_message(self) -> dict[str, Any] | None:
        for worker in self.workers:
            if worker.is_alive() or worker.exitcode in (None, 0):
                continue
            name = self.running.pop(worker.pid, None)
            if name is None:
                continue            # died idle, or already reported
            task = self.tasks[name]
            how = (f"killed by signal {-worker.exitcode}" if worker.exitcode < 0
                   else f"exited with status {worker.exitcode}")
            failure = TaskFailed(f"{name}: the worker process running it died ({how}); "
                                "nothing of it was kept, the next run makes it")
            return {"name": name, "failure": failure, "task": task.pickle_safe_dict(),
                    "out": [None] * len(task.actions), "err": [None] * len(task.actions)}
        return None


def exports_here(task: Any) -> bool:
    """Whether a doit task is an export (its action is export_action) whose work runs in
    this machine's workers, not away on a cluster's."""
    return task is not None and any(
        getattr(action, "py_callable", None) is export_action and not action.args[0].place.away
        for action in task.actions)


def install() -> None:
    """Make `doit` use ExportRunner, and `doit -n N` (process workers) WatchfulMRunner."""
    doit.cmd_run.Runner = ExportRunner
    doit.cmd_run.MRunner = WatchfulMRunner
