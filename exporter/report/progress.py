"""Live progress of the running exports: ffmpeg's `-progress` output -> state files -> display.

`doit -n N` runs exports in worker processes while the reporter lives in the parent, so
progress crosses processes through small files: a worker's ProgressFile keeps
{exports}/.progress/{platform}__{title_id}.json current during its encode, and the
parent's ProgressDisplay polls that folder and renders it: rich's Live display on a
terminal, a plain greppable line every few seconds otherwise (CI, logs).
"""

import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass

from exporter.media.ffmpeg_progress import parse_number
from exporter.pipeline.progress_files import progress_dir, read_states

LOG = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5            # the parent reads the folder twice a second
PLAIN_INTERVAL_S = 10.0          # a plain line this often when output is not a terminal
INTERVAL_ENV = "REELEXPORT_PROGRESS_INTERVAL_S"
BAR_WIDTH = 24


# --- ffmpeg's -progress output ---------------------------------------------------------


# --- pure arithmetic ---------------------------------------------------------------------

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


def plain_line(view):
    """`progress: 3/16 done, 2 running, 0 failed, ETA 0:01:10 | youtube:a 42% 1.3x ETA 0:00:05`"""
    parts = [f"progress: {view.summary}"]
    for export in view.exports:
        if export.phase != "encoding" or export.percent is None:
            parts.append(f"{export.label} {export.phase}")
        else:
            parts.append(f"{export.label} {format_percent(export.percent)} "
                         f"{format_speed(export.speed)} ETA {format_duration(export.eta_s)}")
    return " | ".join(parts)


def rich_view(view):
    """The live display: a bar per running export, then the batch line."""
    # rich is imported only when a terminal shows the display: importing it costs about
    # 80 ms, which every run (the no-op included) would otherwise pay.
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(width=BAR_WIDTH)
    for _ in range(3):
        grid.add_column(justify="right", no_wrap=True)
    for export in view.exports:
        if export.phase == "encoding" and export.percent is not None:
            grid.add_row(export.label, ProgressBar(total=100, completed=export.percent,
                                                  width=BAR_WIDTH),
                         format_percent(export.percent), format_speed(export.speed),
                         f"ETA {format_duration(export.eta_s)}")
        else:
            grid.add_row(export.label, Text(export.phase, style="dim"), "", "", "")
    return Group(grid, Text(view.summary, style="bold"))


# --- the display ------------------------------------------------------------------------

def plain_interval_s(environ=None):
    """Seconds between plain lines: REELEXPORT_PROGRESS_INTERVAL_S (0 turns them off)."""
    environ = os.environ if environ is None else environ
    text = environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return PLAIN_INTERVAL_S
    value = parse_number(text)
    if value is None or value < 0:
        LOG.warning(f"reelexport: {INTERVAL_ENV}={text!r} is not a number of seconds; "
                    f"using {PLAIN_INTERVAL_S:g}")
        return PLAIN_INTERVAL_S
    return value


def is_live_terminal(stream):
    """True when `stream` is this process's stdout on an interactive terminal.

    Decided by isatty itself: FORCE_COLOR, often set on CI, must not bring the live
    display into a log. TERM=dumb or TTY_INTERACTIVE=0 (rich's switches) give plain lines.
    """
    try:
        if stream.fileno() != 1 or not os.isatty(1):
            return False
    except (AttributeError, OSError, ValueError):
        return False
    from rich.console import Console
    return Console(file=stream).is_interactive


class ProgressDisplay:
    """Polls the state folder from a background thread and renders what runs.

    Owns {exports}/.progress for the run: emptied at start (files of a killed run) and
    removed at stop. The caller holds the exports tree's lock, so no other run uses it.
    """

    def __init__(self, exports_root, batch, stream, live=None, interval_s=None,
                 poll_s=POLL_INTERVAL_S):
        self.folder = progress_dir(exports_root)
        self.batch = batch
        self.stream = stream
        self.live = is_live_terminal(stream) if live is None else live
        self.interval_s = plain_interval_s() if interval_s is None else interval_s
        self.poll_s = poll_s
        self.encoded = set()
        self.stopping = threading.Event()
        self.thread = None
        self.terminal = None

    def view(self):
        states = read_states(self.folder)
        self.encoded.update(states)
        return summarize(self.batch.snapshot(), states, self.encoded)

    def start(self):
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.live:
            self.terminal = TerminalOwner()
            self.terminal.start()
        elif not self.interval_s:
            return
        self.thread = threading.Thread(target=self.run, name="reelexport-progress", daemon=True)
        self.thread.start()

    def run(self):
        # The first plain line comes an interval after start, once doit has forked its
        # workers: a fork while this thread holds sys.stdout's lock would hang them.
        last_line = time.monotonic()
        while not self.stopping.wait(self.poll_s):
            if self.live:
                self.terminal.show(rich_view(self.view()))
            elif time.monotonic() - last_line >= self.interval_s:
                last_line = time.monotonic()
                self.stream.write(plain_line(self.view()) + "\n")
                self.stream.flush()

    def stop(self):
        """Stop rendering and give the terminal back; safe to call more than once."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.terminal is not None:
            self.terminal.stop()
            self.terminal = None
        shutil.rmtree(self.folder, ignore_errors=True)


class TerminalOwner:
    """rich's Live display, with every other line of the run printed above it.

    doit, the reporter and the `-n N` workers (separate processes) all write to file
    descriptors 1 and 2; a line reaching the terminal behind Live's back would be erased
    by its next redraw. So while it runs, the terminal's descriptors are pointed at a
    pipe whose lines a thread prints through the display (rich's own redirection replaces
    sys.stdout in this process only). stop() restores them before anything else prints.
    """

    def __init__(self):
        self.saved = {}
        self.reader = None
        self.live = None

    def start(self):
        from rich.console import Console
        from rich.live import Live
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = {fd: os.dup(fd) for fd in (1, 2) if os.isatty(fd)}
        terminal = open(self.saved[1], "w", encoding="utf-8", errors="replace", closefd=False)
        console = Console(file=terminal, force_terminal=True)
        self.live = Live(console=console, auto_refresh=False, transient=True,
                         redirect_stdout=False, redirect_stderr=False)
        self.live.start()
        read_fd, write_fd = os.pipe()
        for fd in self.saved:
            os.dup2(write_fd, fd)
        os.close(write_fd)
        self.reader = threading.Thread(target=self.print_lines, args=(read_fd,),
                                       name="reelexport-output", daemon=True)
        self.reader.start()

    def print_lines(self, read_fd):
        from rich.text import Text
        with open(read_fd, "rb") as pipe:
            for raw in pipe:
                text = raw.decode("utf-8", "replace").rstrip("\n")
                self.live.console.print(Text.from_ansi(text), soft_wrap=True)

    def show(self, renderable):
        self.live.update(renderable, refresh=True)

    def stop(self):
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self.saved.items():
            os.dup2(saved, fd)      # drops this process's write end of the pipe
        # EOF comes when the workers' copies are gone too (they have exited by now).
        self.reader.join(timeout=2.0)
        self.live.stop()
        if not self.reader.is_alive():      # else a straggler still writes: leave it a way out
            for saved in self.saved.values():
                os.close(saved)
        self.saved = {}
