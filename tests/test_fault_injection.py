"""Fault injection: kill -9 at 8 seeded random moments across serial and `doit -n 2` runs,
then a plain `doit`, which must finish without help and leave a consistent tree. The rounds
are two tests of 4, each on a library of its own, so the suite's two workers run them side
by side. The kinds of work and of kill are taken in turn, not drawn, so that 8 rounds (12
cost CI three minutes) still show each of them; the moments of the kills are drawn.

Each round first gives the run work to do (an encode setting edited, which redoes every
export; at times an export, the registry or the gallery deleted too), then starts `doit`, kills it (the whole
process group, as a power loss does, or the main process alone, as `kill -9 $!` does) at a
moment drawn from the length of a full run, so kills land during encodes, shared-cache
publishes, covers, and the registry and gallery writes at the end. After each recovery run:
every export video matches its sidecar's sha256 and probes as video, no temporary or
partial file is left, the lock is free, and `registry.json` agrees with `doit status`.
Every fourth round gives work no timestamp shows instead (issue 20): a render redelivered
with its old mtime (the same size or not) or an export edited in place; after the recovery
every export's bytes are its sidecar's and its sidecar's source is today's render.

Run with the bundled ffmpeg only (the faults are the tool's, not ffmpeg's): the Debian
pass of .ci/run deselects it with `-m "not faults"`. The figures it prints are in
docs/reliability.md (`pytest -m faults -s`).
"""

import hashlib
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import av
import pytest
import yaml
from conftest import exported_videos, leftovers, read_json, run_doit, small_platforms
from test_reliability import group_gone, start_doit, wait_for

from exporter.report.status import lock_holder

pytestmark = pytest.mark.faults

ROUNDS = 8
HALVES = 2              # tests the rounds are split into
SEED = 20261125
TITLES = ("alpha", "beta")


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_consistent(library, args):
    """The invariants after a recovery run; returns the number of export videos."""
    exports = library.exports
    videos = exported_videos(exports)
    for video in videos:
        sidecar = read_json(video.with_name(video.name.replace(".mp4", ".export.json")))
        assert sha256(video) == sidecar["output"]["sha256"], video
        source = library.root / sidecar["segment"] / sidecar["age"] / sidecar["title_id"]
        assert sha256(source / "final.mp4") == sidecar["inputs"]["source_sha256"], video
        with av.open(str(video)) as container:
            assert container.streams.video and container.duration
    assert leftovers(exports) == []
    assert lock_holder(exports / ".lock") is None
    registry = read_json(exports / "registry.json")
    status = json.loads(run_doit("status", "--json", *args, check=0).stdout)
    assert status["total"] == registry["totals"]["all"]
    assert status["total"]["exported"] == len(TITLES) * 2 == len(videos)
    return len(videos)


def processes_of(exports):
    """Pids of live processes whose command line names this exports root (a run's doit,
    its workers, their ffmpeg)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(exports).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def made_this_round(exports, gop):
    """{video: mtime} of the exports a killed run finished (sidecar at this round's GOP)."""
    made = {}
    for video in exported_videos(exports):
        sidecar = read_json(video.with_name(video.name.replace(".mp4", ".export.json")))
        if sidecar and sidecar["encode"]["settings"]["video"]["gop"] == gop:
            made[video] = video.stat().st_mtime_ns
    return made


def redeliver_keeping_mtime(rng, library, source):
    """New bytes over a title's final.mp4, its mtime put back (`cp -p`, `rsync -a`): another
    title's render (another size) or a twin of its own (the same size, one header field
    differing)."""
    target = library.root / "women/18-23" / rng.choice(TITLES) / "final.mp4"
    before = target.stat()
    data = bytearray(target.read_bytes())
    if rng.random() < 0.5:
        data = bytearray(source.read_bytes())
    else:
        at = data.index(b"mvhd") + 8            # the movie's creation time: valid either way
        data[at:at + 4] = (int.from_bytes(data[at:at + 4], "big") + 1).to_bytes(4, "big")
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))


def edit_export_in_place(rng, library):
    """`dd conv=notrunc` into one export video, its mtime put back."""
    target = library.exports / "women/18-23" / rng.choice(TITLES) / rng.choice(
        ("youtube.mp4", "tiktok.mp4"))
    if target.exists():
        before = target.stat()
        with open(target, "r+b") as handle:
            handle.seek(before.st_size // 2)
            handle.write(b"\xff" * 64)
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))


