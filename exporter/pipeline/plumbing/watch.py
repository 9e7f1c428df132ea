"""`doit watch`: export renders as they land, without anyone typing a command.

It watches the renders root and the platforms folder (watchfiles: inotify on Linux) and,
for each batch of titles that have settled, runs an ordinary `doit` in a child process
with the same vars: the lock is held only while that batch runs, a bad render fails alone,
and the registry, gallery and history are those of any run.

A title is taken once its final.mp4 and metadata.json exist and have not changed for
`settle=` seconds, so a render still being copied is never exported half-way.
"""

from __future__ import annotations

import itertools
import logging
import math
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from doit import get_var
from watchfiles import watch

from exporter.model import layout
from exporter.model.files import file_state, read_json
from exporter.model.locations import ObjectStoreError
from exporter.model.settings import VAR_NAMES, Settings, SettingsError, resolve_settings
from exporter.pipeline.plumbing.command import ExportCommand, value
from exporter.pipeline.plumbing.lock import LockHeld, acquire, release
from exporter.storage.renders import renders_store

LOG = logging.getLogger(__name__)

SETTLE_S = 5.0          # default settle time: longer than a pause in a network copy
POLL_S = 60.0           # renders in a bucket: listed this often (one LIST a minute)
TICK_MS = 500           # how often settle timers are looked at when nothing happens
UNAVAILABLE_RETRY_S = 2.0
# A batch refused because another run holds the exports tree (`doit` exits 4: lock.py) is
# run again once the tree is free, looked at this often.
REFUSED = 4
TREE_BUSY_RETRY_S = 2.0
# Depth of a title directory under the renders root: segment/age/title_id.
TITLE_DEPTH = 3
# What a render must have, still, before it is taken.
REQUIRED_FILES = ("final.mp4", "metadata.json")


def title_key_of(path: Path, renders: Path) -> str | None:
    """The title (segment/age/title_id) a changed path belongs to; None for a change above
    the titles (a segment or age directory: the whole library is looked at again)."""
    try:
        parts = Path(path).relative_to(renders).parts
    except ValueError:
        return None
    return "/".join(parts[:TITLE_DEPTH]) if len(parts) >= TITLE_DEPTH else None


def title_files_state(directory: Path) -> tuple | None:
    """The state of a title's two required files; None when the title directory is gone."""
    if not directory.is_dir():
        return None
    return tuple(file_state(directory / name) for name in REQUIRED_FILES)


@dataclass
class Settler:
    """Titles seen changing, each released once its files have held still for settle_s."""

    renders: Path
    settle_s: float
    # title key -> (files state, monotonic time it was first seen in that state)
    pending: dict[str, tuple[tuple | None, float]] = field(default_factory=dict)

    def changed(self, key: str, now: float) -> None:
        """A change was seen under the title: its clock restarts only when its two files
        changed (another file written beside them does not hold the title back)."""
        state = title_files_state(self.renders / key)
        known = self.pending.get(key)
        if known is None or known[0] != state:
            self.pending[key] = (state, now)

    def moving(self, now: float) -> bool:
        """Any title whose files changed less than settle_s ago (a copy under way)."""
        return any(now - since < self.settle_s for _, since in self.pending.values())

    def settled(self, now: float) -> tuple[list[str], list[str]]:
        """(complete titles, removed titles) that held still for settle_s; they leave the
        pending set. A title missing one of its files waits, however long it takes."""
        complete, removed = [], []
        for key, (state, since) in list(self.pending.items()):
            current = title_files_state(self.renders / key)
            if current != state:
                self.pending[key] = (current, now)
                continue
            if now - since < self.settle_s:
                continue
            if current is None:
                removed.append(key)
            elif all(part is not None for part in current):
                complete.append(key)
            else:
                continue            # incomplete: not taken until both files are there
            del self.pending[key]
        return sorted(complete), sorted(removed)


def selected(key: str, settings: Settings) -> bool:
    segment, age, _ = key.split("/")
    return ((not settings.segments or segment in settings.segments)
            and (not settings.ages or age in settings.ages))


def doit_vars() -> list[str]:
    """The vars this command was given, to pass on to each batch's run."""
    return [f"{name}={value}" for name in VAR_NAMES
            if (value := get_var(name, None)) is not None]


