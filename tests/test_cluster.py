"""Cluster mode on a real Dask cluster: a `dask scheduler` and two `dask worker` processes
on localhost (free ports, their own working directories), driven through `doit` as a user
runs it; every output checked with the independent probe."""

import json
import os
import signal
import socket
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
    executed_tasks,
    exported_videos,
    leftovers,
    load_yaml,
    read_json,
    realtime_ffmpeg,
    run_doit,
    small_platforms,
)
from test_cluster_security import make_certificates
from test_storage import fetches, log_mark, objects, put, requests_since

from exporter.pipeline.placement.cluster import storage_problem
from exporter.storage.exports import ExportsBucket, ExportsDirectory
from exporter.storage.renders import RendersBucket, RendersDirectory

pytest.importorskip("distributed")
# Process handling on a real cluster, not ffmpeg: run once, with the bundled ffmpeg.
pytestmark = pytest.mark.cluster
DASK = Path(sys.executable).parent / "dask"


def realtime_env(directory):
    """doit's environment with conftest's realtime ffmpeg: an encode lasts its clip's time."""
    return doit_env(REELEXPORT_FFMPEG=str(realtime_ffmpeg(directory)))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Cluster:
    """A scheduler and named workers, each its own process group, stopped at the end.
    With `certificates` (make_certificates): over tls://, every party with its own."""

    def __init__(self, root, certificates=None, env=None):
        self.root, self.port = Path(root), free_port()
        self.certificates = certificates
        self.env = env or doit_env()
        self.address = f"{'tls' if certificates else 'tcp'}://127.0.0.1:{self.port}"
        self.processes = {}

    def tls(self, role):
        """The `dask scheduler` / `dask worker` options of `role`'s certificate."""
        if not self.certificates:
            return []
        cert, key = self.certificates[role]
        return ["--tls-ca-file", str(self.certificates["ca"]), "--tls-cert", str(cert),
                "--tls-key", str(key)]

    def start(self, name, *argv):
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        log = open(directory / "log.txt", "w")
        self.processes[name] = subprocess.Popen(
            [str(DASK), *argv], cwd=directory, env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def start_scheduler(self):
        self.start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                   "--dashboard-address", f"127.0.0.1:{free_port()}", *self.tls("scheduler"))
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", self.port)) == 0, 60,
                 "the scheduler")

    def start_worker(self, name):
        self.start(name, "worker", self.address, "--nworkers", "1", "--nthreads", "1",
                   "--name", name, "--local-directory", str(self.root / name),
                   "--no-dashboard", *self.tls("worker"))

    def workers(self):
        """{name: address} of the workers the scheduler knows."""
        code = ("import json, sys; from distributed import Client, Security; "
                "s = Security(tls_ca_file=sys.argv[2], tls_client_cert=sys.argv[3], "
                "tls_client_key=sys.argv[4], require_encryption=True) "
                "if len(sys.argv) > 2 else None; "
                "c = Client(sys.argv[1], timeout='5s', security=s); "
                "print(json.dumps({w['name']: a for a, w in "
                "c.scheduler_info()['workers'].items()})); c.close()")
        tls = ([str(self.certificates["ca"]), *map(str, self.certificates["client"])]
               if self.certificates else [])
        result = subprocess.run([sys.executable, "-c", code, self.address, *tls],
                                capture_output=True, text=True)
        return json.loads(result.stdout) if result.returncode == 0 else {}

    def kill(self, name):
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self):
        for name in list(self.processes):
            self.kill(name)


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path / "cluster")
    try:
        cluster.start_scheduler()
        cluster.start_worker("w1")
        cluster.start_worker("w2")
        wait_for(lambda: len(cluster.workers()) == 2, 90, "two workers")
        yield cluster
    finally:
        cluster.stop()


