"""Crashes, interrupts, a second writer, retries and hostile input, through real doit runs."""

import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import (
    DOIT,
    REPO,
    TEST_FFMPEG,
    assert_conforms,
    doit_env,
    executable,
    executed_tasks,
    exported_videos,
    leftovers,
    load_yaml,
    read_json,
    realtime_ffmpeg,
    run_doit,
    small_platforms,
)

from exporter.media.samples import make_audio_only, make_clip
from exporter.model.history import read_events


def start_doit(*args, env=None, **popen):
    """Start `doit ARGS` in its own process group, as a terminal would run it."""
    return subprocess.Popen([str(DOIT), *map(str, args)], cwd=REPO, env=env or doit_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **popen)


def wait_for(condition, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except FileNotFoundError:
            pass    # the run removed a directory while the condition walked the tree
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def group_gone(pgid):
    """True when no process of the group is left (doit's workers may outlive doit briefly)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def temporaries(exports):
    return list(Path(exports).rglob(".*.mp4.*.tmp"))


def finished(exports):
    """{video path: (sidecar finished_at, video mtime)} of exports that completed."""
    result = {}
    for sidecar_path in Path(exports).rglob("*.export.json"):
        sidecar = read_json(sidecar_path)
        video = sidecar_path.parent / sidecar["output"]["path"]
        result[str(video)] = (sidecar["finished_at"], video.stat().st_mtime_ns)
    return result


@pytest.fixture
def batch(library, tmp_path, clip_cache):
    """(library, platforms, ffmpeg): six different 2-second titles for one platform at
    270x480, distinct bytes so that no export can share another's encode, and conftest's
    realtime ffmpeg at half rate to give as `ffmpeg=`: each encode then lasts ~4 s, its
    output's temporary there for ~3 s, long enough to interrupt mid-encode on a fraction
    of a core (six kill and interrupt tests export it)."""
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    for index in range(6):
        title = library.add("women", "18-23", f"title-{index}")
        shutil.copy(clip_cache(f"distinct-{index}", width=352 + 8 * index, height=640,
                               seconds=2, fps=30, audio=True), title / "final.mp4")
    return library, platforms, realtime_ffmpeg(tmp_path, rate=0.5)


def check_all_exported(library, platforms):
    spec = load_yaml(platforms / "youtube.yaml")
    videos = exported_videos(library.exports)
    assert len(videos) == 6
    for video in videos:
        assert_conforms(video, spec, 2.0)
    assert leftovers(library.exports) == []
    registry = read_json(library.exports / "registry.json")
    assert [row["status"] for row in registry["exports"]] == ["exported"] * 6


# An ffmpeg that runs the real one and, once the file `gate` exists, stops each encode
# (the runs given -progress) where it is (SIGSTOP) and waits: the run is held mid-encode,
# its lock taken, until it is killed. Other runs (-version, measurements) pass.
HELD_FFMPEG = """#!{python}
import os, signal, subprocess, sys, time
child = subprocess.Popen([{real!r}, *sys.argv[1:]])
while child.poll() is None:
    if "-progress" in sys.argv and os.path.exists({gate!r}):
        child.send_signal(signal.SIGSTOP)
        while True:
            time.sleep(1)
    time.sleep(0.02)
sys.exit(child.returncode)
"""


def held_ffmpeg(directory):
    """(an ffmpeg to give as REELEXPORT_FFMPEG, the gate file that holds it)."""
    gate = Path(directory, "hold")
    wrapper = executable(Path(directory, "ffmpeg-held"), HELD_FFMPEG.format(
        python=sys.executable, real=TEST_FFMPEG, gate=str(gate)))
    return wrapper, gate


@pytest.mark.faults      # kills and interrupts: the tool's process handling
def test_sigkill_mid_batch_loses_nothing_finished(batch, tmp_path):
    library, platforms, _ = batch           # held by its own ffmpeg, below
    args = library.args(f"platforms_dir={platforms}")
    ffmpeg, gate = held_ffmpeg(tmp_path)
    env = doit_env(REELEXPORT_FFMPEG=str(ffmpeg))
    run = start_doit("-n", "2", *args, env=env)
    wait_for(lambda: finished(library.exports) and temporaries(library.exports))
    gate.touch()        # the run cannot end while the checks below run beside it

    # while it runs: a second run is refused at once, read-only commands work
    second = run_doit(*args, env=env)
    assert second.returncode == 4
    assert f"{library.exports / '.lock'} is held by pid {run.pid}" in second.stderr
    assert run_doit("list", "--status", *args, env=env).returncode == 0
    for command in ("forget", "clean"):     # they would change what the run is writing
        refused = run_doit(command, *args, env=env)
        assert refused.returncode == 4 and "is held by pid" in refused.stderr, command
    assert run.poll() is None, "the run was held to the end of the checks"

    os.killpg(run.pid, signal.SIGKILL)       # power loss: doit, its workers and ffmpeg
    run.wait()
    wait_for(lambda: group_gone(run.pid), timeout=30)
    done_before = finished(library.exports)
    spec = load_yaml(platforms / "youtube.yaml")
    for video in done_before:
        assert_conforms(video, spec, 2.0)     # whatever has a target's name is complete
    assert len(done_before) < 6

    gate.unlink()
    rerun = run_doit("-n", "2", *args, env=env, check=0)   # the stale lock is taken over
    after = finished(library.exports)
    for video, stamp in done_before.items():
        assert after[video] == stamp, f"{video} was encoded again"
    assert len(after) == 6
    check_all_exported(library, platforms)
    # doit lost the finished tasks with its unsaved DB; they ran but did not encode
    assert len(executed_tasks(rerun.stdout)) == 6


@pytest.mark.faults      # kills and interrupts: the tool's process handling
def test_ctrl_c_mid_batch_then_resume(batch):
    library, platforms, ffmpeg = batch
    args = library.args(f"platforms_dir={platforms}", f"ffmpeg={ffmpeg}")
    run = start_doit("-n", "2", *args)
    wait_for(lambda: finished(library.exports) and temporaries(library.exports))
    os.killpg(run.pid, signal.SIGINT)        # what Ctrl-C in a terminal sends
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == -signal.SIGINT  # a shell shows exit 130
    assert one_interrupt_line("SIGINT", stderr)
    wait_for(lambda: group_gone(run.pid), timeout=30)
    done_before = finished(library.exports)
    assert 0 < len(done_before) < 6
    assert temporaries(library.exports) == [], "an interrupted encode left its temporary"
    assert not list(library.exports.rglob("*.error.json")), "an interrupt is not a failure"

    # doit saved its DB on SIGINT: exactly the tasks it had not recorded run again. Those it
    # recorded had written their `made` event (an action's last step); a task whose action
    # returned in its worker while the SIGINT reached doit's main process is not recorded
    # and runs again, keeping its video (nothing is re-encoded, checked below).
    completed = {e["export"] for e in read_events(library.exports)[0] if e["event"] == "made"}
    assert len(completed) <= len(done_before)
    recorded = saved_tasks(library.exports / ".doit.db")
    assert completed >= recorded
    rerun = run_doit("-n", "2", *args, check=0)
    everything = {f"youtube:title-{n}" for n in range(6)}
    assert set(executed_tasks(rerun.stdout)) == everything - recorded
    after = finished(library.exports)
    for video, stamp in done_before.items():
        assert after[video] == stamp
    check_all_exported(library, platforms)


def saved_tasks(dep_file):
    """The export tasks doit's dependency DB (sqlite) holds a record of."""
    with closing(sqlite3.connect(dep_file)) as db:
        names = {row[0] for row in db.execute("select task_id from doit")}
    return {name for name in names if name.startswith("youtube:")}


def one_interrupt_line(signal_name, stderr):
    """The whole of stderr is one line saying what was interrupted and what is kept."""
    return re.fullmatch(f"reelexport: interrupted by {signal_name}: [0-9]+ exports? finished "
                        "in this run (is|are) kept, no partial file is left; the next run "
                        "resumes the rest\n", stderr) is not None


@pytest.mark.faults      # kills and interrupts: the tool's process handling
def test_sigterm_stops_a_serial_run_with_one_line(batch):
    library, platforms, ffmpeg = batch
    args = library.args(f"platforms_dir={platforms}", f"ffmpeg={ffmpeg}")
    run = start_doit(*args)
    wait_for(lambda: temporaries(library.exports))
    os.killpg(run.pid, signal.SIGTERM)       # a scheduler stopping the job
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == -signal.SIGTERM and one_interrupt_line("SIGTERM", stderr), stderr
    wait_for(lambda: group_gone(run.pid), timeout=30)
    assert temporaries(library.exports) == []
    assert not list(library.exports.rglob("*.error.json")), "an interrupt is not a failure"


def limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))


