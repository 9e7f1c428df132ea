"""No-op cost at library scale: `doit` and `doit list --status` with everything up to date.

    python bench/noop.py [--titles 1000 10000] [--small] [--compare REV] [--realtime]

`--compare REV` measures another revision the same way, side by side: REV is checked out in
a worktree with its own venv (made once, kept under the temp directory), its own
bench/noop.py builds the same library for it, and the two rows are printed with their
ratio, this tree's first; the runs alternate (this tree, REV) for each library size. Then
the no-op alone, the trees in turns on a library of each's own at the largest size (five
runs each, four times over), the medians and their ratio: one run varies by half here.

`--realtime` runs the bench (the doit runs measured, with their children) under the
real-time scheduler (SCHED_FIFO, `chrt`; root or CAP_SYS_NICE): whatever else the machine
runs waits, so two cores give the figures of a quiet machine (measured: the same no-op
0.63-0.67 s five times while a test suite ran, against 0.75-1.5 s without it). With
--compare, both trees run under it.

How the up-to-date state is built cheaply, without encoding 40,000 exports:
1. One real title is exported by the real pipeline (4 platforms).
2. Every other title's render is a copy of that title's final.mp4 and metadata.json, so
   all sources have the same bytes (copies, not hardlinks: replacing one link would change
   the shared inode's ctime, hence every title's state); each title's exports are copies
   of the real title's outputs, with sidecars rewritten for the title (same inputs).
3. doit's dependency DB is filled through doit's own API, in the order its runner uses
   (`get_status`, `save_extra_values`, `save_success`) on the very task definitions the
   dodo generates: what doit itself stores after a run.
The first run then finds every export up to date but has no registry rows, gallery or
library stamp: doit checks every task, the run writes them (reading every sidecar once).
The no-op measured is the next run, the state after any complete run: the stamp holds, so
doit checks no task (exporter/pipeline/export/stamp.py); five are run, the median shown
(one run varies by half on this machine). Then:
- one title changed: one source is rewritten with the same bytes (a new file). `doit` checks
  that title's tasks alone (the stamp proves the others) and re-stamps;
- one title added: a new title whose exports are already in place but unknown to doit's DB,
  so its four tasks run; each finds its video made from the same inputs and keeps it. "to
  task" is the time and peak RSS until doit starts the first of them: what a new render
  costs before its encode starts; "doit s" the whole run (registry, gallery, stamp after).
  Three titles are added one after the other, the median run shown (single runs vary by
  a third on this machine);
- full check: the stamp is set aside, as after a spec edit or `doit forget`: `doit list
  --status` and `doit` check every task as doit does.
Peak RSS is the child's ru_maxrss.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SEGMENTS = ("women", "men", "kids", "seniors")
ADDED = 3       # titles added one at a time; "1 added" shows the median run
NOOPS = 5       # no-ops run one after the other; "no-op" shows the median run
AGES = ("13-17", "18-23", "24-30", "31-45", "46-plus")


def peak_rss_of(*args, env):
    """Wall time and peak RSS of one doit run, measured alone (fresh interpreter)."""
    code = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(wall, peak, r.returncode, int('nothing changed since' in r.stdout))\n"
        "sys.stderr.write(r.stderr[-2000:] if r.returncode else '')\n")
    result = subprocess.run([sys.executable, "-c", code,
                             str(Path(sys.executable).parent / "doit"), *args],
                            cwd=REPO, env=env, capture_output=True, text=True, check=True)
    wall, peak, code_, fast = result.stdout.split()
    if code_ != "0":
        raise SystemExit(f"doit {' '.join(args)} failed:\n{result.stderr}")
    return float(wall), float(peak), fast == "1"


# doit's output unbuffered: a pipe would hold the `.  task` line until the buffer fills
# (older trees' reporters did not flush it as the task starts)
UNBUFFERED = {"PYTHONUNBUFFERED": "1"}


def reader_above_doit():
    """Under --realtime, this process reads doit's output one real-time priority above
    doit's (set back in the child before exec): at the same priority, doit and its forked
    stats child would hold both cores and the `.  task` line would wait for one of them."""
    if os.sched_getscheduler(0) != os.SCHED_FIFO:
        return None
    priority = READER_PRIORITY.setdefault("doit", os.sched_getparam(0).sched_priority)
    os.sched_setparam(0, os.sched_param(priority + 1))
    return lambda: os.sched_setparam(0, os.sched_param(priority))


READER_PRIORITY = {}


def until_first_task(*args, env):
    """Seconds and peak RSS (MB) of `doit` up to the moment its first task starts (the
    reporter prints `.  task` as it starts it): what a changed title costs before its
    encode; and the wall time of the whole run."""
    start = time.perf_counter()
    process = subprocess.Popen([str(Path(sys.executable).parent / "doit"), *args], cwd=REPO,
                               env={**env, **UNBUFFERED}, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True,
                               preexec_fn=reader_above_doit())
    first_s = first_mb = None
    for line in process.stdout:
        if first_s is None and line.startswith(".  "):
            first_s = time.perf_counter() - start
            status = Path(f"/proc/{process.pid}/status").read_text()
            first_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
    if process.wait() != 0:
        raise SystemExit(f"doit {' '.join(args)} failed")
    return first_s, first_mb, time.perf_counter() - start


def small_platforms(directory):
    """The shipped platform files at 270x480 and 1 Mb/s (covers too): the same tasks, files
    and checks, in a fifth of the bytes: 40,000 exports fit on this machine's disk. What is
    measured reads no video (the no-op stats files; a full check hashes only files whose
    state changed), so the figures are the same; compare the 1,000-title rows both ways."""
    import yaml
    directory.mkdir()
    for path in sorted((REPO / "platforms").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        document["video"].update(width=270, height=480, bitrate=1_000_000,
                                 maxrate=1_000_000, bufsize=1_000_000)
        document["cover"].update(width=270, height=480)
        (directory / path.name).write_text(yaml.safe_dump(document))
    return [f"platforms_dir={directory}"]


def build_library(root, titles, env, extra=()):
    renders, exports = root / "renders", root / "exports"
    first = renders / SEGMENTS[0] / AGES[0] / "title-00000"
    from exporter.media.samples import make_title
    make_title(renders, SEGMENTS[0], AGES[0], "title-00000",
               # 3 s: the shortest render every shipped platform takes (limits.min_duration_s)
               {"width": 360, "height": 640, "seconds": 3, "fps": 30, "audio": True},
               {"title": "Bench title", "hashtags": ["bench"]})
    subprocess.run([str(Path(sys.executable).parent / "doit"), "-n", "2",
                    f"renders={renders}", f"exports={exports}", *extra],
                   cwd=REPO, env=env, check=True, capture_output=True)
    made = exports / SEGMENTS[0] / AGES[0] / "title-00000"
    for index in range(1, titles):
        segment = SEGMENTS[index % len(SEGMENTS)]
        age = AGES[(index // len(SEGMENTS)) % len(AGES)]
        title_id = f"title-{index:05d}"
        source_dir = renders / segment / age / title_id
        source_dir.mkdir(parents=True)
        for name in ("final.mp4", "metadata.json"):     # copies: each title its own inode
            shutil.copyfile(first / name, source_dir / name)
        out_dir = exports / segment / age / title_id
        out_dir.mkdir(parents=True)
        for path in made.iterdir():
            if path.name.endswith(".export.json"):
                sidecar = json.loads(path.read_text())
                sidecar.update(title_id=title_id, segment=segment, age=age)
                sidecar["source"]["path"] = str(source_dir / "final.mp4")
                (out_dir / path.name).write_text(json.dumps(sidecar, indent=2, sort_keys=True)
                                                 + "\n")
            else:
                shutil.copyfile(path, out_dir / path.name)   # its own inode, as exports are
    fill_dep_db(renders, exports, env, extra)
    return renders, exports


def add_title(renders, exports, index):
    """A new title, its exports already made (copies, sidecar rewritten), doit's DB
    knowing nothing of it: its tasks run and keep what they find."""
    first = renders / SEGMENTS[0] / AGES[0] / "title-00000"
    made = exports / SEGMENTS[0] / AGES[0] / "title-00000"
    title_id = f"title-{index:05d}"
    source_dir = renders / SEGMENTS[1] / AGES[1] / title_id
    out_dir = exports / SEGMENTS[1] / AGES[1] / title_id
    source_dir.mkdir(parents=True)
    out_dir.mkdir(parents=True)
    for name in ("final.mp4", "metadata.json"):
        shutil.copyfile(first / name, source_dir / name)
    for path in made.iterdir():
        if path.name.endswith(".export.json"):
            sidecar = json.loads(path.read_text())
            sidecar.update(title_id=title_id, segment=SEGMENTS[1], age=AGES[1])
            sidecar["source"]["path"] = str(source_dir / "final.mp4")
            (out_dir / path.name).write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
        else:
            shutil.copyfile(path, out_dir / path.name)


# exports=s3://...: what each export's upload returned, as the bucket lists it (bench/storage.py)
PUBLISHED_VALUES = (
    "    from exporter.storage.exports import PUBLISHED_VALUE\n"
    "    task.values[PUBLISHED_VALUE] = {name: list(build.published[job.title.key + '/' + name])\n"
    "                                   for name in job.file_order}\n")


def fill_dep_db(renders, exports, env, extra=(), published=False):
    """Record every export task as done, through doit's own Dependency API (`published`:
    with the values of its files published to the bucket `exports` names)."""
    code = (
        "import sys\n"
        "from doit.dependency import Dependency, SqliteDB\n"
        "from exporter.pipeline.plumbing.checker import MD5Checker   # the run's checker and its states\n"
        "from exporter.model.settings import resolve_settings\n"
        "from exporter.pipeline.export.library import Build\n"
        "from exporter.pipeline.plumbing.tasks import export_task, task_from_dict\n"
        "values = dict(arg.split('=', 1) for arg in sys.argv[1:])\n"
        "build = Build(resolve_settings(lambda name, default=None: values.get(name, default)))\n"
        "dependency = Dependency(SqliteDB, str(build.settings.dep_file), checker_cls=MD5Checker)\n"
        "for job in build.all_jobs:\n"
        "    task = task_from_dict(export_task(job))\n"
        "    task.init_options()\n"
        "    dependency.get_status(task, {})   # evaluates uptodate, as doit's runner does\n"
        "    task.save_extra_values()\n"
        + (PUBLISHED_VALUES if published else "") +
        "    dependency.save_success(task)\n"
        "dependency.close()\n")
    subprocess.run([sys.executable, "-c", code, f"renders={renders}", f"exports={exports}",
                    *extra], cwd=REPO, env=env, check=True)


# The figures a comparison shows: (label, column of a printed row, unit).
COMPARED = (("no-op doit", 3, "s"), ("no-op MB", 4, "MB"), ("list --status", 5, "s"),
            ("1 changed", 7, "s"), ("1 added, to task", 9, "s"), ("full check", 12, "s"),
            ("full check MB", 13, "MB"), ("full list", 14, "s"))


def revision_python(revision):
    """(its commit, the python of its venv) for `revision`: a worktree and a venv of its
    own under the temp directory, made at the first comparison and kept for the next."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify",
                             f"{revision}^{{commit}}"], capture_output=True, text=True,
                            check=True).stdout.strip()
    root = Path(tempfile.gettempdir()) / f"reelexport-bench-{commit[:12]}"
    if not (root / "bench" / "noop.py").is_file():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--force", "--detach",
                        str(root), commit], check=True, capture_output=True)
    python = root / ".venv" / "bin" / "python"
    if not python.exists():
        print(f"making a venv for {revision} ({commit[:12]}) in {root} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(root / ".venv")], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-e", str(root)],
                       check=True)
    return commit, python