def test_a_tls_cluster_exports_and_a_client_without_its_certificate_is_refused(
        library, tmp_path):
    certificates = make_certificates(tmp_path / "certificates")
    cluster = Cluster(tmp_path / "cluster", certificates)
    try:
        cluster.start_scheduler()
        cluster.start_worker("w1")
        wait_for(lambda: len(cluster.workers()) == 1, 90, "a TLS worker")
        platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
        library.add("women", "18-23", "alpha")
        args = library.args(f"platforms_dir={platforms}")

        def refused(*extra):
            """The one line of a run refused before anything ran."""
            run = run_doit(*args, *extra, check=3)
            assert "Traceback" not in run.stderr, run.stderr
            lines = run.stderr.strip().splitlines()
            assert len(lines) == 1, run.stderr
            return lines[0]

        # no certificates: refused before connecting
        assert refused(f"cluster={cluster.address}") == (
            f"reelexport: refused: cluster: {cluster.address} needs the cluster's "
            "certificates: tls_ca=, tls_cert= and tls_key= (or REELEXPORT_TLS_CA, "
            "REELEXPORT_TLS_CERT, REELEXPORT_TLS_KEY; docs/cluster.md)")
        # a certificate the cluster's CA did not sign: the scheduler refuses the client
        rogue_cert, rogue_key = make_certificates(tmp_path / "rogue", ("client",))["client"]
        line = refused(f"cluster={cluster.address}", f"tls_ca={certificates['ca']}",
                       f"tls_cert={rogue_cert}", f"tls_key={rogue_key}")
        assert line.startswith(f"reelexport: refused: cluster: the scheduler at "
                               f"{cluster.address} ") and "refused this client" in line, line
        # plain tcp to the TLS port (loopback, so not refused by the policy): no handshake
        plain = cluster.address.replace("tls://", "tcp://")
        assert refused(f"cluster={plain}").startswith(
            f"reelexport: refused: cluster: the scheduler at {plain} cannot be reached")
        assert not library.exports.exists() or exported_videos(library.exports) == []

        cert, key = certificates["client"]
        run = run_doit(*args, f"cluster={cluster.address}", f"tls_ca={certificates['ca']}",
                       f"tls_cert={cert}", f"tls_key={key}", check=0)
        assert f"cluster: {cluster.address}, 1 worker, dashboard http" in run.stderr
        out = library.exports / "women/18-23/alpha"
        assert_conforms(out / "youtube.mp4", load_yaml(platforms / "youtube.yaml"), 1.0)
        assert read_json(out / "youtube.export.json")["encode"]["worker"].startswith(
            "tls://127.0.0.1:")
        assert leftovers(library.exports) == []
    finally:
        cluster.stop()


def problem_of(renders, exports):
    """storage_problem on the stores renders= and exports= name (a path or an s3:// URL):
    the problem's line, or None."""
    found = storage_problem(
        RendersBucket(renders, Path("/unused")) if renders.startswith("s3://")
        else RendersDirectory(Path(renders)),
        ExportsBucket(exports, Path("/unused")) if exports.startswith("s3://")
        else ExportsDirectory(Path(exports)))
    return found and found[0]


def test_a_worker_that_cannot_see_the_storage_is_named(tmp_path):
    assert problem_of(str(tmp_path), str(tmp_path / "exports")) is None
    problem, need = storage_problem(RendersDirectory(tmp_path / "absent"),
                                    ExportsDirectory(tmp_path / "exports"))
    assert "cannot read the renders root" in problem
    assert need == "the same renders and exports paths (a shared mount)"
    (tmp_path / "file").write_text("")
    assert "cannot write the exports root" in problem_of(str(tmp_path),
                                                         str(tmp_path / "file" / "x"))


