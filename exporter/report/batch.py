"""What a run's batch has done and what is left: the pure arithmetic behind the progress
display (percent, speed, ETAs, the batch's own accounting), with no terminal and no files.

report/progress.py renders these views; the reporter feeds Batch as tasks start and end.
"""

import threading
import time
from dataclasses import dataclass


def percent(out_time_s, duration_s):
    """Share of the output written, 0-100 (None when the duration is unknown)."""
    if not duration_s or duration_s <= 0:
        return None
    return min(100.0, max(0.0, 100.0 * out_time_s / duration_s))


def export_eta(out_time_s, duration_s, speed):
    """Wall seconds left in an encode: media seconds left at the speed so far."""
    if not speed or not duration_s:
        return None
    return max(0.0, duration_s - out_time_s) / speed


def batch_eta(remaining, queued_s, slots):
    """Wall seconds until the batch is done, or None while there is nothing to go on.

    remaining: wall seconds left of each running export; queued_s: the expected wall time of
    the exports not started (None: unknown yet); slots: how many run at once (doit's -n, as
    observed). The work left is shared by the slots; the batch cannot end before its
    slowest running export. Exports that doit will find up to date count as queued until it
    checks them, so early in a mostly up-to-date run the estimate errs on the long side.
    """
    if None in remaining or queued_s is None:
        return None
    shared = (sum(remaining) + queued_s) / max(1, slots)
    return max([shared, *remaining])


def queued_work(first, followers, per_first_s, per_follower_s):
    """Expected wall time of the queued exports, or None when a needed figure is unknown.

    A title's first export in the run makes every encode its platforms need (one decode,
    shared outputs); the title's other exports (followers) then mostly link them, so each
    kind is timed apart. A follower counts as free until one has been timed.
    """
    if first and per_first_s is None:
        return None
    return first * (per_first_s or 0.0) + followers * (per_follower_s or 0.0)


def title_of(task_name):
    """'youtube:my-story' -> 'my-story'."""
    return task_name.split(":", 1)[-1]


def format_duration(seconds):
    """H:MM:SS, or '?' when unknown: stable, greppable."""
    if seconds is None:
        return "?"
    total = int(round(seconds))
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def format_percent(value):
    """Whole percent, rounded down: 100% only when the encode is complete."""
    return f"{int(value)}%"


def format_speed(speed):
    if speed is None:
        return "?x"
    return f"{speed:.1f}x" if speed >= 0.095 else f"{speed:.2f}x"


# --- worker side: the state file --------------------------------------------------------


# --- parent side: what the reporter knows, and what is shown ----------------------------

@dataclass(frozen=True)
class BatchSnapshot:
    running: dict               # name -> wall seconds since it started
    done: int
    failed: int
    total: int
    durations: list             # wall seconds of first exports of a title that succeeded
    follower_durations: list    # ... and of its later exports (see queued_work)
    followers: frozenset        # running or finished names that followed their title's first
    queued_first: int
    queued_followers: int
    slots: int                  # most exports seen running at once: doit's -n, in effect