REALTIME = ["chrt", "--fifo", "10"]


def measured_row(python, script, titles, small, realtime=False):
    """The row `script` (a bench/noop.py) prints for `titles`, as numbers. A script older
    than --small builds the library at full size (what is measured reads no video)."""
    small = small and "--small" in Path(script).read_text()
    argv = [*(REALTIME if realtime else []),
            str(python), str(script), "--titles", str(titles), *(["--small"] * small)]
    # an older tree's script may not unbuffer doit's output itself (until_first_task)
    result = subprocess.run(argv, capture_output=True, text=True,
                            env={**os.environ, **UNBUFFERED})
    if result.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr[-3000:]}")
    for line in result.stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == str(titles):
            return [float(field) for field in fields]
    raise SystemExit(f"no row for {titles} titles in:\n{result.stdout}")


TURNS, RUNS = 4, 5      # the no-ops in turns: each tree RUNS times, TURNS times over


def stamped_library(tree, python, root, titles, small, realtime):
    """doit's arguments for a library of `titles` built by `tree`'s own bench/noop.py (an
    older one without --small builds it at full size), run until stamped."""
    small = small and "--small" in (tree / "bench" / "noop.py").read_text()
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import noop\n"
            "root = Path(sys.argv[2]); root.mkdir(parents=True)\n"
            "extra = noop.small_platforms(root / 'platforms') if sys.argv[4] == '1' else []\n"
            "r, e = noop.build_library(root, int(sys.argv[3]), dict(noop.os.environ),"
            " *([extra] if extra else []))\n"
            "print(' '.join([f'renders={r}', f'exports={e}', *extra]))")
    built = subprocess.run([str(python), "-c", code, str(tree / "bench"), str(root), str(titles),
                            "1" if small else "0"], cwd=tree, env=tree_env(tree),
                           capture_output=True, text=True)
    if built.returncode:
        raise SystemExit(f"building {root} with {tree} failed:\n{built.stderr[-3000:]}")
    args = built.stdout.split()
    for _ in range(2):          # registry, gallery and stamp; then the no-op holds
        timed_noop(tree, python, args, realtime)
    return args


