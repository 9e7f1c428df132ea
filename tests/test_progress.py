"""Live progress: ffmpeg's -progress parsing, ETA arithmetic, state files, the display."""

import io
import json
import os
import pty
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from conftest import REPO, TEST_FFMPEG
from rich.console import Console

from exporter.media.ffmpeg import run_ffmpeg
from exporter.media.ffmpeg_progress import ProgressUpdate, parse_clock, progress_updates
from exporter.media.samples import make_clip
from exporter.model.errors import EncodeError
from exporter.pipeline.export.progress_files import (
    ProgressFile,
    progress_dir,
    read_states,
    state_path,
)
from exporter.report.batch import (
    Batch,
    BatchSnapshot,
    BatchView,
    ExportView,
    batch_eta,
    export_eta,
    exports_in_run,
    format_duration,
    format_speed,
    percent,
    queued_work,
    summarize,
)
from exporter.report.progress import (
    ProgressDisplay,
    plain_interval_s,
    plain_line,
    rich_view,
)
from exporter.report.terminal import is_live_terminal

# What ffmpeg 6-8 print with `-progress pipe:1` (abridged): N/A and a negative time before
# the first packet, then blocks every 0.5 s, the last one ending in progress=end.
FFMPEG_OUTPUT = """\
frame=0
out_time_us=N/A
out_time=-577014:32:22.775808
speed=N/A
progress=continue
frame=26
bitrate=   0.4kbits/s
out_time_us=866667
out_time_ms=866667
out_time=00:00:00.866667
speed=1.73x
progress=continue
frame=36
out_time=00:00:01.200000
speed=1.79x
progress=end
"""


def test_progress_blocks_are_parsed():
    updates = list(progress_updates(FFMPEG_OUTPUT.splitlines(keepends=True)))
    assert updates == [ProgressUpdate(0.0, None, False, frame=0),
                       ProgressUpdate(0.866667, 1.73, False, frame=26),
                       ProgressUpdate(1.2, 1.79, True, frame=36)]


def test_clock_text():
    assert parse_clock("01:02:03.500000") == 3723.5
    assert parse_clock("N/A") is None and parse_clock(None) is None


def test_percent_and_eta():
    assert percent(3.0, 12.0) == 25.0
    assert percent(13.0, 12.0) == 100.0 and percent(1.0, 0) is None
    assert export_eta(3.0, 12.0, 1.5) == 6.0
    assert export_eta(3.0, 12.0, None) is None


def test_batch_eta_shares_the_work_left_among_the_workers():
    # two running (10 s and 30 s left), 80 s of queued work, two at a time
    assert batch_eta([10.0, 30.0], 80.0, 2) == (40 + 80) / 2
    # never before the slowest running export
    assert batch_eta([50.0, 1.0], 0.0, 2) == 50.0
    assert batch_eta([], 0.0, 1) == 0.0
    assert batch_eta([5.0], None, 1) is None      # no idea yet what an export takes
    assert batch_eta([None], 0.0, 1) is None


def test_queued_work_times_a_titles_first_export_and_its_followers_apart():
    assert queued_work(2, 6, 100.0, 1.5) == 2 * 100 + 6 * 1.5
    assert queued_work(0, 6, None, 1.5) == 9.0      # only followers left
    assert queued_work(2, 6, 100.0, None) == 200.0  # no follower timed yet: free
    assert queued_work(2, 0, None, None) is None


def test_followers_of_a_title_do_not_inherit_its_encode_time():
    clock = FakeClock()
    batch = Batch({f"{platform}:{title}" for platform in ("youtube", "tiktok", "facebook")
                   for title in ("a", "b", "c")}, clock=clock)
    batch.started("youtube:a")
    clock.now = 100.0
    batch.finished("youtube:a", ok=True)          # encoded every output of title a
    batch.started("youtube:b")
    snapshot = batch.snapshot()
    # one of title c's exports will encode; the other six follow a title's first
    assert (snapshot.queued_first, snapshot.queued_followers) == (1, 6)
    # youtube:b has ~100 s left, title c 100 s; followers are free until one is timed
    assert summarize(snapshot, {}, set()).eta_s == pytest.approx(200.0)
    batch.started("tiktok:a")
    clock.now = 102.0
    batch.finished("tiktok:a", ok=True)
    snapshot = batch.snapshot()
    assert snapshot.follower_durations == [2.0] and snapshot.queued_followers == 5
    # two have run at once now: the work left is shared by two slots
    assert summarize(snapshot, {}, set()).eta_s == pytest.approx((98.0 + 100.0 + 5 * 2.0) / 2)


class FakeClock:
    now = 0.0

    def __call__(self):
        return self.now


def test_formats_are_stable():
    assert format_duration(70.4) == "0:01:10"
    assert format_duration(3 * 3600 + 5) == "3:00:05"
    assert format_duration(None) == "?"
    assert format_speed(1.34) == "1.3x" and format_speed(0.042) == "0.04x"
    assert format_speed(0.0996) == "0.1x"
    assert format_speed(None) == "?x"