class Batch:
    """The run's exports as the reporter sees them: started, finished, up to date.

    doit calls the reporter in the parent's main thread (for `-n N` too: workers send it
    their events), while the display reads from its own thread: hence the lock.
    """

    def __init__(self, names, clock=time.monotonic):
        self.names = frozenset(names)
        self.clock = clock
        self.lock = threading.Lock()
        self.running = {}           # name -> clock() at start
        self.accounted = set()      # names started, finished or found up to date
        self.titles_run = set()     # titles with an export started in this run
        self.followers = set()      # exports started after another of their title
        self.done = 0
        self.failed = 0
        self.durations = []
        self.follower_durations = []
        self.peak = 0

    def started(self, name):
        if name in self.names:
            with self.lock:
                title = title_of(name)
                if title in self.titles_run:
                    self.followers.add(name)
                self.titles_run.add(title)
                self.accounted.add(name)
                self.running[name] = self.clock()
                self.peak = max(self.peak, len(self.running))

    def finished(self, name, ok):
        if name not in self.names:
            return
        with self.lock:
            self.accounted.add(name)
            start = self.running.pop(name, None)
            self.done += 1
            if not ok:
                self.failed += 1
            elif start is not None:
                timed = self.follower_durations if name in self.followers else self.durations
                timed.append(self.clock() - start)

    def skipped(self, name):
        self.finished(name, ok=True)

    def snapshot(self):
        """A consistent BatchSnapshot."""
        with self.lock:
            now = self.clock()
            queued = self.names - self.accounted
            # one export per title not started yet will be its first; the rest follow
            firsts = len({title_of(name) for name in queued} - self.titles_run)
            return BatchSnapshot(
                running={name: now - start for name, start in self.running.items()},
                done=self.done, failed=self.failed, total=len(self.names),
                durations=list(self.durations),
                follower_durations=list(self.follower_durations),
                followers=frozenset(self.followers), queued_first=firsts,
                queued_followers=len(queued) - firsts, slots=max(1, self.peak))


def exports_in_run(tasks, selected, export_names):
    """The exports this doit invocation may run: the selected tasks and what they depend on.

    tasks: doit's {name: Task}; selected: the names asked for (a group, a title, ...).
    """
    seen, pending = set(), list(selected)
    while pending:
        name = pending.pop()
        if name in seen or name not in tasks:
            continue
        seen.add(name)
        pending += [*tasks[name].task_dep, *tasks[name].setup_tasks]
    return seen & set(export_names)


@dataclass(frozen=True)
class ExportView:
    task: str
    phase: str                  # "preparing", "encoding" or "finishing"
    percent: float | None = None
    speed: float | None = None
    eta_s: float | None = None
    worker: str | None = None   # the Dask worker running it (cluster mode)

    @property
    def label(self):
        return f"{self.task} on {self.worker}" if self.worker else self.task


@dataclass(frozen=True)
class BatchView:
    done: int
    total: int
    failed: int
    exports: tuple
    eta_s: float | None

    @property
    def summary(self):
        return (f"{self.done}/{self.total} done, {len(self.exports)} running, "
                f"{self.failed} failed, ETA {format_duration(self.eta_s)}")


def summarize(snapshot, states, encoded):
    """Combine the reporter's counts with the state files into what is shown.

    Only exports doit says are running are shown, so a stale file cannot show up. A
    running export without a state file is preparing (probe, hashes) or, once its encode
    was seen (`encoded`), finishing (verify, covers); it is expected to take the typical
    time of its kind (queued_work): for a title's first export, the mean of those finished
    so far or, before any, the encodes' projected times (elapsed + ETA).
    """
    running = snapshot.running
    exports, projected = [], []
    for name, elapsed in sorted(running.items(), key=lambda item: -item[1]):
        state = states.get(name)
        if state is None:
            exports.append(ExportView(name, "finishing" if name in encoded else "preparing"))
            continue
        out_time, duration = state.get("out_time_s") or 0.0, state.get("duration_s")
        speed = state.get("speed")
        eta = export_eta(out_time, duration, speed)
        exports.append(ExportView(name, "encoding", percent(out_time, duration), speed, eta,
                                  state.get("worker")))
        if eta is not None:
            projected.append(elapsed + eta)
    typical = snapshot.durations or projected
    per_first = sum(typical) / len(typical) if typical else None
    followed = snapshot.follower_durations
    per_follower = sum(followed) / len(followed) if followed else 0.0

    def left(view):
        if view.eta_s is not None:
            return view.eta_s
        expected = per_follower if view.task in snapshot.followers else per_first
        return None if expected is None else max(0.0, expected - running[view.task])

    queued_s = queued_work(snapshot.queued_first, snapshot.queued_followers, per_first,
                           per_follower)
    return BatchView(snapshot.done, snapshot.total, snapshot.failed, tuple(exports),
                     batch_eta([left(view) for view in exports], queued_s, snapshot.slots))
