"""Progress crosses processes as small files: a `doit -n` worker's ProgressFile keeps
{exports}/.progress/{platform}__{title_id}.json current during its encode; the run's
display (exporter.report.progress) polls that folder."""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path
from typing import Any

from exporter.model import layout
from exporter.pipeline.placement.cluster import current_worker

PROGRESS_DIR = layout.PROGRESS_DIR
WRITE_INTERVAL_S = 0.5           # a worker rewrites its state file at most twice a second
SPEED_WINDOW_S = 10.0            # encode speed is measured over this much recent time


def progress_dir(exports_root: Path | str) -> Path:
    return Path(exports_root) / PROGRESS_DIR


def state_path(exports_root: Path | str, task_name: str) -> Path:
    return progress_dir(exports_root) / f"{task_name.replace(':', '__')}.json"


class ProgressFile:
    """The `progress` callback of run_ffmpeg for one export's encode, as a context manager.

    With the output's frame rate, progress is counted in video frames (frame / fps), which
    only grow; ffmpeg's out_time follows whichever stream is ahead (see parse_block).
    Speed is measured over the last SPEED_WINDOW_S rather than since the start (ffmpeg's
    figure): it leaves out the seconds before the first frame (x264's lookahead) and
    follows the load, e.g. when another encode ends. Progress is advisory: a write that
    fails (disk full, folder just removed) is skipped, never the export's failure. The
    file is removed on leaving the `with`, whatever happened; the folder too when empty,
    so direct calls leave nothing behind.
    """

    def __init__(self, exports_root, task_name, title_key, duration_s, fps=None,
                 min_interval_s=WRITE_INTERVAL_S, clock=time.time):
        self.path = state_path(exports_root, task_name)
        self.fps = fps
        self.document = {"task": task_name, "title": title_key, "duration_s": duration_s,
                         "pid": os.getpid(), "out_time_s": 0.0, "speed": None, "done": False,
                         "worker": current_worker()}
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.last_write = None
        self.samples = collections.deque()      # (wall time, media seconds) in the window

    def __enter__(self):
        self.document["started_at"] = self.clock()
        self.write()
        return self

    def __exit__(self, *exc_info):
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass            # other exports still running, or already gone

    def __call__(self, update):
        now = self.clock()
        media_s = (update.frame / self.fps if self.fps and update.frame is not None
                   else update.out_time_s)
        media_s = max(media_s, self.document["out_time_s"])
        self.document.update(out_time_s=media_s, done=update.done,
                             speed=self.measure(now, media_s))
        if update.done or self.last_write is None or now - self.last_write >= self.min_interval_s:
            self.write()

    def measure(self, now: float, media_s: float) -> float | None:
        """Media seconds per wall second over the window; None until there are two points."""
        if media_s > 0:
            self.samples.append((now, media_s))
        while len(self.samples) > 2 and self.samples[1][0] <= now - SPEED_WINDOW_S:
            self.samples.popleft()
        if len(self.samples) < 2:
            return self.document["speed"]
        (start, first), (end, last) = self.samples[0], self.samples[-1]
        return (last - first) / (end - start) if end > start else self.document["speed"]

    def write(self) -> None:
        now = self.clock()
        self.document["updated_at"] = now
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp.write_text(json.dumps(self.document), encoding="utf-8")
            os.replace(temp, self.path)     # the reader sees the old or the new, never half
            self.last_write = now
        except OSError:
            temp.unlink(missing_ok=True)


def read_states(folder: Path | str) -> dict[str, dict[str, Any]]:
    """{task: state} of the state files in `folder`; unreadable or vanished files skipped."""
    states = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return states
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(".json"):
            continue
        try:
            state = json.loads(Path(entry.path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and isinstance(state.get("task"), str):
            states[state["task"]] = state
    return states