def test_the_library_exports_through_two_workers_and_survives_losing_one(
        library, tmp_path, cluster, clip_cache):
    platforms = small_platforms(tmp_path / "platforms")
    titles = ["alpha", "beta", "gamma"]
    for title in titles:
        library.add("women", "18-23", title, shape="two-seconds")
    # a relative path, as a user types it: the workers run in other directories
    args = library.args(f"platforms_dir={os.path.relpath(platforms, REPO)}",
                        f"cluster={cluster.address}")
    run = run_doit("-n", "2", *args, check=0)
    assert f"cluster: {cluster.address}, 2 workers, dashboard http" in run.stderr
    workers = set()
    for title in titles:
        for platform in ("youtube", "tiktok"):
            out = library.exports / "women/18-23" / title
            assert_conforms(out / f"{platform}.mp4", load_yaml(platforms / f"{platform}.yaml"),
                            2.0)
            workers.add(read_json(out / f"{platform}.export.json")["encode"]["worker"])
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    assert leftovers(library.exports) == []

    # a worker killed mid-encode: its work is resubmitted, the batch completes (two titles:
    # an encode on each worker)
    slow = clip_cache("four-seconds", width=360, height=640, seconds=4, fps=30, audio=True)
    titles = titles[:2]
    for title in titles:
        (library.root / "women/18-23" / title / "final.mp4").write_bytes(slow.read_bytes())
    running = subprocess.Popen([str(DOIT), "-n", "2", *args],
                               cwd=REPO, env=realtime_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    names = {address: name for name, address in cluster.workers().items()}
    wait_for(lambda: encoding_on(library.exports) & set(names), 120, "an encode on a worker")
    doomed = sorted(encoding_on(library.exports) & set(names) or names)[0]
    cluster.kill(names[doomed])
    stdout, stderr = running.communicate(timeout=600)
    assert running.returncode == 0, stderr
    assert sorted(executed_tasks(stdout)) == sorted(
        f"{platform}:{title}" for platform in ("tiktok", "youtube") for title in titles)
    for title in titles:
        for platform in ("youtube", "tiktok"):
            assert_conforms(library.exports / "women/18-23" / title / f"{platform}.mp4",
                            load_yaml(platforms / f"{platform}.yaml"), 4.0)
    assert leftovers(library.exports) == []


def encoding_on(exports):
    """The workers of the encodes running now (their progress files)."""
    workers = set()
    for path in (exports / ".progress").glob("*.json"):
        try:
            workers.add(json.loads(path.read_text()).get("worker"))
        except (OSError, ValueError):
            pass
    return workers


def test_the_scheduler_lost_is_one_clear_line_and_a_plain_rerun_finishes(
        library, tmp_path, cluster, clip_cache):
    platforms = small_platforms(tmp_path / "platforms")
    slow = clip_cache("four-seconds", width=360, height=640, seconds=4, fps=30, audio=True)
    for title in ("alpha", "beta"):
        directory = library.add("women", "18-23", title)
        (directory / "final.mp4").write_bytes(slow.read_bytes())
    args = library.args(f"platforms_dir={platforms}")
    running = subprocess.Popen([str(DOIT), "-n", "2", *args,
                                f"cluster={cluster.address}"], cwd=REPO,
                               env=realtime_env(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: encoding_on(library.exports) - {None}, 120, "an encode on the cluster")
    cluster.kill("scheduler")
    stdout, stderr = running.communicate(timeout=300)
    assert running.returncode != 0
    failed = [line for line in stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "cluster: the scheduler" in failed[0], stderr
    assert "Traceback" not in stderr, stderr
    # workers without a scheduler: stopped (SIGKILL) before the rerun. An encode a worker
    # was still running may leave its hidden temporary (nothing survives SIGKILL to remove
    # it), never a file under a final name; the rerun of that export removes it.
    cluster.stop()
    assert not [path for path in exported_videos(library.exports)
                if not path.with_name(path.stem + ".export.json").exists()]

    # unreachable from the start: refused in one line, nothing written
    refused = run_doit(*args, f"cluster={cluster.address}", check=3)
    assert "cannot be reached" in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        line for line in refused.stderr.strip().splitlines() if "cannot be reached" in line]
    rerun = run_doit(*args, check=0)        # the same tree, locally
    done = set(executed_tasks(rerun.stdout)) | {
        line[3:] for line in rerun.stdout.splitlines() if line.startswith("-- ")}
    assert done == {"tiktok:alpha", "tiktok:beta", "youtube:alpha", "youtube:beta"}
    for title in ("alpha", "beta"):
        assert_conforms(library.exports / "women/18-23" / title / "youtube.mp4",
                        load_yaml(platforms / "youtube.yaml"), 4.0)
    assert leftovers(library.exports) == []


# Run as a script (its function in __main__, which Dask ships to workers by value).
ENCODE_ONCE = """
import json, os, sys, time
from distributed import Client, get_worker
from exporter.media.shared import SharedCache


def encode_once_under_the_cluster_lock(exports, key):
    # What an export does with a shared encode, on a worker: under the key's cluster-wide
    # lock, encode (here: 1.5 s of work) unless another worker already has.
    cache = SharedCache(exports, cluster_locks=True)
    with cache.locked([key]):
        if cache.has(key):
            return "shared"
        time.sleep(1.5)
        temp = cache.path(key).with_name(f".{key}.{os.getpid()}.tmp")
        temp.write_bytes(b"encoded once")
        cache.store(key, temp, {"worker": get_worker().address})
        return "encoded"


address, exports, *workers = sys.argv[1:]
with Client(address, timeout="30s") as client:
    futures = [client.submit(encode_once_under_the_cluster_lock, exports, "k1",
                             workers=[worker], pure=False) for worker in workers]
    print(json.dumps(client.gather(futures)))
"""


def test_one_shared_encode_key_is_encoded_once_by_two_workers_at_the_same_moment(
        tmp_path, cluster):
    exports = tmp_path / "exports"
    workers = sorted(cluster.workers().values())
    assert len(workers) == 2
    result = subprocess.run([sys.executable, "-c", ENCODE_ONCE, cluster.address, str(exports),
                             *workers], cwd=REPO, env=doit_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)) == ["encoded", "shared"]
    assert (exports / ".shared/k1.mp4").read_bytes() == b"encoded once"


def test_a_worker_that_cannot_reach_a_bucket_is_named(moto, tmp_path, monkeypatch):
    for name, value in moto.items():
        monkeypatch.setenv(name, value)
    url = f"s3://{S3_BUCKET}/{tmp_path.name}"
    assert problem_of(f"{url}/renders", f"{url}/exports") is None
    assert not objects(moto, f"{tmp_path.name}/exports"), "the probe object is deleted"
    assert problem_of(str(tmp_path), f"{url}/exports") is None     # any mix
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    problem = problem_of(f"{url}/renders", str(tmp_path))
    assert problem.startswith(f"cannot read the renders in {url}/renders (") and \
        "SignatureDoesNotMatch" in problem, problem
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto["AWS_SECRET_ACCESS_KEY"])
    assert problem_of(str(tmp_path), "s3://no-such-bucket/x") == (
        "cannot write the exports in s3://no-such-bucket/x (s3://no-such-bucket/x: the "
        "bucket does not exist)")