def fake_tasks():
    def task(deps=(), setup=()):
        return SimpleNamespace(task_dep=list(deps), setup_tasks=list(setup))
    return {"youtube": task(["youtube:a", "youtube:b"]), "youtube:a": task(),
            "youtube:b": task(), "tiktok:a": task(), "export:a": task(["youtube:a", "tiktok:a"]),
            "registry": task(["youtube:a", "youtube:b", "tiktok:a"])}


def test_exports_in_run_follow_the_selection():
    tasks, exports = fake_tasks(), ["youtube:a", "youtube:b", "tiktok:a"]
    assert exports_in_run(tasks, ["youtube"], exports) == {"youtube:a", "youtube:b"}
    assert exports_in_run(tasks, ["export:a"], exports) == {"youtube:a", "tiktok:a"}
    assert exports_in_run(tasks, ["registry"], exports) == set(exports)


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_state_file_is_throttled_and_removed_even_on_failure(tmp_path):
    clock = Clock()
    with pytest.raises(RuntimeError):
        with ProgressFile(tmp_path, "youtube:a", "women/18-23/a", 12.0, fps=30,
                          clock=clock) as state:
            path = state_path(tmp_path, "youtube:a")
            assert path.name == "youtube__a.json"

            def written():
                return json.loads(path.read_text())
            clock.now += 0.25
            state(ProgressUpdate(1.0, 4.0, False, frame=15))   # held back: 0.25 s after
            assert written()["out_time_s"] == 0.0
            clock.now += 0.25
            state(ProgressUpdate(1.2, 2.4, False, frame=30))
            document = written()
            # 0.5 s more video in 0.25 s
            assert document["out_time_s"] == 1.0 and document["speed"] == 2.0
            assert document["title"] == "women/18-23/a" and document["duration_s"] == 12.0
            clock.now += 0.5
            # out_time jumps back when the audio ends, and frames never do
            state(ProgressUpdate(0.5, 1.0, False, frame=45))
            assert written()["out_time_s"] == 1.5
            state(ProgressUpdate(12.0, 2.0, True, frame=360))   # the last one: always written
            assert written()["done"] is True and written()["out_time_s"] == 12.0
            assert os.listdir(path.parent) == [path.name]
            raise RuntimeError("ffmpeg failed")
    assert not progress_dir(tmp_path).exists()


def test_speed_follows_the_last_seconds(tmp_path):
    clock = Clock()
    with ProgressFile(tmp_path, "youtube:a", "a", 100.0, fps=10, clock=clock) as state:
        frame = 0
        for step in range(40):              # 20 s at 2x, then 20 s at 0.5x
            clock.now += 1.0
            frame += 20 if step < 20 else 5
            state(ProgressUpdate(0.0, None, False, frame=frame))
            if step == 19:
                assert state.document["speed"] == pytest.approx(2.0)
        assert state.document["speed"] == pytest.approx(0.5)
    assert not progress_dir(tmp_path).exists()


def test_run_ffmpeg_reports_progress_of_a_real_encode(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", width=320, height=240, seconds=2, fps=30)
    # -re reads the input at its own pace: the encode takes ~2 s on any machine
    argv = [TEST_FFMPEG, "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-re",
            "-i", str(clip), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
            "-f", "mp4", str(tmp_path / "out.mp4")]
    recorded = list(argv)
    updates = []
    run_ffmpeg(argv, progress=updates.append)
    assert argv == recorded
    times = [update.out_time_s for update in updates]
    frames = [update.frame for update in updates]
    assert len(updates) >= 3 and times[0] < times[-1] and frames == sorted(frames)
    assert [update.done for update in updates] == [False] * (len(updates) - 1) + [True]
    assert 1.9 <= times[-1] <= 2.1 and frames[-1] == 60
    assert 0.5 < updates[-1].speed < 3.0
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_run_ffmpeg_with_progress_still_reports_failures(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    argv = [TEST_FFMPEG, "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
            "-i", str(bad), "-f", "mp4", str(tmp_path / "out.mp4")]
    with pytest.raises(EncodeError) as failure:
        run_ffmpeg(argv, progress=lambda update: None)
    assert "ffmpeg failed (exit" in str(failure.value)
    assert "Invalid data" in failure.value.stderr_tail


def write_state(exports, task, out_time_s, duration_s, speed, started_at):
    path = state_path(exports, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": task, "title": "t", "duration_s": duration_s,
                                "out_time_s": out_time_s, "speed": speed,
                                "started_at": started_at, "done": False}))


