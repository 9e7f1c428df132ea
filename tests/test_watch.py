"""`doit watch`: settle logic (pure, on real files) and the command driven as a user runs it."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    REPO,
    assert_conforms,
    doit_env,
    leftovers,
    load_yaml,
    read_json,
    small_platforms,
)

from exporter.model.history import read_events
from exporter.model.settings import resolve_settings
from exporter.pipeline.watch import Settler, Watcher, title_key_of

# The tool's bookkeeping, not ffmpeg: run once, in the first pass (README: Test).
pytestmark = pytest.mark.once

PLATFORMS = ("youtube", "tiktok", "instagram", "facebook")


def write_title(directory, source_bytes=b"video", metadata=b"{}"):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "final.mp4").write_bytes(source_bytes)
    (directory / "metadata.json").write_bytes(metadata)


def test_title_key_of_a_changed_path(tmp_path):
    assert title_key_of(tmp_path / "women/18-23/a/final.mp4", tmp_path) == "women/18-23/a"
    assert title_key_of(tmp_path / "women/18-23/a", tmp_path) == "women/18-23/a"
    assert title_key_of(tmp_path / "women/18-23", tmp_path) is None      # look at everything
    assert title_key_of(Path("/elsewhere/x/y/z"), tmp_path) is None


def test_a_title_is_released_only_after_holding_still_for_the_settle_time(tmp_path):
    settler = Settler(tmp_path, settle_s=5)
    write_title(tmp_path / "women/18-23/a", b"part")
    settler.changed("women/18-23/a", now=0)
    assert settler.settled(now=4) == ([], [])
    (tmp_path / "women/18-23/a/final.mp4").write_bytes(b"part and more")    # still copying
    assert settler.settled(now=6) == ([], []), "a change restarts the clock"
    assert settler.settled(now=10) == ([], [])
    assert settler.settled(now=11.5) == (["women/18-23/a"], [])
    assert settler.pending == {}


def test_an_incomplete_title_waits_and_a_removed_one_is_reported(tmp_path):
    settler = Settler(tmp_path, settle_s=1)
    (tmp_path / "women/18-23/b").mkdir(parents=True)
    (tmp_path / "women/18-23/b/final.mp4").write_bytes(b"no metadata yet")
    write_title(tmp_path / "men/18-23/c")
    settler.changed("women/18-23/b", now=0)
    settler.changed("men/18-23/c", now=0)
    shutil.rmtree(tmp_path / "men/18-23/c")
    assert settler.settled(now=0.5) == ([], [])
    assert settler.settled(now=1.2) == ([], [])      # c changed state at 0.5: from then
    assert settler.settled(now=2) == ([], ["men/18-23/c"])
    assert "women/18-23/b" in settler.pending, "waits for its metadata.json"
    (tmp_path / "women/18-23/b/metadata.json").write_bytes(b"{}")
    settler.changed("women/18-23/b", now=4)
    assert settler.settled(now=5.5) == (["women/18-23/b"], [])


def test_other_files_written_beside_a_title_do_not_hold_it_back(tmp_path):
    settler = Settler(tmp_path, settle_s=2)
    write_title(tmp_path / "women/18-23/a")
    settler.changed("women/18-23/a", now=0)
    assert settler.moving(now=1)
    (tmp_path / "women/18-23/a/notes.txt").write_text("edited")
    settler.changed("women/18-23/a", now=1.5)         # the watcher saw notes.txt change
    assert settler.settled(now=2.1) == (["women/18-23/a"], [])
    assert not settler.moving(now=2.1)


class BatchesNoted(Watcher):
    """The watch's decisions, with each batch noted instead of run as a `doit` child."""

    def __init__(self, renders, platforms, settle_s):
        values = {"renders": str(renders), "platforms_dir": str(platforms)}
        super().__init__(resolve_settings(lambda name, default=None: values.get(name, default)),
                         settle_s, processes=1)
        self.batches = []

    def run_batch(self, tasks, what):
        self.batches.append((tasks, what))


def test_a_whole_selection_batch_waits_while_a_render_is_arriving(tmp_path):
    """Catching up at start, and a platform edit, take every title: not while one is still
    being copied (it would be exported half-way)."""
    renders, platforms = tmp_path / "renders", tmp_path / "platforms"
    platforms.mkdir()
    write_title(renders / "women/18-23/settled")
    old = time.time() - 60
    for name in ("final.mp4", "metadata.json"):
        os.utime(renders / "women/18-23/settled" / name, (old, old))
    write_title(renders / "men/18-23/arriving", b"part")        # written just now
    watcher = BatchesNoted(renders, platforms, settle_s=2)
    watcher.catch_up(now=100)
    watcher.due(now=100.5)
    assert watcher.batches == [], "men/18-23/arriving was written less than 2 s ago"
    (renders / "men/18-23/arriving/final.mp4").write_bytes(b"part and the rest")
    watcher.note({(2, str(renders / "men/18-23/arriving/final.mp4"))}, now=101)
    watcher.due(now=102.5)
    assert watcher.batches == [], "still arriving"
    watcher.due(now=103.2)
    assert watcher.batches == [([], "catching up")]

    # a platform edit while a render arrives: the same wait
    (platforms / "youtube.yaml").write_text("edited")
    write_title(renders / "men/18-23/second", b"part")
    watcher.note({(2, str(platforms / "youtube.yaml")),
                  (1, str(renders / "men/18-23/second/final.mp4"))}, now=110)
    (renders / "men/18-23/second/final.mp4").write_bytes(b"part and more")
    watcher.due(now=112.2)          # the edit settled, the render changed since 110
    assert len(watcher.batches) == 1
    watcher.due(now=114.5)
    assert watcher.batches[1] == ([], "the whole selection")


