"""doit's dependency DB backends at library scale: what one check of every export costs.

    python bench/backends.py [--tasks 40000]

Each backend is filled with N entries shaped like an export's (its settings key, checker,
two file_dep states, the deps list), saved, then opened in a fresh interpreter that reads
every key of every entry in the order doit's get_status does. Printed: the time to save
them all (what the end of a full run costs), the time to open and read them all (what a
full check costs in the DB), and that reader's peak RSS over the interpreter's own.
`dbm` is whatever dbm module this Python has (`dbm.dumb` when built without `_gdbm`).
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BACKENDS = {
    "dbm": "doit.dependency:DbmDB",
    "json": "doit.dependency:JsonDB",
    "sqlite3": "doit.dependency:SqliteDB",
    "sqlite3-lean": "exporter.pipeline.plumbing.backend:LeanSqliteDB",
}

READER = """
import importlib, resource, sys, time
module, name = sys.argv[1].split(":")
from doit.dependency import JSONCodec
cls = getattr(importlib.import_module(module), name)
tasks = int(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
db = cls(sys.argv[2], codec=JSONCodec())
for index in range(tasks):
    task = f"youtube:title-{index:05d}"
    db.get(task, "_values_:")
    db.get(task, "checker:")
    for dep in db.get(task, "deps:"):
        db.get(task, dep)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(elapsed, (peak - before) / 1024)
"""


FILLER = """
import importlib, sys, time
module, name = sys.argv[1].split(":")
from doit.dependency import JSONCodec
db = getattr(importlib.import_module(module), name)(sys.argv[2], codec=JSONCodec())
for index in range(int(sys.argv[3])):
    directory = f"/library/renders/women/18-23/title-{index:05d}"
    deps = [f"{directory}/final.mp4", f"{directory}/metadata.json"]
    entry = {"_values_:": {"_config_changed": f"{index:064x}"}, "checker:": "MD5Checker",
             deps[0]: [1795604481.3527105, 49199, f"{index:032x}"],
             deps[1]: [1795604481.3612652, 62, f"{index + 1:032x}"], "deps:": deps}
    for key, value in entry.items():
        db.set(f"youtube:title-{index:05d}", key, value)
start = time.perf_counter()
db.dump()
print(time.perf_counter() - start)
"""


def run_python(code, *args):
    """Run `code` in a fresh interpreter started from this small one (ru_maxrss carries
    over an exec, so a big parent would hide the child's own peak)."""
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                            text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return [float(value) for value in result.stdout.split()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40000)
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, location in BACKENDS.items():
            path = Path(tmp) / f"{name}.db"
            (save,) = run_python(FILLER, location, path, options.tasks)
            read, rss = run_python(READER, location, path, options.tasks)
            size = sum(p.stat().st_size for p in Path(tmp).glob(f"{name}.db*"))
            rows.append((name, save, read, rss, size / 1e6))
    print(f"{options.tasks} entries on {os.cpu_count()} cores")
    print(f"{'backend':<14}{'save s':>8}{'open+read s':>13}{'read RSS MB':>13}{'file MB':>9}")
    for name, save, read, rss, size in rows:
        print(f"{name:<14}{save:>8.2f}{read:>13.2f}{rss:>13.0f}{size:>9.1f}")


if __name__ == "__main__":
    main()
