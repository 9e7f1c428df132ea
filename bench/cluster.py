"""Local `doit -n 2` vs the same batch on 2 local Dask workers, and the figures of the
throughput model in docs/cluster.md.

    python bench/cluster.py [--titles 4] [--seconds 10]

Sources: 1080x1920 renders of `--seconds` (a moving test pattern), exported for the four
shipped platforms. Measured in one go and printed side by side:
- wall time of the batch: `doit -n 2` locally (baseline), then `doit -n 2 cluster=...` on a
  `dask scheduler` and two `dask worker --nthreads 1` on this machine;
- the coordinator's cost per export: `doit -a` of the made batch on the cluster, where every
  task goes to a worker and finds its export made (no encode): a round trip of the whole
  machinery, per export;
- bytes each export moves over the shared filesystem: its source read (probe, hash, decode)
  and everything it writes (video, sidecar, metadata, cover, poster).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exporter.media.samples import make_title  # noqa: E402

BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed_doit(*args, env):
    start = time.perf_counter()
    result = subprocess.run([str(BIN / "doit"), *args], cwd=REPO, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"doit {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def start_cluster(root, env):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--dashboard-address", f"127.0.0.1:{free_port()}"], cwd=root, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for name in ("w1", "w2"):
        (root / name).mkdir()
        processes.append(subprocess.Popen(
            [str(BIN / "dask"), "worker", address, "--nworkers", "1", "--nthreads", "1",
             "--name", name, "--local-directory", str(root / name), "--no-dashboard"],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    code = ("import sys, time; from distributed import Client; c = Client(sys.argv[1], "
            "timeout='60s'); c.wait_for_workers(2, timeout=120); c.close()")
    subprocess.run([sys.executable, "-c", code, address], check=True, env=env)
    return address, processes


def bytes_moved(renders, exports):
    """Per export: source bytes read once, plus the bytes of the files it wrote."""
    written, exports_count, sources = 0, 0, 0
    for sidecar in exports.glob("*/*/*/*.export.json"):
        document = json.loads(sidecar.read_text())
        exports_count += 1
        sources += Path(document["source"]["path"]).stat().st_size
        platform = document["platform"]
        for name in (f"{platform}.mp4", f"{platform}.export.json", f"metadata_{platform}.json",
                     f"{platform}.cover.jpg", f"{platform}.poster.jpg"):
            path = sidecar.parent / name
            written += path.stat().st_size if path.exists() else 0
    return sources / exports_count, written / exports_count, exports_count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--titles", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    options = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        renders = root / "renders"
        for index in range(options.titles):
            make_title(renders, "women", "18-23", f"title-{index}",
                       dict(width=1080, height=1920, seconds=options.seconds, fps=30),
                       {"title": f"Bench {index}", "hashtags": ["bench"]})
        local_s = timed_doit("-n", "2", f"renders={renders}", f"exports={root / 'local'}",
                             env=env)
        address, processes = start_cluster(root, env)
        try:
            args = [f"renders={renders}", f"exports={root / 'cluster'}", f"cluster={address}"]
            cluster_s = timed_doit("-n", "2", *args, env=env)
            roundtrip_s = timed_doit("-n", "2", "-a", *args, env=env)
        finally:
            for process in processes:
                process.kill()
        read, written, count = bytes_moved(renders, root / "cluster")
    per_export = cluster_s / count
    print(f"{os.cpu_count()} cores; {options.titles} titles x 4 platforms = {count} exports "
          f"of {options.seconds:g} s 1080x1920")
    print(f"{'':<32}{'wall s':>8}{'s/export':>10}")
    print(f"{'local doit -n 2 (baseline)':<32}{local_s:>8.1f}{local_s / count:>10.2f}")
    print(f"{'2 Dask workers, doit -n 2':<32}{cluster_s:>8.1f}{per_export:>10.2f}")
    print(f"{'cluster round trip, no encode':<32}{roundtrip_s:>8.1f}{roundtrip_s / count:>10.2f}")
    print(f"bytes per export over the shared filesystem: {read / 1e6:.1f} MB read (source), "
          f"{written / 1e6:.1f} MB written")


if __name__ == "__main__":
    main()
