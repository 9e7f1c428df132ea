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
    DOIT,
    REPO,
    S3_BUCKET,
    assert_conforms,
    aws_env,
    doit_env,
    leftovers,
    load_yaml,
    read_json,
    run_doit,
    small_platforms,
)

from exporter.model import layout
from exporter.model.history import read_events
from exporter.model.settings import resolve_settings
from exporter.pipeline.plumbing.watch import (
    Settler,
    Watcher,
    listed_titles,
    settled_in_bucket,
    title_key_of,
)

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
    file = open(target, "wb")  # noqa: SIM115 (left open on purpose: the copy goes on later)

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
            [str(DOIT), "watch", f"renders={renders}",
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


def start_watch(log, renders, exports, platforms, *extra):
    """`doit watch` as a user starts it, its output into `log`."""
    with open(log, "w") as log_file:
        return subprocess.Popen(
            [str(DOIT), "watch", f"renders={renders}",
             f"exports={exports}", f"platforms_dir={platforms}", *extra],
            cwd=REPO, env=doit_env(), stdout=log_file, stderr=subprocess.STDOUT, text=True)


def stop_watch(watch, signum=signal.SIGINT):
    if watch.poll() is None:
        watch.send_signal(signum)
    return watch.wait(timeout=120)


def test_sigterm_and_sigint_stop_an_idle_watch_each_named_with_its_exit_status(tmp_path):
    """systemd stops the service with SIGTERM: 143 and SIGTERM said (not SIGINT's 130)."""
    renders = tmp_path / "renders"
    renders.mkdir()
    platforms = small_platforms(tmp_path / "platforms")
    watches = {signum: (log := tmp_path / f"{signum.name}.log",
                        start_watch(log, renders, tmp_path / f"exports-{signum.name}", platforms))
               for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        for log, _ in watches.values():
            wait_for(lambda log=log: "watch: watching" in log.read_text(), 60, "watching", log)
        for signum, (_, watch) in watches.items():
            watch.send_signal(signum)
        for signum, (log, watch) in watches.items():
            watch.wait(timeout=60)
            output = log.read_text()
            assert watch.returncode == 128 + signum, output
            assert output.strip().splitlines()[-1].startswith(
                f"watch: stopped by {signum.name};"), output
            assert "Traceback" not in output, output
    finally:
        for _, watch in watches.values():
            stop_watch(watch, signal.SIGKILL)


HOLD_THE_LOCK = """import sys
from exporter.pipeline.plumbing.lock import acquire
acquire(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


def hold_the_tree(exports):
    """Another run holding the exports tree: a process with its lock (the tool's own flock),
    until its standard input is closed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(exports / layout.LOCK)],
        cwd=REPO, env=doit_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_batch_refused_while_another_run_holds_the_tree_runs_once_the_tree_is_free(
        tmp_path, clip_cache):
    renders, exports = tmp_path / "renders", tmp_path / "exports"
    (renders / "women/18-23").mkdir(parents=True)
    platforms = small_platforms(tmp_path / "platforms")
    clip = clip_cache("vertical", width=360, height=640, seconds=1, fps=30, audio=True)
    log = tmp_path / "watch.log"
    watch = start_watch(log, renders, exports, platforms, "settle=1")
    holder = None
    try:
        wait_for(lambda: "watch: watching" in log.read_text(), 60, "watching", log)
        holder = hold_the_tree(exports)
        title = renders / "women/18-23/new"
        title.mkdir()
        (title / "metadata.json").write_text('{"title": "New"}', encoding="utf-8")
        shutil.copy(clip, title / "final.mp4")
        wait_for(lambda: "waits: another run holds" in log.read_text(), 60,
                 "the batch to wait for the tree", log)
        time.sleep(3)                                   # still held: nothing made meanwhile
        assert not (exports / "women/18-23/new/youtube.mp4").exists()
        holder.stdin.close()                            # the other run ends
        holder.wait(timeout=30)
        wait_for(lambda: (r := rows(exports, "new")) and len(r) == 2 and all(
            row["status"] == "exported" for row in r.values()), 60,
            "the refused batch to run once the tree is free", log)
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait()
        stop_watch(watch)
        output = log.read_text()
    assert watch.returncode == 128 + signal.SIGINT, output
    assert output.count("waits: another run holds") == 1, "one line while waiting"
    assert "Traceback" not in output, output


@pytest.mark.parametrize("how, processes", [("deleted", "1"), ("renamed", "2")])
def test_a_title_deleted_or_renamed_mid_export_fails_alone_in_one_line_with_no_record(
        tmp_path, library, how, processes):
    """The watch's batches are plain runs: a render taken away while its export runs (a
    user tidying up, a re-render moving the folder) is said to be gone, in one line, and
    leaves no error record; the other titles of the batch are made."""
    for title_id in ("a", "b", "c"):
        library.add("women", "18-23", title_id, "two-seconds")
    platforms = small_platforms(tmp_path / "platforms")
    args = library.args(f"platforms_dir={platforms}", "-n", processes)
    run = subprocess.Popen([str(DOIT), *args], cwd=REPO,
                           env=doit_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    title = library.root / "women/18-23/b"
    deadline = time.monotonic() + 120
    while not (library.exports / "women/18-23/b").exists():    # b's first export started
        assert run.poll() is None and time.monotonic() < deadline, run.stdout.read()
        time.sleep(0.01)
    if how == "deleted":
        shutil.rmtree(title)
    else:
        title.rename(title.with_name("b-renamed"))
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 2, output
    failed = [line for line in output.splitlines() if line.startswith("FAILED")]
    assert failed and all(
        line.endswith("(women/18-23/b): its render disappeared during the export (renamed or "
                      "deleted); nothing recorded, the next run sees the renders as they are")
        for line in failed), output
    assert "Traceback" not in output, output
    assert list(library.exports.rglob("*.error.json")) == [], "no record for a gone title"
    for title_id in ("a", "c"):
        for platform in ("youtube", "tiktok"):
            assert (library.exports / f"women/18-23/{title_id}/{platform}.mp4").is_file()
    # the next run sees the library as it is: nothing failed
    again = run_doit(*library.args(f"platforms_dir={platforms}"), check=0)
    registry = read_json(library.exports / "registry.json")
    assert not [r for r in registry["exports"] if r["status"] == "failed"], again.stdout
    if how == "renamed":
        assert {r["status"] for r in rows(library.exports, "b-renamed").values()} == \
            {"exported"}


def test_a_bucket_title_is_taken_once_two_listings_show_it_complete_and_unchanged():
    listing = {"w/18-23/a/final.mp4": [10, "e1"], "w/18-23/a/metadata.json": [2, "m1"],
               "w/18-23/b/final.mp4": [10, "e2"], "w/18-23/a/notes/x.txt": [1, "n"],
               "registry.json": [5, "r"]}
    titles = listed_titles(listing)
    assert titles == {"w/18-23/a": (("final.mp4", "e1"), ("metadata.json", "m1")),
                      "w/18-23/b": (("final.mp4", "e2"),)}
    # changed in the listing before, not since: a complete title is taken, b waits for its
    # metadata.json, c was removed
    assert settled_in_bucket({"w/18-23/a", "w/18-23/b", "w/18-23/c"}, set(), titles) == (
        ["w/18-23/a"], ["w/18-23/c"])
    # still changing: not yet
    assert settled_in_bucket({"w/18-23/a"}, {"w/18-23/a"}, titles) == ([], [])


def test_watch_lists_a_renders_bucket_and_exports_a_title_once_it_has_landed(
        moto, tmp_path, clip_cache):
    from test_storage import put
    prefix = f"{tmp_path.name}/renders"
    clip = clip_cache("vertical", width=360, height=640, seconds=1, fps=30, audio=True)
    metadata = tmp_path / "metadata.json"
    metadata.write_text('{"title": "Landed", "hashtags": ["test"]}')
    put(moto, prefix, "women/18-23/alpha/final.mp4", clip)
    put(moto, prefix, "women/18-23/alpha/metadata.json", metadata)
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    exports, log = tmp_path / "exports", tmp_path / "watch.log"
    env = doit_env(**aws_env(moto))
    with open(log, "w") as log_file:
        watch = subprocess.Popen(
            [str(DOIT), "watch",
             f"renders=s3://{S3_BUCKET}/{prefix}", f"exports={exports}",
             f"platforms_dir={platforms}", "poll=1"],
            cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    try:
        done = exports / "women/18-23/alpha/youtube.mp4"
        wait_for(done.exists, 90, "the catching-up batch", log)
        # a render landing file by file: taken once both files are there and held still
        put(moto, prefix, "women/18-23/beta/final.mp4", clip)
        time.sleep(3)
        assert not (exports / "women/18-23/beta").exists(), log.read_text()
        put(moto, prefix, "women/18-23/beta/metadata.json", metadata)
        beta = exports / "women/18-23/beta/youtube.mp4"
        wait_for(beta.exists, 90, "the landed title's batch", log)
        assert_conforms(beta, load_yaml(platforms / "youtube.yaml"), 1.0)
        wait_for(lambda: "(1 title: women/18-23/beta) done" in log.read_text(), 60,
                 "the batch's line", log)
    finally:
        code = stop_watch(watch)
    assert code == 130, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