def test_renders_and_exports_in_buckets_are_exported_by_workers_sharing_no_filesystem(
        moto, tmp_path, clip_cache):
    """Every file a worker reads or writes is in a bucket; the coordinator's local tree is
    a state directory the workers are never told of (the sidecars name the bucket)."""
    prefix = tmp_path.name
    clip = clip_cache("vertical", width=360, height=640, seconds=1, fps=30, audio=True)
    for title in ("alpha", "beta"):
        put(moto, f"{prefix}/renders", f"women/18-23/{title}/final.mp4", clip)
        meta = tmp_path / f"{title}.json"
        meta.write_text(f'{{"title": "Title {title}", "hashtags": ["test"]}}')
        put(moto, f"{prefix}/renders", f"women/18-23/{title}/metadata.json", meta)
    platforms = small_platforms(tmp_path / "platforms")
    aws = aws_env(moto)
    cluster = Cluster(tmp_path / "cluster", env=doit_env(**aws))
    try:
        cluster.start_scheduler()
        cluster.start_worker("w1")
        cluster.start_worker("w2")
        wait_for(lambda: len(cluster.workers()) == 2, 90, "two workers")
        state = tmp_path / "state"
        args = [f"renders=s3://{S3_BUCKET}/{prefix}/renders",
                f"exports=s3://{S3_BUCKET}/{prefix}/exports", f"platforms_dir={platforms}",
                f"cluster={cluster.address}"]
        env = doit_env(REELEXPORT_STATE_DIR=str(state), **aws)
        local = state / S3_BUCKET / prefix / "exports"

        mark = log_mark(moto)
        first = run_doit("-n", "2", *args, env=env, check=0)
        assert f"cluster: {cluster.address}, 2 workers" in first.stderr
        assert len(executed_tasks(first.stdout)) == 4
        requests = requests_since(moto, mark)
        # each export's worker fetched its render (the coordinator fetches none)
        assert len(fetches(requests)) == 4, requests
        published = objects(moto, f"{prefix}/exports")
        workers = set()
        for title in ("alpha", "beta"):
            for platform in ("youtube", "tiktok"):
                relative = f"women/18-23/{title}"
                # the coordinator's copy is the bucket's, byte for byte, and conforms
                for path in (local / relative).iterdir():
                    assert published[f"{relative}/{path.name}"] == path.read_bytes()
                assert_conforms(local / relative / f"{platform}.mp4",
                                load_yaml(platforms / f"{platform}.yaml"), 1.0)
                sidecar = read_json(local / relative / f"{platform}.export.json")
                assert sidecar["source"]["path"] == (f"s3://{S3_BUCKET}/{prefix}/renders/"
                                                     f"{relative}/final.mp4")
                workers.add(sidecar["encode"]["worker"])
        assert all(w.startswith("tcp://127.0.0.1:") for w in workers), workers
        assert json.loads(published["registry.json"])["totals"]["all"]["exported"] == 4
        assert leftovers(local) == [] and not (local / ".fetched").exists()

        mark = log_mark(moto)
        noop = run_doit("-n", "2", *args, env=env, check=0)
        assert "4 exports up to date: nothing changed since the run of" in noop.stdout
        assert not [r for r in requests_since(moto, mark) if not r.startswith("GET ")]

        # new metadata: the videos are kept, fetched by the worker, not encoded or uploaded
        video = published["women/18-23/alpha/youtube.mp4"]
        meta = tmp_path / "alpha.json"
        meta.write_text('{"title": "A new title", "hashtags": ["test"]}')
        put(moto, f"{prefix}/renders", "women/18-23/alpha/metadata.json", meta)
        mark = log_mark(moto)
        rerun = run_doit("-n", "2", *args, env=env, check=0)
        assert sorted(executed_tasks(rerun.stdout)) == ["tiktok:alpha", "youtube:alpha"]
        requests = requests_since(moto, mark)
        assert not [r for r in requests if r.startswith("PUT ") and r.endswith(".mp4")], \
            requests
        assert fetches(requests) == [], "a kept video needs no render"
        now = objects(moto, f"{prefix}/exports")
        assert now["women/18-23/alpha/youtube.mp4"] == video
        assert json.loads(now["women/18-23/alpha/metadata_youtube.json"])["title"] == \
            "A new title"
        events = [json.loads(line) for line in
                  (local / "history.jsonl").read_text().splitlines()]
        assert [e["video"] for e in events[-2:]] == ["kept", "kept"]

        # any mix: the renders in the bucket, the exports on a mount the workers share
        exports = tmp_path / "exports"
        mixed = run_doit("-n", "2", *args[:1], f"exports={exports}", *args[2:], env=env,
                         check=0)
        assert len(executed_tasks(mixed.stdout)) == 4
        for title in ("alpha", "beta"):
            sidecar = read_json(exports / f"women/18-23/{title}/youtube.export.json")
            assert sidecar["encode"]["worker"] in workers | set(cluster.workers().values())
            assert_conforms(exports / f"women/18-23/{title}/youtube.mp4",
                            load_yaml(platforms / "youtube.yaml"), 1.0)
        assert leftovers(exports) == [] and not (exports / ".fetched").exists()

        # a bad render: one line naming the title and the cause, the rest up to date; the
        # next run fails it at once, as locally (its render unchanged in the bucket)
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(b"not a video" * 100)
        put(moto, f"{prefix}/renders", "women/18-23/gamma/final.mp4", bad)
        put(moto, f"{prefix}/renders", "women/18-23/gamma/metadata.json",
            tmp_path / "beta.json")
        for rerun in range(2):
            failed = run_doit("-n", "2", *args, env=env, check=2)
            assert sorted(executed_tasks(failed.stdout)) == ["tiktok:gamma", "youtube:gamma"]
            lines = [line for line in failed.stderr.splitlines() if line.startswith("FAILED")]
            assert len(lines) == 2 and all(
                "(women/18-23/gamma): final.mp4 is not a readable video" in line
                for line in lines), failed.stderr
            assert all("unchanged since" in line for line in lines) == (rerun == 1), lines
        assert not (local / "women/18-23/gamma/youtube.mp4").exists()
        assert not [key for key in objects(moto, f"{prefix}/exports") if "gamma" in key]
    finally:
        cluster.stop()