@pytest.mark.once        # a retry and what is remembered: bookkeeping
def test_transient_failure_is_retried_then_remembered(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    library.add("women", "18-23", "alpha")
    args = library.args(f"platforms_dir={platforms}")
    env = doit_env(REELEXPORT_ATTEMPTS="2", REELEXPORT_BACKOFF_S="0.1")
    # a file-size limit, as a full disk would: ffmpeg dies of SIGXFSZ mid-write
    limited = subprocess.run([str(DOIT), *args], cwd=REPO, env=env, capture_output=True,
                             text=True, preexec_fn=limit_file_size, timeout=120)
    assert limited.returncode != 0
    assert ("FAILED youtube:alpha (women/18-23/alpha): ffmpeg was killed by signal 25 "
            "(SIGXFSZ) after 2 attempts") in limited.stderr
    error = read_json(library.exports / "women/18-23/alpha/youtube.error.json")
    assert error["attempts"] == 2 and error["transient"] is True
    assert not list(exported_videos(library.exports)) and leftovers(library.exports) == []

    # unchanged inputs: not tried again, the cause is repeated
    again = run_doit(*args)
    assert again.returncode != 0
    assert "ffmpeg was killed by signal 25 (SIGXFSZ) (unchanged since" in again.stderr
    assert not list(exported_videos(library.exports))

    # the user asks: retry=failed
    run_doit(*args, "retry=failed", check=0)
    assert_conforms(library.exports / "women/18-23/alpha/youtube.mp4",
                    load_yaml(platforms / "youtube.yaml"), 1.0)
    assert not (library.exports / "women/18-23/alpha/youtube.error.json").exists()


@pytest.mark.once        # a failure remembered: bookkeeping
def test_a_bad_source_is_tried_again_only_when_it_changes(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    bad = library.add("women", "18-23", "bad")
    good_clip = bad / "final.mp4"
    kept = tmp_path / "good.mp4"
    shutil.copy(good_clip, kept)
    good_clip.write_text("not a video")
    args = library.args(f"platforms_dir={platforms}")
    assert run_doit(*args).returncode != 0
    assert "unchanged since" in run_doit(*args).stderr
    shutil.copy(kept, good_clip)              # the fix
    fixed = run_doit(*args, check=0)
    assert executed_tasks(fixed.stdout) == ["youtube:bad"]


def test_bad_input_matrix_fails_each_alone(library, tmp_path):
    library.add("women", "18-23", "good")
    clips = tmp_path / "clips"
    cases = {
        "empty": ("final.mp4 is empty (0 bytes)", lambda p: p.write_bytes(b"")),
        "truncated": ("final.mp4 is not a readable video",
                      lambda p: p.write_bytes(p.read_bytes()[:2000])),
        "text": ("final.mp4 is not a readable video", lambda p: p.write_text("notes\n")),
        "audio-only": ("final.mp4 has no video stream (audio-only)", make_audio_only),
        "no-frames": ("final.mp4 is not a readable video", lambda p: make_empty_video(p)),
        "huge-size": ("video is 16384x16; at most 8192x8192 is accepted",
                      lambda p: make_clip(p, width=16384, height=16, seconds=0.2, fps=10,
                                          audio=False, pattern="color=c=gray")),
        "huge-fps": ("frame rate 1000.0 fps is outside 1-240 fps",
                     lambda p: make_clip(p, width=64, height=64, seconds=0.1, fps=1000,
                                         audio=False)),
        "overlong": ("duration 2.00 s exceeds the youtube limit of 1 s",
                     lambda p: make_clip(p, width=64, height=64, seconds=2, fps=30)),
        "missing": ("final.mp4 is missing", lambda p: p.unlink()),
        "hls": ("final.mp4 is not a readable video",
                lambda p: p.write_text(playlist_to(clips / "secret.ts"))),
        # concat's safe mode refuses absolute paths and '..', not a symlink beside the
        # playlist: without the demuxer allow-list this would export the outside file.
        "concat": ("final.mp4 is not a readable video", concat_through_symlink(clips)),
    }
    make_clip(clips / "secret.mp4", width=270, height=480, seconds=1)
    subprocess.run([doit_ffmpeg(), "-y", "-loglevel", "error", "-i", str(clips / "secret.mp4"),
                    "-c", "copy", "-f", "mpegts", str(clips / "secret.ts")], check=True)
    for title, (_, make) in cases.items():
        make(library.add("men", "18-23", title) / "final.mp4")
    meta_cases = {
        "no-metadata": ("metadata.json is missing", lambda p: p.unlink()),
        "bad-metadata": ("metadata.json: title: 7 is not of type 'string'",
                         lambda p: p.write_text('{"title": 7}')),
        "latin1-metadata": ("metadata.json: not UTF-8 (byte 14)",
                            lambda p: p.write_bytes(b'{"title": "caf\xe9"}')),
    }
    for title, (_, make) in meta_cases.items():
        make(library.add("men", "24-30", title) / "metadata.json")
    overlong_platforms = small_platforms(tmp_path / "platforms", names=("youtube",),
                                         youtube={"limits.max_duration_s": 1})

    result = run_doit("-n", "2", *library.args(f"platforms_dir={overlong_platforms}"))
    assert result.returncode != 0
    failures = [line for line in result.stderr.splitlines() if line.startswith("FAILED ")]
    for title, (cause, _) in {**cases, **meta_cases}.items():
        lines = [f for f in failures if f.startswith(f"FAILED youtube:{title} ")]
        assert len(lines) == 1 and cause in lines[0], (title, lines, failures)
    assert len(failures) == len(cases) + len(meta_cases)
    assert sorted(p.parent.name for p in exported_videos(library.exports)) == ["good"]
    assert leftovers(library.exports) == []


def make_empty_video(path):
    """A Matroska file with a video track header and not one frame."""
    subprocess.run([doit_ffmpeg(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=s=64x64:d=1", "-frames:v", "0", "-c:v", "libx264",
                    "-f", "matroska", str(path)], check=True)


def concat_through_symlink(clips):
    def make(path):
        (path.parent / "peek.mp4").symlink_to(clips / "secret.mp4")
        path.write_text("ffconcat version 1.0\nfile 'peek.mp4'\n")
    return make


def playlist_to(segment):
    return ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"
            f"#EXTINF:1.0,\n{segment}\n#EXT-X-ENDLIST\n")


def doit_ffmpeg():
    return TEST_FFMPEG


@pytest.mark.once        # the library's names: refused before ffmpeg
def test_bad_directories_are_refused_alone(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    library.add("women", "18-23", "good")
    library.add("women", "18-23", "my story")
    library.add("women", "18-23", "bell\x07")
    library.add("women", "18-23", "a..b")
    library.add("women", "18-23", "twin")
    library.add("men", "18-23", "twin")
    outside = tmp_path / "outside"
    outside.mkdir()
    (library.root / "women/18-23/escape").symlink_to(outside)
    result = run_doit(*library.args(f"platforms_dir={platforms}"))
    assert result.returncode != 0
    problems = [line for line in result.stderr.splitlines() if "library: " in line]
    assert len(problems) == 5, result.stderr
    expected = ["'my story': invalid directory name", "'bell\\x07': invalid directory name",
                "'a..b': invalid directory name", "escape: symlink points outside",
                "duplicate title id 'twin'"]
    for fragment in expected:
        assert any(fragment in line for line in problems), (fragment, problems)
    assert [p.parent.name for p in exported_videos(library.exports)] == ["good"]


@pytest.mark.once        # doit's DB: bookkeeping
def test_an_unreadable_dep_db_is_rebuilt_from_sidecars(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    library.add("women", "18-23", "alpha")
    args = library.args(f"platforms_dir={platforms}")
    run_doit(*args, check=0)
    before = finished(library.exports)
    (library.exports / ".doit.db").write_bytes(b"this is not a database" * 100)
    rerun = run_doit(*args, check=0)
    assert "cannot be read" in rerun.stderr and "rebuilding state from the sidecars" in rerun.stderr
    assert finished(library.exports) == before
    assert list(library.exports.glob(".doit.db.unreadable-*"))