def test_summary_of_running_exports():
    states = {"youtube:a": {"task": "youtube:a", "duration_s": 60.0, "out_time_s": 24.0,
                            "speed": 2.0},
              "tiktok:b": {"task": "tiktok:b", "duration_s": 30.0, "out_time_s": 3.0,
                           "speed": 1.0},
              "youtube:gone": {"task": "youtube:gone", "duration_s": 9.0}}
    running = {"youtube:a": 14.0, "tiktok:b": 4.0, "tiktok:c": 2.0}
    view = summarize(BatchSnapshot(running, done=3, failed=1, total=10, durations=[],
                                   follower_durations=[], followers=frozenset(),
                                   queued_first=4, queued_followers=0, slots=3),
                     states, {"tiktok:c"})
    assert [e.task for e in view.exports] == ["youtube:a", "tiktok:b", "tiktok:c"]
    a, b, c = view.exports
    assert (a.percent, a.speed, a.eta_s) == (40.0, 2.0, 18.0)
    assert (b.percent, b.speed, b.eta_s) == (10.0, 1.0, 27.0)
    assert c.phase == "finishing" and c.percent is None
    # typical export: (14 + 18 + 4 + 27) / 2 = 31.5 s; c has ~29.5 s of it left; 4 queued
    assert view.eta_s == pytest.approx((18 + 27 + 29.5 + 4 * 31.5) / 3)
    assert plain_line(view) == (
        "progress: 3/10 done, 3 running, 1 failed, ETA 0:01:07 | youtube:a 40% 2.0x ETA 0:00:18"
        " | tiktok:b 10% 1.0x ETA 0:00:27 | tiktok:c finishing")


def test_live_view_renders_bars_and_the_batch_line():
    view = BatchView(3, 16, 0, (ExportView("youtube:my-story", "encoding", 42.0, 1.3, 5.0),
                                ExportView("tiktok:other", "preparing")), 70.0)
    console = Console(file=io.StringIO(), width=100, record=True, color_system=None)
    console.print(rich_view(view))
    text = console.export_text()
    assert "youtube:my-story" in text and "42%" in text and "1.3x" in text
    assert "ETA 0:00:05" in text and "tiktok:other" in text and "preparing" in text
    assert "3/16 done, 2 running, 0 failed, ETA 0:01:10" in text
    assert "━" in text          # rich's bar


def test_plain_lines_from_fake_state_files(tmp_path):
    batch = Batch({"youtube:a", "tiktok:a", "youtube:b"})
    stream = io.StringIO()
    display = ProgressDisplay(tmp_path, batch, stream, live=False, interval_s=0.2, poll_s=0.05)
    write_state(tmp_path, "youtube:stale", 1.0, 2.0, 1.0, time.time())   # a killed run's
    display.start()
    assert not progress_dir(tmp_path).exists(), "files of an earlier run are cleared"
    batch.skipped("youtube:b")
    batch.started("youtube:a")
    batch.started("tiktok:a")
    write_state(tmp_path, "youtube:a", 6.0, 12.0, 1.5, time.time() - 4)
    deadline = time.monotonic() + 5
    while "youtube:a 50%" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    display.stop()
    line = stream.getvalue().splitlines()[-1]
    assert line.startswith("progress: 1/3 done, 2 running, 0 failed, ETA ")
    assert " | youtube:a 50% 1.5x ETA 0:00:04 | tiktok:a preparing" in line
    assert not progress_dir(tmp_path).exists()


def test_plain_interval_setting(caplog):
    assert plain_interval_s({}) == 10.0
    assert plain_interval_s({"REELEXPORT_PROGRESS_INTERVAL_S": "2.5"}) == 2.5
    assert plain_interval_s({"REELEXPORT_PROGRESS_INTERVAL_S": "0"}) == 0.0   # off
    assert plain_interval_s({"REELEXPORT_PROGRESS_INTERVAL_S": "often"}) == 10.0
    assert "is not a number of seconds; using 10" in caplog.text     # a warning, logged
    assert is_live_terminal(io.StringIO()) is False


def test_read_states_skips_temporaries_and_junk(tmp_path):
    write_state(tmp_path, "youtube:a", 1.0, 2.0, 1.0, 0)
    folder = progress_dir(tmp_path)
    (folder / ".youtube__b.json.12.tmp").write_text("{")
    (folder / "junk.json").write_text("[1")
    assert list(read_states(folder)) == ["youtube:a"]
    assert read_states(tmp_path / "missing") == {}


# Run in a pseudo-terminal: a child process writes while the live display runs.
TERMINAL_SCRIPT = """
import os, sys, time
from exporter.report.batch import Batch
from exporter.report.progress import ProgressDisplay
batch = Batch({"youtube:a"})
display = ProgressDisplay(sys.argv[1], batch, sys.stdout, poll_s=0.05)
assert display.live
display.start()
batch.started("youtube:a")
time.sleep(0.3)
if os.fork() == 0:                    # a doit worker: its own process, the same descriptors
    sys.stderr.write("WARNING from a worker\\n")
    os._exit(0)
os.wait()
print("parent line")
time.sleep(0.3)
display.stop()
print("after stop")
"""


def test_live_display_prints_every_process_output_above_it(tmp_path):
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", TERMINAL_SCRIPT, str(tmp_path)],
                             stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:               # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert child.wait(timeout=30) == 0, output.decode(errors="replace")
    text = output.decode("utf-8", "replace")
    assert "WARNING from a worker" in text and "parent line" in text
    assert "1 running" in text                        # the live display was drawn
    assert text.rstrip().endswith("after stop")       # and erased (transient) before it
    assert text.index("WARNING from a worker") < text.index("after stop")