def give_work(rng, library, platforms, round_number, clips):
    """Work for the next run. Most rounds, as long as a full run's: an encode setting (the
    GOP) edited in both platform files redoes every export, and in turn nothing else, an
    export deleted, or the registry and the gallery deleted (each twice in 8 rounds, not
    left to the draw). Every fourth round, only what a timestamp does not show: an export
    edited in place (round 3), a render redelivered with its old mtime (round 7)."""
    if round_number % 4 == 3:
        if round_number % 8 == 3:
            edit_export_in_place(rng, library)
        else:
            redeliver_keeping_mtime(rng, library, rng.choice(clips))
        return
    for name in ("youtube", "tiktok"):
        path = platforms / f"{name}.yaml"
        document = yaml.safe_load(path.read_text())
        document["video"]["gop"] = 30 + round_number
        path.write_text(yaml.safe_dump(document))
    extra = ("none", "delete export", "delete registry and gallery")[round_number % 3]
    if extra == "delete export":
        (library.exports / "women/18-23" / rng.choice(TITLES) / "tiktok.mp4").unlink(
            missing_ok=True)
    elif extra != "none":
        (library.exports / "registry.json").unlink(missing_ok=True)
        (library.exports / "index.html").unlink(missing_ok=True)


@pytest.mark.parametrize("half", range(HALVES))
def test_kill_9_at_random_moments_then_a_plain_run_recovers(library, tmp_path, clip_cache,
                                                            half):
    platforms = small_platforms(tmp_path / "platforms")
    clips = [clip_cache(f"fault-{index}", width=320 + 16 * index, height=576, seconds=1,
                        fps=30, audio=True) for index in range(4)]
    for index, title in enumerate(TITLES):
        library.add("women", "18-23", title)
        shutil.copy(clips[index], library.root / "women/18-23" / title / "final.mp4")
    args = library.args(f"platforms_dir={platforms}")
    started = time.monotonic()
    run_doit(*args, check=0)
    full_run_s = time.monotonic() - started

    rng = random.Random(SEED + half)
    figures = {"kills": 0, "killed_runs_finished": 0, "recovery_tasks": 0,
               "made_before_kill": 0, "redone_after_kill": 0, "max_recovery_s": 0.0}
    per_half = ROUNDS // HALVES
    for round_number in range(half * per_half, (half + 1) * per_half):
        give_work(rng, library, platforms, round_number, clips)
        parallel = round_number % 2 == 1
        # the main process alone in one round of each test (round 1: a parallel run, round
        # 6: a serial one), the whole group in the others: 3 rounds of 4
        whole_group = round_number not in (1, 6)
        moment = rng.uniform(0.1, full_run_s * 1.1)
        run = start_doit(*(["-n", "2"] if parallel else []), *args)
        time.sleep(moment)
        if whole_group:
            os.killpg(run.pid, signal.SIGKILL)
        else:
            os.kill(run.pid, signal.SIGKILL)
        # its output ends when every process of the run has: a worker outliving it (kept
        # alive, holding the pipe) fails here instead of hanging the suite
        run.communicate(timeout=60)
        figures["kills"] += 1
        figures["killed_runs_finished"] += run.returncode == 0
        # the run's workers die with it (SIGTERM), finishing a publish first; one that
        # appends its history event after the recovery read the history would (rightly)
        # cost the next run its fast path
        wait_for(lambda: group_gone(run.pid), timeout=30)

        made = made_this_round(library.exports, 30 + round_number)
        figures["made_before_kill"] += len(made)
        started = time.monotonic()
        recovery = run_doit(*args)
        elapsed = time.monotonic() - started
        assert recovery.returncode == 0, (round_number, recovery.stdout, recovery.stderr)
        figures["recovery_tasks"] += sum(line.startswith(".  ")
                                         for line in recovery.stdout.splitlines())
        assert "up to date: nothing changed" in run_doit(*args, check=0).stdout
        figures["redone_after_kill"] += sum(
            video.stat().st_mtime_ns != mtime for video, mtime in made.items())
        figures["max_recovery_s"] = max(figures["max_recovery_s"], round(elapsed, 2))
        check_consistent(library, args)
        wait_for(lambda: not processes_of(library.exports), timeout=30)   # nothing outlives it
    print(f"\nfault injection: full run {full_run_s:.1f} s; {json.dumps(figures)}")
