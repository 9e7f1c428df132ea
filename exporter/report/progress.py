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
import threading
import time

from exporter.media.ffmpeg_progress import parse_number
from exporter.pipeline.export.progress_files import progress_dir, read_states
from exporter.report.batch import (
    format_duration,
    format_percent,
    format_speed,
    summarize,
)
from exporter.report.terminal import TerminalOwner, is_live_terminal

LOG = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5            # the parent reads the folder twice a second
PLAIN_INTERVAL_S = 10.0          # a plain line this often when output is not a terminal
INTERVAL_ENV = "REELEXPORT_PROGRESS_INTERVAL_S"
BAR_WIDTH = 24


# --- ffmpeg's -progress output ---------------------------------------------------------


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
