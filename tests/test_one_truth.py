"""One truth across machines (exports in a bucket): no upload record lost, one coordinator.

Machines are state directories (REELEXPORT_STATE_DIR) sharing one prefix of moto's S3
server; the history they merge is read back from the server with boto3, not from the tool.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    DOIT,
    REPO,
    S3_BUCKET,
    TEST_FFMPEG,
    aws_env,
    doit_env,
    executable,
    executed_tasks,
    run_doit,
    small_platforms,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_storage import bucket, objects, put

from exporter.model.history import append_events, event, event_key, parse_events
from exporter.storage.exports import sync_history

pytestmark = pytest.mark.once


def bucket_events(moto, prefix):
    data = objects(moto, prefix).get("history.jsonl", b"")
    return parse_events(data, Path("history.jsonl"))


@pytest.fixture
def machines(moto, library, tmp_path, request):
    """One library exported to YouTube into one prefix by machines A and U (two state
    directories: two hosts, or a host whose state directory was lost)."""
    library.add("women", "18-23", "alpha")
    prefix = f"{request.node.name}/exports"
    platforms = small_platforms(tmp_path / "platforms")
    args = [f"renders={library.root}", f"exports=s3://{S3_BUCKET}/{prefix}",
            f"platforms_dir={platforms}", "platforms=youtube"]

    def machine(name):
        state = tmp_path / f"state-{name}"
        return doit_env(REELEXPORT_STATE_DIR=str(state), **aws_env(moto)), \
            state / S3_BUCKET / prefix

    class Setup:
        pass
    Setup.args, Setup.prefix, Setup.library = args, prefix, library
    (Setup.a, Setup.a_local), (Setup.u, Setup.u_local) = machine("a"), machine("u")
    return Setup


def test_an_upload_recorded_on_one_machine_survives_the_other_machines_runs(moto, machines):
    run_doit(*machines.args, env=machines.a, check=0)
    run_doit(*machines.args, env=machines.u, check=0)      # U: kept from the bucket
    told = run_doit("uploaded", "youtube:alpha", "--id", "U1", *machines.args,
                    env=machines.u, check=0)
    assert told.stdout.startswith("recorded: youtube:alpha uploaded as U1"), told.stdout
    uploads = [e for e in bucket_events(moto, machines.prefix) if e["event"] == "uploaded"]
    assert [e["id"] for e in uploads] == ["U1"], "published before `doit uploaded` exits 0"

    # both machines run again after an edit; A last, with its older history
    (machines.library.root / "women/18-23/alpha/metadata.json").write_text(
        json.dumps({"title": "Alpha, edited"}), encoding="utf-8")
    run_doit(*machines.args, env=machines.u, check=0)
    rerun = run_doit(*machines.args, env=machines.a, check=0)
    assert executed_tasks(rerun.stdout) == ["youtube:alpha"]
    events = bucket_events(moto, machines.prefix)
    assert [e["id"] for e in events if e["event"] == "uploaded"] == ["U1"]
    assert len({event_key(e) for e in events}) == len(events), "no event twice"
    assert sum(e["event"] == "made" for e in events) == 4      # two runs on each machine
    # A's queue knows of U's upload: the export is no longer READY on either machine
    for env in (machines.a, machines.u):
        queue = run_doit("uploads", *machines.args, env=env).stdout
        assert "READY youtube:alpha" not in queue, queue

    # the upload stage retrying the same post records it once
    again = run_doit("uploaded", "youtube:alpha", "--id", "U1", "--sha256",
                     uploads[0]["sha256"], "--earlier-version", *machines.args,
                     env=machines.u, check=0)
    assert again.stdout.startswith("already recorded: youtube:alpha uploaded as U1")
    assert [e["id"] for e in bucket_events(moto, machines.prefix)
            if e["event"] == "uploaded"] == ["U1"]


def test_an_upload_of_a_copy_made_stale_on_another_machine_is_not_current(moto, machines):
    """U uploads its copy after A made a newer one: the merged history says so, and the
    event, the warning and A's queue (its build merges the bucket's history) agree that the
    upload is outdated."""
    (machines.library.root / "women/18-23/alpha/metadata.json").write_text(json.dumps(
        {"title": "Alpha", "made_for_kids": False, "ai_generated": False}), encoding="utf-8")
    run_doit(*machines.args, env=machines.a, check=0)
    run_doit(*machines.args, env=machines.u, check=0)
    # A makes a new version after a spec edit; U uploads the copy it had
    platforms = Path(machines.args[2].split("=", 1)[1])
    spec = platforms / "youtube.yaml"
    before = spec.read_text()
    spec.write_text(before.replace("bitrate: 128000", "bitrate: 96000"), encoding="utf-8")
    assert executed_tasks(run_doit(*machines.args, env=machines.a, check=0).stdout)
    told = run_doit("uploaded", "youtube:alpha", "--id", "U9", *machines.args,
                    env=machines.u, check=0)
    assert "a newer version (sha256 " in told.stderr, told.stderr
    uploads = [e for e in bucket_events(moto, machines.prefix) if e["event"] == "uploaded"]
    assert [(e["id"], e["current"]) for e in uploads] == [("U9", False)]
    # on A, the newer version was never posted: READY, as an outdated upload
    queue = json.loads(run_doit("uploads", "--json", *machines.args, env=machines.a).stdout)
    assert [item["export"] for item in queue["ready"]] == ["youtube:alpha"], queue["held"]
    assert queue["ready"][0]["replaces"]["id"] == "U9", queue["ready"]


def test_uploaded_exits_0_once_recorded_whatever_the_views(moto, machines):
    """Exit status is the contract: 0 if and only if the upload is recorded and published;
    a registry, gallery or lock that cannot be written afterwards is a warning line."""
    run_doit(*machines.args, env=machines.a, check=0)
    (machines.a_local / "index.html").unlink()
    (machines.a_local / "index.html").mkdir()
    (machines.a_local / ".lock").unlink(missing_ok=True)
    (machines.a_local / ".lock").mkdir()
    told = run_doit("uploaded", "youtube:alpha", "--id", "P1", *machines.args,
                    env=machines.a, check=0)
    assert "recorded: youtube:alpha uploaded as P1" in told.stdout
    assert "Traceback" not in told.stderr
    assert "warning: registry not refreshed" in told.stderr, told.stderr
    assert [e["id"] for e in bucket_events(moto, machines.prefix)
            if e["event"] == "uploaded"] == ["P1"]

    # the bucket unreachable: not a success, and told again later it is recorded once
    unreachable = {**machines.a, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    refused = run_doit("uploaded", "youtube:alpha", "--id", "P2", *machines.args,
                       env=unreachable)
    assert refused.returncode == 3
    assert refused.stderr.startswith("reelexport: upload not recorded: the exports' history "
                                     "cannot be read:"), refused.stderr


def test_a_history_that_cannot_be_appended_to_leaves_no_error_record(moto, machines):
    """A failure to append the history is the run's, not the export's: no error record on a
    valid export, and the next run records it."""
    run_doit(*machines.args, env=machines.a, check=0)
    (machines.library.root / "women/18-23/alpha/metadata.json").write_text(
        json.dumps({"title": "Alpha, again"}), encoding="utf-8")
    history = machines.a_local / "history.jsonl"
    # immutable: not even root appends to it (a read-only mode does not stop root)
    if subprocess.run(["chattr", "+i", str(history)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        failed = run_doit(*machines.args, env=machines.a)
    finally:
        subprocess.run(["chattr", "-i", str(history)], check=True)
    assert failed.returncode != 0
    assert "made, but not recorded" in failed.stderr, failed.stderr
    assert not (machines.a_local / "women/18-23/alpha/youtube.error.json").exists()
    again = run_doit(*machines.args, env=machines.a, check=0)
    assert executed_tasks(again.stdout) == ["youtube:alpha"]


# ---- the history's merge, tried over interleavings ------------------------------------


def machine_trees(root, count):
    return [root / f"machine-{n}" for n in range(count)]


def sync_in_a_child(url, tree, env):
    """A machine merging its history in a process of its own (so it can be killed)."""
    code = ("import sys; from pathlib import Path; "
            "from exporter.storage.exports import sync_history; "
            "sync_history(sys.argv[1], Path(sys.argv[2]))")
    return subprocess.Popen([sys.executable, "-c", code, url, str(tree)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


STEPS = st.lists(st.one_of(
    st.tuples(st.just("record"), st.integers(0, 2)),
    st.tuples(st.just("sync together"), st.sets(st.integers(0, 2), min_size=1)),
    st.tuples(st.just("killed syncing"), st.integers(0, 2), st.floats(0.0, 0.4))),
    min_size=1, max_size=8)


def local_keys(tree):
    path = tree / "history.jsonl"
    return [event_key(e) for e in parse_events(path.read_bytes() if path.exists() else b"",
                                               path)]


# Each kind of interleaving written out, so that every run tries it (an example costs
# seconds: its merges are processes), and a drawn one each run on top: three machines merging
# side by side, each holding events the others lack, and a pair of them; a machine with
# nothing new merging beside one with events; a merge killed at once (0 s: before it can
# write), at 0.1 and 0.2 s (its import takes about 0.15 s, then it merges) and at 0.4 s,
# the killed machine then merging again alone, racing another, or never.
@settings(max_examples=1, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
@example(steps=[("record", 0), ("record", 1), ("record", 2), ("sync together", {0, 1, 2}),
                ("record", 0), ("record", 1), ("sync together", {0, 1})])
@example(steps=[("record", 0), ("killed syncing", 0, 0.0), ("record", 1),
                ("sync together", {0, 1})])
@example(steps=[("record", 0), ("record", 1), ("sync together", {0}),
                ("killed syncing", 1, 0.2), ("record", 2), ("sync together", {1, 2}),
                ("killed syncing", 2, 0.4), ("sync together", {0, 1, 2})])
@example(steps=[("record", 2), ("sync together", {2}), ("record", 0),
                ("sync together", {0, 2}), ("record", 1), ("killed syncing", 1, 0.1)])
def test_no_interleaving_of_records_merges_and_kills_loses_an_event(moto, tmp_path_factory,
                                                                   monkeypatch, steps):
    """The bucket's history only grows: after machines merge side by side (real processes
    racing), it holds every event each of them held before; a merge killed mid-way loses
    nothing either. At the end every machine and the bucket hold every event, once."""
    for name, value in aws_env(moto).items():      # the helper this process starts
        monkeypatch.setenv(name, value)
    root = tmp_path_factory.mktemp("truth")
    url = f"s3://{S3_BUCKET}/{root.name}"
    env = doit_env(**aws_env(moto))
    trees = machine_trees(root, 3)
    for tree in trees:
        tree.mkdir()
    recorded, in_bucket = [], set()
    for step in steps:
        if step[0] == "record":
            item = event("uploaded", "youtube:alpha", id=f"post-{len(recorded)}")
            append_events(trees[step[1]], [item])
            recorded.append(item["event_id"])
            continue
        if step[0] == "sync together":
            held = set().union(*(local_keys(trees[n]) for n in step[1]))
            for child in [sync_in_a_child(url, trees[n], env) for n in sorted(step[1])]:
                assert child.wait(timeout=60) == 0
        else:
            held = set()
            child = sync_in_a_child(url, trees[step[1]], env)
            time.sleep(step[2])
            child.kill()
            child.wait(timeout=60)
        now = {event_key(e) for e in bucket_events(moto, root.name)}
        assert in_bucket | held <= now, "an event the bucket held, or was given, is gone"
        in_bucket = now
    # every machine merges once more, one after the other: the bucket then holds the union;
    # a second round brings it to the machines that merged before the last one did
    for tree in trees + trees:
        sync_history(url, tree)
    final = [event_key(e) for e in bucket_events(moto, root.name)]
    assert sorted(final) == sorted(set(final)), "no event twice"
    assert set(recorded) <= set(final), "every recorded event is in the bucket"
    for tree in trees:
        local = local_keys(tree)
        assert sorted(local) == sorted(set(local)) and set(local) == set(final)


# ---- one coordinator ------------------------------------------------------------------


SLOW_FFMPEG = """#!/bin/sh
case "$*" in *libx264*) sleep {seconds};; esac
exec {real} "$@"
"""


def test_a_coordinator_in_another_pid_namespace_is_never_taken_over(moto, machines, tmp_path):
    """Containers on host networking, cloned VMs: the same hostname, another PID namespace.
    Its lease is alive (renewed) and its process is not this machine's to judge: refused
    with exit 4, and only it publishes."""
    if subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                      capture_output=True).returncode != 0:
        pytest.skip("unshare --pid is not allowed here")
    slow = executable(tmp_path / "ffmpeg-slow",   # 15 s outlasts a busy start
                      SLOW_FFMPEG.format(seconds=15, real=TEST_FFMPEG))
    first = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", str(DOIT), *machines.args],
        cwd=REPO, env={**machines.a, "REELEXPORT_FFMPEG": str(slow)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while ".reelexport/lease.json" not in objects(moto, machines.prefix):
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.2)
    second = run_doit(*machines.args, env=machines.u)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 4, second.stderr
    assert second.stderr.startswith(f"reelexport: refused: s3://{S3_BUCKET}/{machines.prefix}: "
                                    "another run is exporting into it (run "), second.stderr
    assert executed_tasks(second.stdout) == []
    made = [e for e in bucket_events(moto, machines.prefix) if e["event"] == "made"]
    assert len(made) == 1


def test_a_lease_of_a_process_gone_from_this_machine_is_taken_at_once(moto, machines,
                                                                        tmp_path):
    """kill -9 of a run, then a rerun at once: its lease names a process this very machine
    shows gone (a zombie counts), so it is taken over; a lease from another boot is not."""
    from exporter.storage.lease import this_process
    here = this_process()
    killed = subprocess.Popen(["sleep", "30"])
    killed.kill()                               # a zombie until reaped
    lease = tmp_path / "lease.json"
    lease.write_text(json.dumps({**here, "run_id": "r-killed", "pid": killed.pid,
                                 "pid_start": here["pid_start"], "taken_at": time.time(),
                                 "renewed_at": time.time()}))
    put(moto, machines.prefix, ".reelexport/lease.json", lease)
    run_doit(*machines.args, env=machines.a, check=0)
    killed.wait()

    lease.write_text(json.dumps({**here, "boot_id": "another-boot", "run_id": "r-elsewhere",
                                 "pid": 999999, "taken_at": time.time(),
                                 "renewed_at": time.time()}))
    put(moto, machines.prefix, ".reelexport/lease.json", lease)
    (machines.library.root / "women/18-23/alpha/metadata.json").write_text(
        json.dumps({"title": "Alpha, edited"}), encoding="utf-8")   # not a no-op: it writes
    refused = run_doit(*machines.args, env=machines.a)
    assert refused.returncode == 4, refused.stderr
    assert "(run r-elsewhere, host " in refused.stderr
    bucket(moto).delete_object(Bucket=S3_BUCKET, Key=f"{machines.prefix}/.reelexport/lease.json")


def test_a_run_that_lost_its_lease_publishes_nothing(moto, machines, tmp_path, monkeypatch):
    """Fenced: every object a run puts is conditional on its lease still naming it."""
    for name, value in aws_env(moto).items():      # the helper this process starts
        monkeypatch.setenv(name, value)
    from exporter.storage.exports import ExportsBucket
    from exporter.storage.lease import LEASE_KEY
    lease = tmp_path / "lease.json"
    lease.write_text(json.dumps({"run_id": "someone-else"}))
    put(moto, machines.prefix, LEASE_KEY, lease)
    store = ExportsBucket(f"s3://{S3_BUCKET}/{machines.prefix}", tmp_path, run_id="mine")
    (tmp_path / "a.txt").write_text("bytes")
    from exporter.model.locations import ObjectStoreError
    with pytest.raises(ObjectStoreError, match="this run no longer holds the lease .*names "
                                               "run someone-else"):
        store.publish("women/18-23/alpha", tmp_path, ["a.txt"])
    assert "women/18-23/alpha/a.txt" not in objects(moto, machines.prefix)
    lease.write_text(json.dumps({"run_id": "mine"}))
    put(moto, machines.prefix, LEASE_KEY, lease)
    assert store.publish("women/18-23/alpha", tmp_path, ["a.txt"])["a.txt"][0] == 5