# ---- the command ----------------------------------------------------------------------------

def wait_for(condition, timeout, what, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    told = log.read_text(errors="replace")[-4000:] if log else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; watch said:\n{told}")


def rows(exports, title_id):
    try:
        registry = read_json(exports / "registry.json")
    except (FileNotFoundError, ValueError):
        return {}
    return {r["platform"]: r for r in registry["exports"] if r["title_id"] == title_id}


def made_events(exports, export):
    return [e for e in read_events(exports)[0] if e["export"] == export and e["event"] == "made"]


def copy_slowly(source, target, chunks=4, pause_s=1.0, first_chunk=None):
    """A render arriving over the network: written in pieces, seconds apart. The file is
    returned open after `first_chunk` chunks when that is given (call `finish` later)."""
    data = source.read_bytes()
    size = -(-len(data) // chunks)
    pieces = [data[start:start + size] for start in range(0, len(data), size)]
    file = open(target, "wb")

    def write(some):
        for piece in some:
            file.write(piece)
            file.flush()
            time.sleep(pause_s)

    if first_chunk is not None:
        write(pieces[:first_chunk])
        return lambda: (write(pieces[first_chunk:]), file.close())
    write(pieces)
    file.close()


def test_watch_exports_settled_renders_rewrites_removals_and_stops_on_ctrl_c(
        tmp_path, clip_cache):
    renders, exports = tmp_path / "renders", tmp_path / "exports"
    renders.mkdir()
    platforms = small_platforms(tmp_path / "platforms", names=PLATFORMS)
    clip = clip_cache("vertical", width=360, height=640, seconds=1, fps=30, audio=True)
    longer = clip_cache("two-seconds", width=360, height=640, seconds=2, fps=30, audio=True)
    log = tmp_path / "watch.log"
    # A render already arriving when the watch starts: its catching up must not take it
    # half-copied, nor miss the rest of the copy (the watcher is live before it looks).
    title = renders / "women/18-23/arriving"
    title.mkdir(parents=True)
    (title / "metadata.json").write_text('{"title": "Arriving"}', encoding="utf-8")
    finish_copy = copy_slowly(clip, title / "final.mp4", first_chunk=1)
    with open(log, "w") as log_file:
        watch = subprocess.Popen(
            [str(Path(sys.executable).parent / "doit"), "watch", f"renders={renders}",
             f"exports={exports}", f"platforms_dir={platforms}", "settle=2", "-n", "2"],
            cwd=REPO, env=doit_env(), stdout=log_file, stderr=subprocess.STDOUT, text=True)
    try:
        finish_copy()                                    # 3 s more of a file growing
        done = wait_for(lambda: (r := rows(exports, "arriving")) and len(r) == 4 and all(
            row["status"] == "exported" for row in r.values()) and r, 180, "four exports", log)
        for platform in PLATFORMS:
            assert_conforms(exports / done[platform]["path"],
                            load_yaml(platforms / f"{platform}.yaml"), 1.0)
            assert len(made_events(exports, f"{platform}:arriving")) == 1, "exported once"
        assert not [e for e in read_events(exports)[0] if e["event"] == "failed"], \
            "never tried half-copied"

        # rewritten: exported again from the new render
        shutil.copy(longer, title / "final.mp4")
        wait_for(lambda: len(made_events(exports, "youtube:arriving")) == 2
                 and rows(exports, "arriving")["youtube"]["duration_s"] > 1.5, 180,
                 "the re-export", log)
        assert made_events(exports, "youtube:arriving")[-1]["causes"] == ["source changed"]

        # the renders root away for a moment (a network mount): a warning, not a crash
        renders.rename(tmp_path / "away")
        time.sleep(3)
        (tmp_path / "away").rename(renders)
        # removed (as another title lands): its exports stay, the registry marks them
        shutil.rmtree(title)
        other = renders / "men/24-30/next"
        other.mkdir(parents=True)
        (other / "metadata.json").write_text('{"title": "Next"}', encoding="utf-8")
        shutil.copy(clip, other / "final.mp4")
        wait_for(lambda: (r := rows(exports, "arriving")) and all(
            row["status"] == "removed" for row in r.values()), 180, "removed rows", log)
        assert (exports / "women/18-23/arriving/youtube.mp4").is_file()
        wait_for(lambda: (r := rows(exports, "next")) and all(
            row["status"] == "exported" for row in r.values()), 180, "the other title", log)
        assert watch.poll() is None, "still watching"
    finally:
        if watch.poll() is None:
            watch.send_signal(signal.SIGINT)
        watch.wait(timeout=120)
        output = log.read_text()
    assert watch.returncode == 128 + signal.SIGINT, output
    assert output.strip().splitlines()[-1].startswith("watch: stopped by SIGINT"), output
    assert "is unavailable; waiting for it" in output, output
    assert "Traceback" not in output, output
    assert leftovers(exports) == []
    assert not [p for p in exports.rglob("*") if p.is_file() and ".tmp" in p.name]