def tree_env(tree):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(REELEXPORT_X264_PRESET="superfast", PYTHONPATH=str(tree), **UNBUFFERED)
    return env


def timed_noop(tree, python, args, realtime):
    start = time.perf_counter()
    subprocess.run([*(REALTIME if realtime else []), str(Path(python).parent / "doit"), *args],
                   cwd=tree, env=tree_env(tree), capture_output=True, check=True)
    return time.perf_counter() - start


def noops_in_turns(trees, titles, small, realtime):
    """{name: walls}: each tree's no-op on a library of its own, the trees taking turns
    (RUNS no-ops each, TURNS times): single runs vary by half on this machine, turns share
    its slow moments between the trees."""
    with tempfile.TemporaryDirectory() as tmp:
        libraries = {name: (tree, python, stamped_library(tree, python, Path(tmp) / str(index),
                                                          titles, small, realtime))
                     for index, (name, tree, python) in enumerate(trees)}
        walls = {name: [] for name in libraries}
        for _ in range(TURNS):
            for name, (tree, python, args) in libraries.items():
                walls[name] += [timed_noop(tree, python, args, realtime) for _ in range(RUNS)]
    return walls


def compare(revision, sizes, small, realtime):
    commit, python = revision_python(revision)
    here = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                            "exporter", "bench", "dodo.py"],
                           capture_output=True, text=True).stdout.strip()
    ours = f"{here}{'+changes' if dirty else ''}"
    theirs = f"{revision} ({commit[:12]})" if revision != commit[:len(revision)] else commit[:12]
    print(("platforms at 270x480, 1 Mb/s (--small); " if small else "")
          + f"{os.cpu_count()} cores; each row one run of each tree's bench/noop.py, "
          "this tree first" + (", real-time scheduling (--realtime)" if realtime else ""))
    width = max(len(ours), len(theirs), 10) + 2
    print(f"{'titles':>7}  {'tree':<{width}}" + "".join(f"{label:>18}" for label, _, _ in COMPARED))
    for titles in sizes:
        mine = measured_row(sys.executable, Path(__file__).resolve(), titles, small, realtime)
        other = measured_row(python, Path(python).parents[2] / "bench" / "noop.py", titles,
                             small, realtime)
        for name, row in ((ours, mine), (theirs, other)):
            print(f"{titles:>7}  {name:<{width}}"
                  + "".join(f"{row[column]:>16.2f}{unit[:2]:>2}" if unit == "s"
                            else f"{row[column]:>16.0f}{unit:>2}"
                            for _, column, unit in COMPARED))
        print(f"{titles:>7}  {'ratio':<{width}}"
              + "".join(f"{'x' + format(mine[column] / other[column], '.2f'):>18}"
                        if other[column] else f"{'-':>18}" for _, column, _ in COMPARED))
    titles = max(sizes)
    walls = noops_in_turns([(ours, REPO, sys.executable),
                            (theirs, Path(python).parents[2], python)], titles, small, realtime)
    medians = {name: statistics.median(runs) for name, runs in walls.items()}
    print(f"no-op at {titles} titles, the trees in turns ({TURNS} x {RUNS} runs each): "
          + ", ".join(f"{name} median {medians[name]:.2f} s ({min(runs):.2f}-{max(runs):.2f})"
                      for name, runs in walls.items())
          + f", ratio x{medians[ours] / medians[theirs]:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--titles", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--small", action="store_true",
                        help="the shipped platforms at 270x480, 1 Mb/s (small_platforms)")
    parser.add_argument("--compare", metavar="REV",
                        help="measure revision REV too, side by side (its own worktree and venv)")
    parser.add_argument("--realtime", action="store_true",
                        help="run under SCHED_FIFO (chrt): the figures of a quiet machine")
    options = parser.parse_args()
    if options.compare:
        compare(options.compare, options.titles, options.small, options.realtime)
        return
    if options.realtime and os.sched_getscheduler(0) != os.SCHED_FIFO:
        os.execvp(REALTIME[0], [*REALTIME, sys.executable, *sys.argv])
    # Python may write its bytecode cache, as it does for a user (an installed package has
    # it): with PYTHONDONTWRITEBYTECODE set, every run compiles the package again (0.15 s)
    env = {key: value for key, value in os.environ.items()
           if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(REELEXPORT_X264_PRESET="superfast", PYTHONPATH=str(REPO))
    rows = []
    for titles in options.titles:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            extra = small_platforms(Path(tmp) / "platforms") if options.small else []
            renders, exports = build_library(Path(tmp), titles, env, extra)
            setup = time.perf_counter() - start
            args = [f"renders={renders}", f"exports={exports}", *extra]
            first_wall, _, _ = peak_rss_of(*args, env=env)
            noops = [peak_rss_of(*args, env=env) for _ in range(NOOPS)]
            assert all(fast for _, _, fast in noops), "the no-op did not find the stamp holding"
            run_wall = sorted(wall for wall, _, _ in noops)[NOOPS // 2]
            run_rss = max(rss for _, rss, _ in noops)
            list_wall, list_rss, _ = peak_rss_of("list", "--status", *args, env=env)
            source = renders / SEGMENTS[0] / AGES[0] / "title-00000" / "final.mp4"
            shutil.copyfile(source, source.with_name("rewritten"))
            os.replace(source.with_name("rewritten"), source)
            changed_wall, changed_rss, fast = peak_rss_of(*args, env=env)
            assert not fast, "a rewritten source must be checked by doit"
            assert peak_rss_of(*args, env=env)[2], "the partial run did not re-stamp"
            samples = []                # the median of three titles added one by one
            for extra in range(ADDED):
                add_title(renders, exports, titles + extra)
                samples.append(until_first_task(*args, env=env))
            added_first_s, added_first_mb, added_wall = sorted(samples)[ADDED // 2]
            assert peak_rss_of(*args, env=env)[2], "the runs did not stamp the added titles"
            (exports / ".up-to-date.json").unlink()
            full_list_wall, full_list_rss, _ = peak_rss_of("list", "--status", *args, env=env)
            full_wall, full_rss, fast = peak_rss_of(*args, env=env)
            assert not fast, "without a stamp, doit checks every task"
            assert peak_rss_of(*args, env=env)[2], "the full check did not re-stamp"
            registry = json.loads((exports / "registry.json").read_text())
            exported = registry["totals"]["all"]["exported"]
            rows.append((titles, (titles + ADDED) * 4, exported, setup, first_wall, run_wall,
                         run_rss, list_wall, list_rss, changed_wall, changed_rss,
                         added_first_s, added_first_mb, added_wall, full_wall, full_rss,
                         full_list_wall, full_list_rss))
    print(("platforms at 270x480, 1 Mb/s (--small); " if options.small else "")
          + f"{os.cpu_count()} cores; targets at 10,000 titles: no-op doit <= 2 s, "
          "doit list --status <= 3 s, each <= 300 MB; one title changed or added <= 1 s, "
          "<= 150 MB before its encode starts"
          + ("; real-time scheduling (--realtime)"
             if os.sched_getscheduler(0) == os.SCHED_FIFO else ""))
    print(f"{'':>27}{'no-op (stamp holds)':-^30}{'':>2}{'1 changed':-^15}{'':>2}"
          f"{'1 added':-^26}{'':>2}{'full check (no stamp)':-^30}")
    print(f"{'titles':>7}{'setup s':>9}{'1st run s':>11}"
          f"{'doit s':>9}{'MB':>6}{'list s':>9}{'MB':>6}{'':>2}{'doit s':>9}{'MB':>6}{'':>2}"
          f"{'to task s':>10}{'MB':>6}{'doit s':>10}{'':>2}"
          f"{'doit s':>9}{'MB':>6}{'list s':>9}{'MB':>6}")
    for row in rows:
        (titles, exports_n, exported, setup, first_wall, run_wall, run_rss, list_wall,
         list_rss, changed_wall, changed_rss, added_first_s, added_first_mb, added_wall,
         full_wall, full_rss, full_list_wall, full_list_rss) = row
        assert exported == exports_n, f"registry: {exported} of {exports_n} exported"
        print(f"{titles:>7}{setup:>9.1f}{first_wall:>11.2f}"
              f"{run_wall:>9.2f}{run_rss:>6.0f}{list_wall:>9.2f}{list_rss:>6.0f}{'':>2}"
              f"{changed_wall:>9.2f}{changed_rss:>6.0f}{'':>2}{added_first_s:>10.2f}"
              f"{added_first_mb:>6.0f}{added_wall:>10.2f}{'':>2}{full_wall:>9.2f}"
              f"{full_rss:>6.0f}{full_list_wall:>9.2f}{full_list_rss:>6.0f}")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"growth {first[0]} -> {last[0]} titles: no-op doit x{last[5] / first[5]:.1f}; "
              f"one changed x{last[9] / first[9]:.1f}; one added, to its task "
              f"x{last[11] / first[11]:.1f}; full check doit x{last[14] / first[14]:.1f}, "
              f"list x{last[16] / first[16]:.1f}")


if __name__ == "__main__":
    main()
