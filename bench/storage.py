"""Renders and exports in a bucket against both on disk: the no-op and one changed title.

    python bench/storage.py [--titles 1000] [--latency-ms 50]

The library is bench/noop.py's (one title exported for real, the others copies of it with
their exports in place and doit's DB filled through doit's own API), on disk, then in a
bucket of moto's S3 server on localhost (started here, stopped at the end): the same
renders uploaded under s3://bench/renders (the DB filled again from the bucket's listing),
then also the exports uploaded under s3://bench/exports (the DB told what each upload
returned). For each: the no-op (the run after a complete one) and the run after one title's
render is replaced by other bytes; for the bucket, the requests the server logged during
each run, the renders downloaded and the bytes moved.

The tool reaches moto through a small proxy that holds every request `--latency-ms` before
passing it on (default 50 ms, the order of a same-region S3 LIST): moto on localhost
answers in a few milliseconds, a real S3 does not. Each run shows its wall time and the
tool's own CPU time (doit and its storage helper, not moto's).
"""

import argparse
import http.client
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import noop  # noqa: E402  (bench/noop.py: the library and doit's DB, built cheaply)

BUCKET = "bench"
TARGET_NOOP_S = 2.0


def start_moto(log_path):
    """moto's S3 server on a free port (no authentication: any key is taken)."""
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(log_path, "wb")  # noqa: SIM115  (the server's access log, read as it grows)
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                               "-p", str(port)], stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1).read()
            return server, endpoint
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"moto's server did not start: {Path(log_path).read_text()}")