def batch_tasks(complete: list[str], full: bool) -> list[str]:
    """The tasks of one batch: the settled titles' groups, or everything (default tasks)
    when the platforms changed, a title was removed or the library moved as a whole."""
    return [] if full else [f"export:{key.rsplit('/', 1)[1]}" for key in complete]


def titles_text(keys: list[str]) -> str:
    """How a batch of titles is named: '2 titles: women/18-23/a, women/18-23/b'."""
    return f"{len(keys)} title{'s' if len(keys) > 1 else ''}: " + ", ".join(keys)


def registry_summary(settings: Settings) -> str:
    totals = ((read_json(settings.registry_file) or {}).get("totals") or {}).get("all")
    if not totals:
        return "no registry"
    return ", ".join(f"{totals.get(s, 0)} {s}" for s in ("exported", "stale", "failed",
                                                          "pending"))


# The signals that stopped the watch, as received. Noted, not only carried by the exception:
# watchfiles, which runs the handlers while it waits for changes, replaces whatever they
# raise with a bare KeyboardInterrupt.
RECEIVED: list[int] = []


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM (systemd stopping the service, `kill`) end the watch cleanly, even
    when started where SIGINT was ignored (a shell's background job)."""
    def stop(signum, frame):
        RECEIVED.append(signum)
        raise KeyboardInterrupt()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def stopped_by() -> int:
    """The signal that stopped the watch (SIGINT when none was noted: a KeyboardInterrupt
    raised otherwise)."""
    return RECEIVED[0] if RECEIVED else signal.SIGINT


def tree_busy(exports: Path) -> bool:
    """Whether another run holds the exports tree's lock now (taken and given back at once
    when it is free: a run refused in that instant is the only cost)."""
    try:
        release(acquire(Path(exports) / layout.LOCK))
    except LockHeld:
        return True
    return False


def title_directories(renders: Path) -> list[Path]:
    return [path for path in renders.glob("/".join("*" * TITLE_DEPTH)) if path.is_dir()]


def recently_written(directory: Path, within_s: float, wall_now: float) -> bool:
    """Whether final.mp4 or metadata.json was written less than within_s ago: a render
    that may still be arriving when the watch starts."""
    for name in REQUIRED_FILES:
        try:
            if wall_now - (directory / name).stat().st_mtime < within_s:
                return True
        except OSError:
            continue
    return False


class Watcher:
    """The loop: wait for changes, let them settle, run a batch, repeat."""

    def __init__(self, settings: Settings, settle_s: float, processes: int):
        # watchfiles reports absolute paths
        self.renders, self.platforms = settings.renders.resolve(), settings.platforms_dir.resolve()
        self.settings = settings
        self.settler = Settler(self.renders, settle_s)
        self.processes = processes
        self.batch = 0
        self.child: subprocess.Popen | None = None
        # a whole-library batch to run once nothing moves: (since, why)
        self.full: tuple[float, str] | None = None

    def run_batch(self, tasks: list[str], what: str) -> None:
        """Run one batch as a `doit` child; refused because another run holds the exports
        tree, it waits (one line) until the tree is free and runs then."""
        self.batch += 1
        argv = [sys.executable, "-m", "doit", *doit_vars(), "-n", str(self.processes), *tasks]
        told = False
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen(argv)
            code = self.child.wait()
            self.child = None
            if code != REFUSED:
                break
            if not told:
                LOG.warning(f"watch: batch {self.batch} ({what}) waits: another run holds "
                            f"{self.settings.exports}; it runs once that run ends (looked at "
                            f"every {TREE_BUSY_RETRY_S:g} s)")
                told = True
            while tree_busy(self.settings.exports):
                time.sleep(TREE_BUSY_RETRY_S)
        outcome = "ok" if code == 0 else f"some exports failed (exit {code})"
        LOG.info(f"watch: batch {self.batch} ({what}) done in {time.monotonic() - started:.1f} s, "
                 f"{outcome}; registry: {registry_summary(self.settings)}")

    def want_full(self, since: float, why: str) -> None:
        """Ask for a batch over the whole selection (the first reason given is told)."""
        self.full = (since, why) if self.full is None else (since, self.full[1])

    def note(self, changes: set, now: float) -> None:
        renders, platforms = self.renders, self.platforms
        for _, path in changes:
            path = Path(path)
            if platforms in path.parents or path == platforms:
                self.want_full(now, "the whole selection")
                continue
            key = title_key_of(path, renders)
            if key is None:
                self.want_full(now, "the whole selection")
            else:
                self.settler.changed(key, now)

    def due(self, now: float) -> None:
        """Run what has settled: one batch. A whole-library batch also waits until no
        render is being copied, since it would take every title, half-copied ones too."""
        complete, removed = self.settler.settled(now)
        complete = [key for key in complete if selected(key, self.settings)]
        if removed:
            self.want_full(now - self.settler.settle_s,
                           f"{len(removed)} title{'s' if len(removed) > 1 else ''} removed")
        if (self.full is not None and now - self.full[0] >= self.settler.settle_s
                and not self.settler.moving(now)):
            what, self.full = self.full[1], None
            self.run_batch(batch_tasks(complete, True), what)
        elif complete:
            self.run_batch(batch_tasks(complete, False), titles_text(complete))

    def catch_up(self, now: float) -> None:
        """What changed while nobody watched: one batch over the selection, once the
        renders written in the last settle_s (perhaps still arriving) have settled."""
        titles = title_directories(self.renders)
        if not titles:
            return                  # a run on a library with no titles would only complain
        wall_now = time.time()
        for directory in titles:
            if recently_written(directory, self.settler.settle_s, wall_now):
                self.settler.changed(title_key_of(directory, self.renders), now)
        self.want_full(now - self.settler.settle_s, "catching up")

    def watch_once(self) -> None:
        """Watch until the renders root goes away (then return) or Ctrl-C. Watching starts
        before the catching up, so a render landing meanwhile is seen."""
        roots = [self.renders, self.platforms]
        changes_seen = watch(*roots, debounce=200, rust_timeout=TICK_MS,
                             yield_on_timeout=True, raise_interrupt=True)
        first = next(changes_seen)              # the watcher is live from here
        now = time.monotonic()
        self.catch_up(now)
        LOG.info(f"watch: watching {self.settings.renders} and {self.settings.platforms_dir} "
                 f"(settle {self.settler.settle_s:g} s); Ctrl-C ends")
        for changes in itertools.chain([first], changes_seen):
            now = time.monotonic()
            if not self.renders.is_dir():
                return
            self.note(changes, now)
            self.due(now)

    def wait_for_renders(self) -> None:
        if self.settings.renders.is_dir():
            return
        LOG.warning(f"WARNING watch: {self.settings.renders} is unavailable; waiting for it")
        while not self.settings.renders.is_dir():
            time.sleep(UNAVAILABLE_RETRY_S)
        LOG.warning(f"watch: {self.settings.renders} is back")

    def run(self) -> int:
        try:
            while True:
                self.wait_for_renders()
                try:
                    self.watch_once()
                except (FileNotFoundError, RuntimeError, OSError) as error:
                    LOG.warning(f"WARNING watch: watching stopped ({error}); starting again")
        except KeyboardInterrupt:
            return self.interrupted(stopped_by())

    def interrupted(self, signum: int) -> int:
        """Ctrl-C or SIGTERM: the running batch stops cleanly (it removes its partial
        files and keeps what finished), then we exit as interrupted programs do."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)        # one stop is enough
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)
            try:
                self.child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
        LOG.error(f"watch: stopped by {signal.Signals(signum).name}; no file is left "
                  "half-written, the next run or watch resumes")
        return 128 + signum


def listed_titles(listing: dict[str, list]) -> dict[str, tuple]:
    """A renders prefix's listing (key -> [size, etag]) as title key -> the (name, etag) of
    its files. Pure."""
    titles: dict[str, list] = {}
    for key, (_, etag) in listing.items():
        parts = key.split("/")
        if len(parts) == TITLE_DEPTH + 1:
            titles.setdefault("/".join(parts[:TITLE_DEPTH]), []).append((parts[-1], etag))
    return {key: tuple(sorted(files)) for key, files in titles.items()}


def settled_in_bucket(changed_before: set[str], changed_now: set[str],
                      titles: dict[str, tuple]) -> tuple[list[str], list[str]]:
    """(complete titles, removed titles): those that changed in the listing before this one
    and held still since; a title missing final.mp4 or metadata.json waits. Pure."""
    still = changed_before - changed_now
    complete = [key for key in still if key in titles
                and set(REQUIRED_FILES) <= {name for name, _ in titles[key]}]
    return sorted(complete), sorted(key for key in still if key not in titles)


class BucketWatcher(Watcher):
    """renders=s3://...: a bucket sends no file events, so the prefix is listed every
    poll= seconds; a title is taken once two listings in a row show its final.mp4 and
    metadata.json unchanged (each object lands whole, but a title's files one by one)."""

    def __init__(self, settings: Settings, poll_s: float, processes: int):
        super().__init__(settings, poll_s, processes)
        self.poll_s = poll_s
        self.store = renders_store(settings)

    def platforms_state(self) -> tuple:
        return tuple(sorted((path.name, file_state(path))
                            for path in self.platforms.glob("*.yaml")))

    def watch_once(self) -> None:
        LOG.info(f"watch: listing {self.store} every {self.poll_s:g} s and "
                 f"watching {self.settings.platforms_dir}; Ctrl-C ends")
        self.run_batch(batch_tasks([], True), "catching up")
        titles, platforms, changed = None, self.platforms_state(), set()
        while True:
            try:
                now = listed_titles(self.store.titles_listed())
            except ObjectStoreError as error:
                LOG.warning(f"WARNING watch: {error}; listed again in {self.poll_s:g} s")
                time.sleep(self.poll_s)
                continue
            if titles is not None:
                changed_now = {key for key in titles.keys() | now.keys()
                               if titles.get(key) != now.get(key)}
                complete, removed = settled_in_bucket(changed, changed_now, now)
                changed = changed_now
                self.run_settled([key for key in complete if selected(key, self.settings)],
                                 removed, platforms)
                platforms = self.platforms_state()
            titles = now
            time.sleep(self.poll_s)

    def run_settled(self, complete: list[str], removed: list[str], platforms: tuple) -> None:
        """One batch: the whole selection after a removal or a platform edit, else the
        titles that landed."""
        if removed or self.platforms_state() != platforms:
            self.run_batch(batch_tasks([], True), "the whole selection")
        elif complete:
            self.run_batch(batch_tasks(complete, False), titles_text(complete))

    def wait_for_renders(self) -> None:
        return      # the bucket is listed: one that cannot be is a warning each poll


class Watch(ExportCommand):
    """doit command plugin: `watch = "exporter.pipeline.plumbing.watch:Watch"` in pyproject.toml."""

    name = "watch"
    doc_purpose = "export renders as they land in the renders root (and after spec edits)"
    doc_usage = "[-n N] [settle=SECONDS] [poll=SECONDS] [segment=...] [age=...] [platforms=...] [renders=...] [exports=...]"
    doc_description = ("Runs `doit` for each batch of titles whose final.mp4 and "
                       "metadata.json have not changed for settle= seconds (default 5); "
                       "with renders in a bucket, listed every poll= seconds (default 60).")
    cmd_options = (value("num_process", "exports at a time in each batch", long="process",
                         default=1, type=int, short="n"),)

    def run(self, params, args):
        logging.getLogger("exporter").setLevel(logging.INFO)
        settle_s = seconds_var("settle", SETTLE_S, 0.0)
        settings = resolve_settings(get_var)
        processes = max(1, params["num_process"])
        stop_on_signals()
        if not renders_store(settings).sends_file_events:
            return BucketWatcher(settings, seconds_var("poll", POLL_S, 1.0), processes).run()
        return Watcher(settings, settle_s, processes).run()


def seconds_var(name: str, default: float, least: float) -> float:
    """A doit var giving seconds (settle=, poll=): refused in one line, exit 3, unless a
    finite number of at least `least`; never clamped."""
    text = get_var(name, None)
    try:
        value = float(text) if text is not None else default
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < least:
        raise SettingsError(f"{name}={text}: not a number of seconds ({least:g} or more)")
    return value