class Delayed(BaseHTTPRequestHandler):
    """One request, held `server.latency` seconds, then passed to moto and answered."""

    protocol_version = "HTTP/1.1"

    def forward(self):
        time.sleep(self.server.latency)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=300)
        started = time.perf_counter()
        upstream.request(self.command, self.path, body=body,
                         headers={key: value for key, value in self.headers.items()
                                  if key.lower() != "connection"})
        answer = upstream.getresponse()
        data = answer.read()
        self.server.moto_spans.append((started, time.perf_counter()))   # moto answering
        self.send_response(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() in ("transfer-encoding", "connection") or (
                    key.lower() == "content-length" and self.command != "HEAD"):
                continue
            self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    def log_message(self, *args):        # moto's own log counts the requests
        pass


def start_proxy(endpoint, latency_s):
    """A proxy in front of `endpoint` adding `latency_s` to every request; its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Delayed)
    server.daemon_threads = True
    parts = urlsplit(endpoint)
    server.upstream, server.latency = (parts.hostname, parts.port), latency_s
    server.moto_spans = []
    Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def client(endpoint):
    import boto3
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench")


def upload_tree(s3, root, prefix, depth=None):
    """Every file of `root` (at `depth` only, when given) under `prefix`."""
    files = [path for path in (root.glob("/".join("*" * depth)) if depth else root.rglob("*"))
             if path.is_file()]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda path: s3.upload_file(
            str(path), BUCKET, f"{prefix}/{path.relative_to(root).as_posix()}"), files))
    return len(files)


def requests_in(log_path, start):
    text = Path(log_path).read_text(errors="replace")[start:]
    return re.findall(r'"(?:\x1b\[[0-9;]*m)?([A-Z]+) (/[^ ]*) HTTP', text)


CPU = []        # the tool's CPU seconds of each run, in the order run() was called
MOTO = []       # seconds moto took to answer the run's requests (0 for a run on disk)


def busy_s(spans):
    """The time covered by `spans` ((start, end), ...), overlaps counted once: two requests
    moto answers side by side cost the run the time of one."""
    covered, reach = 0.0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            covered, reach = covered + end - start, end
        elif end > reach:
            covered, reach = covered + end - reach, end
    return covered
PROXY = []      # the proxy, once started


def run(args, env):
    """Wall seconds and stdout of one doit run; its CPU (doit and the processes it waited
    for: the storage helper, ffmpeg) is appended to CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    spans_before = len(PROXY[0].moto_spans) if PROXY else 0
    start = time.perf_counter()
    result = subprocess.run([str(Path(sys.executable).parent / "doit"), *args], cwd=REPO,
                            env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    MOTO.append(busy_s(PROXY[0].moto_spans[spans_before:]) if PROXY else 0.0)
    if result.returncode:
        raise SystemExit(f"doit {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return wall, result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--titles", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=50,
                        help="held before each request reaches moto (default 50)")
    options = parser.parse_args()
    env = {key: value for key, value in os.environ.items()
           if key != "PYTHONDONTWRITEBYTECODE" and not key.startswith("AWS_")}
    env.update(REELEXPORT_X264_PRESET="superfast", PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        extra = noop.small_platforms(tmp / "platforms")
        renders, exports = noop.build_library(tmp / "disk", options.titles, env, extra)
        disk_args = [f"renders={renders}", f"exports={exports}", *extra]
        run(disk_args, env)                             # registry, gallery, stamp
        disk_noop, _ = run(disk_args, env)
        disk_noop_cpu = CPU[-1]

        log_path = tmp / "moto.log"
        server, direct = start_moto(log_path)
        proxy, endpoint = start_proxy(direct, options.latency_ms / 1000)
        PROXY.append(proxy)
        try:
            s3 = client(direct)          # the bench's own uploads: not delayed
            s3.create_bucket(Bucket=BUCKET)
            objects = upload_tree(s3, renders, "renders")
            bucket_env = {**env, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
                          "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
            bucket_exports = tmp / "bucket-exports"
            shutil.copytree(exports, bucket_exports, ignore=shutil.ignore_patterns(
                ".doit.db", ".up-to-date.json", "registry.json", "index.html", ".lock"))
            url = f"s3://{BUCKET}/renders"
            noop.fill_dep_db(url, bucket_exports, bucket_env, extra)
            bucket_args = [f"renders={url}", f"exports={bucket_exports}", *extra]
            run(bucket_args, bucket_env)                 # registry, gallery, stamp
            mark = len(log_path.read_text(errors="replace"))
            bucket_noop, _ = run(bucket_args, bucket_env)
            bucket_noop_cpu, bucket_noop_moto = CPU[-1], MOTO[-1]
            noop_requests = requests_in(log_path, mark)

            # renders and exports in the bucket: the bucket-renders tree as the local tree
            # of exports=s3://bench/exports, its exports uploaded, doit's DB told so
            state = tmp / "state"
            both_env = {**bucket_env, "REELEXPORT_STATE_DIR": str(state)}
            shutil.copytree(bucket_exports, state / BUCKET / "exports")
            upload_tree(s3, state / BUCKET / "exports", "exports", depth=4)
            exports_url = f"s3://{BUCKET}/exports"
            noop.fill_dep_db(url, exports_url, both_env, extra, published=True)
            both_args = [f"renders={url}", f"exports={exports_url}", *extra]
            run(both_args, both_env)                     # registry, gallery, stamp
            mark = len(log_path.read_text(errors="replace"))
            both_noop, _ = run(both_args, both_env)
            both_noop_cpu, both_noop_moto = CPU[-1], MOTO[-1]
            both_noop_requests = requests_in(log_path, mark)

            # one title's render replaced by other bytes, on every side
            changed = "title-00001"
            key = next(path for path in renders.rglob(f"{changed}/final.mp4"))
            relative = key.relative_to(renders).as_posix()
            other = tmp / "other.mp4"
            from exporter.media.samples import make_clip
            make_clip(other, width=360, height=640, seconds=3, fps=30, audio=True,
                      pattern="color=c=blue")
            shutil.copyfile(other, key)
            disk_changed, _ = run(disk_args, env)
            disk_changed_cpu = CPU[-1]
            s3.upload_file(str(other), BUCKET, f"renders/{relative}")
            mark = len(log_path.read_text(errors="replace"))
            bucket_changed, _ = run(bucket_args, bucket_env)
            bucket_changed_cpu, bucket_changed_moto = CPU[-1], MOTO[-1]
            changed_requests = requests_in(log_path, mark)
            mark = len(log_path.read_text(errors="replace"))
            both_changed, _ = run(both_args, both_env)
            both_changed_cpu, both_changed_moto = CPU[-1], MOTO[-1]
            both_changed_requests = requests_in(log_path, mark)
            uploaded = sum(path.stat().st_size for path in
                           (state / BUCKET / "exports").glob(f"*/*/{changed}/*"))
            size = other.stat().st_size
        finally:
            proxy.shutdown()
            server.terminate()
            server.wait(timeout=10)

    def downloaded(requests):
        return len([path for method, path in requests
                    if method == "GET" and path.endswith("/final.mp4")])

    def described(requests):
        kinds = {}
        for method, path in requests:
            kind = "LIST" if "list-type=2" in path else method
            kinds[kind] = kinds.get(kind, 0) + 1
        return ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "none"

    print(f"{options.titles} titles x 4 platforms ({objects} render objects), moto's S3 server "
          f"on localhost behind a proxy holding each request {options.latency_ms:g} ms, "
          f"{os.cpu_count()} cores")
    print("seconds of wall time (the tool's CPU seconds); with a bucket, then the wall time "
          "less moto's own answer time: what an S3 answering in the latency alone would give")
    print(f"{'run':<19}{'on disk':>19}{'renders':>19}{'both':>19}  requests (renders "
          "downloaded)")
    print(f"{'':<19}{'':>19}{'in bucket':>19}{'in bucket':>19}  renders in the bucket | "
          "both in the bucket")

    def cell(wall, cpu, moto=None):
        text = f"{wall:.2f} ({cpu:.2f})"
        return (text + ("" if moto is None else f" {wall - moto:.2f}")).rjust(19)
    for label, disk, bucket, both, one, two in (
            ("no-op", cell(disk_noop, disk_noop_cpu),
             cell(bucket_noop, bucket_noop_cpu, bucket_noop_moto),
             cell(both_noop, both_noop_cpu, both_noop_moto), noop_requests, both_noop_requests),
            ("one title changed", cell(disk_changed, disk_changed_cpu),
             cell(bucket_changed, bucket_changed_cpu, bucket_changed_moto),
             cell(both_changed, both_changed_cpu, both_changed_moto),
             changed_requests, both_changed_requests)):
        print(f"{label:<19}{disk}{bucket}{both}  {described(one)} ({downloaded(one)}) | "
              f"{described(two)} ({downloaded(two)})")
    print(f"bytes moved by the changed title's 4 exports: {size} downloaded (its render, "
          f"once); with exports in the bucket, {uploaded} uploaded (its exports' files)")
    print(f"targets: no-op <= {TARGET_NOOP_S:g} s, nothing downloaded by a no-op")


if __name__ == "__main__":
    main()
