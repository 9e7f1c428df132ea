"""The no-op fast path (exporter.stamp, exporter.loader): taken when nothing doit would
check has changed since a run that left every export up to date, and never otherwise."""

import json
import os
import shutil

import pytest
from doit.task import Task
from conftest import (
    REPO,
    TEST_FFMPEG,
    TEST_PRESET,
    executed_tasks,
    read_json,
    run_doit,
    small_platforms,
)

from exporter.model.settings import resolve_settings
from exporter.pipeline.export.library import Build
from exporter.pipeline.export.stamp import STAMP_NAME, check_stamp, write_stamp
from exporter.pipeline.plumbing.loader import PROVEN, like
from exporter.pipeline.plumbing.tasks import WITHOUT_PROJECT_SETTINGS

# The tool's bookkeeping, not ffmpeg: run once, in the first pass (README: Test).
pytestmark = pytest.mark.once

FAST = "nothing changed since the run of"


def make_stamped(library):
    """Two titles x two platforms, exported by a complete run (which stamps the library)."""
    platforms = small_platforms(library.root.parent / "platforms")
    library.add("women", "18-23", "alpha")
    library.add("men", "24-30", "beta", shape="landscape")
    all_args = library.args(f"platforms_dir={platforms}")
    first = run_doit(*all_args, check=0)
    assert len(executed_tasks(first.stdout)) == 4
    assert FAST not in first.stdout
    assert (library.exports / STAMP_NAME).exists()
    return {"platforms": platforms, "all_args": all_args}


@pytest.fixture
def stamped(restored_library):
    return restored_library("noop-stamped", make_stamped)


def stamp_holds(args, **environ):
    """What exporter.loader decides, computed here as a fresh `doit` would."""
    values = dict(arg.split("=", 1) for arg in args)
    settings = resolve_settings(lambda name, default=None: values.get(name, default),
                                environ={"REELEXPORT_X264_PRESET": TEST_PRESET,
                                         "REELEXPORT_FFMPEG": TEST_FFMPEG, **environ})
    check = check_stamp(Build(settings))
    return check is not None and check.everything


def tree_state(root):
    """Every file and directory with what a write would change (but the run's lock file)."""
    return {str(path): (path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns)
            for path in root.rglob("*") if path.name != ".lock"}


def test_a_noop_takes_the_fast_path_and_writes_nothing(stamped):
    before = tree_state(stamped.exports)
    second = run_doit(*stamped.all_args, check=0)
    assert executed_tasks(second.stdout) == []
    assert second.stdout.splitlines() == [
        f"4 exports up to date: {FAST} "
        f"{second.stdout.split(FAST)[1].split()[0]} that left every export up to date",
        "registry: 4 exported, 0 stale, 0 failed, 0 pending"]
    assert tree_state(stamped.exports) == before
    # a platform group named on the command line is proven the same way
    assert FAST in run_doit("youtube", *stamped.all_args, check=0).stdout


def test_the_fast_listing_is_the_full_listing(stamped):
    assert stamp_holds(stamped.all_args)
    fast = run_doit("list", "--status", *stamped.all_args, check=0).stdout
    stamp = stamped.exports / STAMP_NAME
    stamp.rename(stamp.with_name("set-aside"))
    full = run_doit("list", "--status", *stamped.all_args, check=0).stdout
    assert fast == full
    assert "U youtube:alpha" in fast and "U tiktok:beta" in fast


def touch(path):
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def rewrite_same_bytes(path):
    path.write_bytes(path.read_bytes())


CHANGES = {
    "source touched": lambda lib: touch(lib.root / "women/18-23/alpha/final.mp4"),
    "metadata rewritten with the same bytes":
        lambda lib: rewrite_same_bytes(lib.root / "men/24-30/beta/metadata.json"),
    "thumbnail added": lambda lib: shutil.copy(lib.exports / "women/18-23/alpha/youtube.cover.jpg",
                                               lib.root / "women/18-23/alpha/thumbnail.jpg"),
    "target deleted": lambda lib: (lib.exports / "men/24-30/beta/tiktok.cover.jpg").unlink(),
    "registry deleted": lambda lib: (lib.exports / "registry.json").unlink(),
    "gallery deleted": lambda lib: (lib.exports / "index.html").unlink(),
    "title added": lambda lib: lib.add("kids", "13-17", "gamma"),
    "title removed": lambda lib: shutil.rmtree(lib.root / "men/24-30/beta"),
    "platform spec edited": lambda lib: (lib.platforms / "tiktok.yaml").write_text(
        (lib.platforms / "tiktok.yaml").read_text() + "# a comment\n"),
    "doit forget": lambda lib: run_doit("forget", "youtube:alpha", *lib.all_args, check=0),
    "doit ignore": lambda lib: run_doit("ignore", "youtube:alpha", *lib.all_args, check=0),
}


# What the run after each change checks: the one title it touched, or everything.
CHECKED = {"source touched": {"alpha"}, "metadata rewritten with the same bytes": {"beta"},
           "thumbnail added": {"alpha"}, "target deleted": {"beta"}, "title added": {"gamma"},
           "title removed": set()}


def checked_titles(stdout):
    return {line.split(":", 1)[1] for line in stdout.splitlines()
            if line.startswith(("-- ", ".  ")) and ":" in line}


@pytest.mark.parametrize("change", CHANGES)
def test_anything_doit_would_check_ends_the_fast_path(stamped, change):
    assert stamp_holds(stamped.all_args)
    CHANGES[change](stamped)
    assert not stamp_holds(stamped.all_args)
    run = run_doit(*stamped.all_args)
    assert run.returncode == 0, run.stderr
    titles = {path.name for path in stamped.root.glob("*/*/*")}
    if change in CHECKED:       # a partial run: that title alone
        assert checked_titles(run.stdout) == CHECKED[change], run.stdout
        unchanged = len(titles - CHECKED[change])
        assert f"{unchanged} title{'s' * (unchanged != 1)} unchanged" in run.stdout
    else:                       # everything is checked
        assert checked_titles(run.stdout) == titles, run.stdout
        assert " unchanged since the run of" not in run.stdout
    if change == "doit ignore":     # an ignored export is skipped, never proven
        assert stamped_platforms(stamped) == {"men/24-30/beta": ["tiktok", "youtube"],
                                              "women/18-23/alpha": ["tiktok"]}
    else:
        assert stamp_holds(stamped.all_args), "the run proved the library again"


def test_settings_that_change_the_exports_end_the_fast_path(stamped):
    assert not stamp_holds(stamped.all_args, REELEXPORT_X264_PRESET="faster")
    other_exports = [arg for arg in stamped.all_args if not arg.startswith("exports=")]
    assert not stamp_holds([*other_exports, f"exports={stamped.exports}-copy"])


def test_a_touched_source_gets_the_full_content_check_then_the_fast_path_again(stamped):
    touch(stamped.root / "women/18-23/alpha/final.mp4")
    full = run_doit(*stamped.all_args, check=0)
    assert FAST not in full.stdout
    assert executed_tasks(full.stdout) == [], "same bytes: nothing is redone"
    assert FAST in run_doit(*stamped.all_args, check=0).stdout

    # new bytes in the source: its exports are redone, and only those
    shutil.copy(stamped.root / "men/24-30/beta/final.mp4",
                stamped.root / "women/18-23/alpha/final.mp4")
    changed = run_doit(*stamped.all_args, check=0)
    assert executed_tasks(changed.stdout) == ["tiktok:alpha", "youtube:alpha"]
    assert FAST in run_doit(*stamped.all_args, check=0).stdout


def test_a_deleted_target_is_made_again(stamped):
    (stamped.exports / "men/24-30/beta/tiktok.mp4").unlink()
    rerun = run_doit(*stamped.all_args, check=0)
    assert executed_tasks(rerun.stdout) == ["tiktok:beta"]
    assert (stamped.exports / "men/24-30/beta/tiktok.mp4").exists()


def test_a_target_missing_when_the_stamp_is_written_is_not_proven(stamped):
    """A file deleted by someone else while a run goes on: the stat that digests the
    title's files finds it gone, so its platform is left out of the stamp (the others
    of the title stay proven) and the next run makes it again."""
    values = dict(arg.split("=", 1) for arg in stamped.all_args)
    settings = resolve_settings(lambda name, default=None: values.get(name, default),
                                environ={"REELEXPORT_X264_PRESET": TEST_PRESET,
                                         "REELEXPORT_FFMPEG": TEST_FFMPEG})
    build = Build(settings)
    (stamped.exports / "men/24-30/beta/tiktok.mp4").unlink()
    write_stamp(build, {}, {"men/24-30/beta": set(build.all_specs)}, {})
    assert stamped_platforms(stamped)["men/24-30/beta"] == sorted(set(build.all_specs)
                                                                   - {"tiktok"})
    rerun = run_doit(*stamped.all_args, check=0)
    assert executed_tasks(rerun.stdout) == ["tiktok:beta"]


def test_forced_and_named_runs_check_every_task(stamped):
    forced = run_doit("-a", *stamped.all_args, check=0)
    assert FAST not in forced.stdout
    assert len(executed_tasks(forced.stdout)) == 4
    named = run_doit("youtube:alpha", *stamped.all_args, check=0)
    assert FAST not in named.stdout and "-- youtube:alpha" in named.stdout


def stamped_titles(library):
    return set(read_json(library.exports / STAMP_NAME)["titles"])


def stamped_platforms(library):
    """{title: the platforms the stamp proves}."""
    return {key: entry[2] for key, entry in
            read_json(library.exports / STAMP_NAME)["titles"].items()}


def test_a_failed_title_is_never_stamped_and_is_checked_by_every_run(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    args = library.args(f"platforms_dir={platforms}")
    library.add("women", "18-23", "alpha")
    broken = library.add("women", "18-23", "broken")
    (broken / "final.mp4").write_bytes(b"not a video")
    first = run_doit(*args)
    assert first.returncode != 0 and "broken" in first.stderr
    assert stamped_titles(library) == {"women/18-23/alpha"}
    for _ in range(2):      # the failure is reported by every run, never stamped away
        run = run_doit(*args)
        assert run.returncode != 0 and "broken" in run.stderr
        assert FAST not in run.stdout
        assert "1 title unchanged since the run of" in run.stdout
        assert executed_tasks(run.stdout) == ["youtube:broken"]
        assert stamped_titles(library) == {"women/18-23/alpha"}


def test_a_filtered_run_stamps_only_what_it_checked(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    library.add("women", "18-23", "alpha")
    library.add("men", "18-23", "beta")
    args = library.args(f"platforms_dir={platforms}")
    run_doit(*args, "segment=women", check=0)
    assert stamped_titles(library) == {"women/18-23/alpha"}
    second = run_doit(*args, check=0)
    assert executed_tasks(second.stdout) == ["youtube:beta"]
    assert stamped_titles(library) == {"women/18-23/alpha", "men/18-23/beta"}
    assert FAST in run_doit(*args, check=0).stdout


def test_the_partial_run_line_counts_the_selected_titles_only(library, tmp_path):
    """`N titles unchanged ... (not checked); M checked`: of the selection, not the library."""
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    args = library.args(f"platforms_dir={platforms}")
    for title in ("alpha", "beta", "gamma"):
        library.add("women", "18-23", title)
    library.add("men", "18-23", "delta")
    run_doit(*args, check=0)
    library.add("women", "18-23", "epsilon")          # a new title: the stamp does not prove it
    run = run_doit(*args, "segment=men", check=0)
    assert "1 title unchanged since the run of" in run.stdout, run.stdout
    assert "(not checked); 0 checked, 0 removed" in run.stdout, run.stdout


def test_one_changed_title_is_checked_alone_and_the_rest_stays_proven(stamped):
    """A partial run: the stamp proves every title but the one rewritten."""
    title = next(stamped.root.glob("*/*/*"))
    source = title / "final.mp4"
    shutil.copyfile(source, source.with_name("rewritten"))
    os.replace(source.with_name("rewritten"), source)    # same bytes, a new file
    run = run_doit(*stamped.all_args, check=0)
    key = title.relative_to(stamped.root).as_posix()
    others = len(list(stamped.root.glob("*/*/*"))) - 1
    assert f"{others} title{'s' * (others != 1)} unchanged since the run of" in run.stdout
    assert "1 checked, 0 removed" in run.stdout
    checked = {line.split(":")[1] for line in run.stdout.splitlines()
               if line.startswith(("-- ", ".  "))}
    assert checked == {title.name}, run.stdout
    assert stamp_holds(stamped.all_args), "the run proved that title again"
    registry = read_json(stamped.exports / "registry.json")
    assert {r["status"] for r in registry["exports"]} == {"exported"}
    assert key in stamped_titles(stamped)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "two-workers"])
def test_a_changed_title_starts_first_and_an_export_deleted_meanwhile_is_made(
        stamped, workers):
    """A render changed is known from its inputs: its tasks start before the stamp's other
    titles are proven (their 20 stats a title are taken meanwhile). An export of another
    title deleted since the stamp is still found, and made in the same run."""
    source = stamped.root / "women/18-23/alpha/final.mp4"
    shutil.copyfile(source, source.with_name("rewritten"))
    os.replace(source.with_name("rewritten"), source)    # same bytes, a new file
    (stamped.exports / "men/24-30/beta/tiktok.mp4").unlink()
    run = run_doit(*workers, *stamped.all_args, check=0)
    assert run.returncode == 0, run.stderr
    assert executed_tasks(run.stdout) == ["tiktok:beta"]
    order = [line[3:] for line in run.stdout.splitlines() if line.startswith(("-- ", ".  "))]
    # the library's order is men/ before women/: alpha first shows beta was found later
    assert sorted(order[:2]) == ["tiktok:alpha", "youtube:alpha"], run.stdout
    assert sorted(order[2:]) == ["tiktok:beta", "youtube:beta"], run.stdout
    assert "0 titles unchanged since the run of" in run.stdout
    assert "2 checked, 0 removed" in run.stdout
    assert (stamped.exports / "men/24-30/beta/tiktok.mp4").exists()
    assert FAST in run_doit(*stamped.all_args, check=0).stdout


def test_a_listed_task_made_by_copy_is_what_task_makes_of_the_same_arguments():
    """loader.like spares `doit list` doit's argument checks: every field as Task() sets it
    (IOConfig compared by its fields: it has no equality of its own)."""
    template = Task("platform:title", None, uptodate=[True], subtask_of="platform",
                    meta=PROVEN)
    copy = like(template, "youtube:t1", "YouTube export\nof t1", {"/r/t1/final.mp4"},
                "youtube")
    made = Task("youtube:t1", None, doc="YouTube export\nof t1", file_dep=["/r/t1/final.mp4"],
                uptodate=[True], subtask_of="youtube", meta=PROVEN)
    assert vars(copy).keys() == vars(made).keys()
    for field, value in vars(made).items():
        if field == "io":
            assert vars(copy.io) == vars(value)
        else:
            assert getattr(copy, field) == value, field


def test_status_reads_the_stamped_registry_and_says_the_same(stamped):
    assert stamp_holds(stamped.all_args)
    fast = run_doit("status", "--json", *stamped.all_args, check=0).stdout
    stamp = stamped.exports / STAMP_NAME
    stamp.rename(stamp.with_name("set-aside"))
    assert run_doit("status", "--json", *stamped.all_args, check=0).stdout == fast
    assert '"exported": 4' in fast


def test_status_with_a_partly_proven_library_says_what_a_full_check_says(stamped):
    (stamped.root / "men/24-30/beta/metadata.json").write_text('{"title": "Beta, edited"}',
                                                              encoding="utf-8")
    partial = run_doit("status", "--json", *stamped.all_args, check=0).stdout
    stamp = stamped.exports / STAMP_NAME
    stamp.rename(stamp.with_name("set-aside"))
    assert run_doit("status", "--json", *stamped.all_args, check=0).stdout == partial
    assert '"stale": 2' in partial and '"exported": 2' in partial


def test_a_task_added_to_dodo_is_not_skipped(stamped, tmp_path):
    dodo = tmp_path / "my_dodo.py"
    dodo.write_text(
        "from exporter.pipeline.plumbing.tasks import doit_config, task_exports  # noqa: F401\n"
        "from exporter.report.reporter import ExportReporter\n"
        "DOIT_CONFIG = doit_config(ExportReporter)\n"
        "DOIT_CONFIG['default_tasks'].append('hello')\n"
        "def task_hello():\n"
        "    return {'actions': ['echo hello > hello.txt'], 'targets': ['hello.txt'],\n"
        "            'doc': 'a task of our own'}\n")
    assert stamp_holds(stamped.all_args)
    listing = run_doit("-f", dodo, "list", "--status", *stamped.all_args, check=0).stdout
    assert "R hello" in listing and "U youtube:alpha" in listing
    run = run_doit("-f", dodo, *stamped.all_args, check=0)
    assert FAST not in run.stdout and (tmp_path / "hello.txt").exists()


def test_doit_run_outside_the_repository_says_it_lacks_the_projects_settings(stamped, tmp_path):
    """doit reads its loader and commands from pyproject.toml in the current directory:
    `doit -f .../dodo.py` elsewhere checks every export in full (the stamp unread) and has
    no `doit status`. The run still exports right, and says why it is slow."""
    elsewhere = run_doit("-f", REPO / "dodo.py", *stamped.all_args, cwd=tmp_path, check=0)
    assert executed_tasks(elsewhere.stdout) == [] and FAST not in elsewhere.stdout
    assert elsewhere.stderr.splitlines() == [WITHOUT_PROJECT_SETTINGS]
    at_root = run_doit(*stamped.all_args, check=0)
    assert "reelexport's settings" not in at_root.stderr


def test_a_run_of_some_platforms_proves_their_exports_and_takes_the_fast_path(
        library, tmp_path):
    """`doit platforms=youtube` every day: its exports are proven one platform at a time,
    so the next such run is a no-op; the other platforms are checked when selected."""
    platforms = small_platforms(tmp_path / "platforms")
    library.add("women", "18-23", "alpha")
    library.add("men", "24-30", "beta", shape="landscape")
    every_platform = library.args(f"platforms_dir={platforms}")
    youtube = [*every_platform, "platforms=youtube"]
    first = run_doit(*youtube, check=0)
    assert sorted(executed_tasks(first.stdout)) == ["youtube:alpha", "youtube:beta"]
    assert stamped_platforms(library) == {"women/18-23/alpha": ["youtube"],
                                          "men/24-30/beta": ["youtube"]}
    second = run_doit(*youtube, check=0)
    assert FAST in second.stdout and executed_tasks(second.stdout) == []
    rows = {(r["platform"], r["title_id"]): r["status"]
            for r in read_json(library.exports / "registry.json")["exports"]}
    assert rows[("tiktok", "alpha")] == "pending", "the rows of the others stay true"

    both = run_doit(*every_platform, check=0)
    assert FAST not in both.stdout
    assert sorted(executed_tasks(both.stdout)) == ["tiktok:alpha", "tiktok:beta"]
    assert FAST in run_doit(*every_platform, check=0).stdout
    assert FAST in run_doit(*youtube, check=0).stdout

    # a changed source: that title's exports are checked again, on every platform
    (library.root / "women/18-23/alpha/metadata.json").write_text('{"title": "New"}')
    third = run_doit(*youtube, check=0)
    assert executed_tasks(third.stdout) == ["youtube:alpha"]
    assert stamped_platforms(library)["women/18-23/alpha"] == ["youtube"]
    assert FAST not in run_doit(*every_platform, check=0).stdout


def test_a_killed_runs_temporaries_in_the_root_are_removed_by_the_next_run(stamped):
    """kill -9 while the gallery or registry was being written leaves its temporary; the
    next run, even a no-op, removes it once it holds the tree."""
    temporaries = [stamped.exports / ".index.html.k1ll3d.tmp",
                   stamped.exports / ".registry.json.k1ll3d.tmp"]
    for temporary in temporaries:
        temporary.write_text("half written")
    run = run_doit(*stamped.all_args, check=0)
    assert FAST in run.stdout
    assert not any(temporary.exists() for temporary in temporaries)


def test_title_outputs_shared_with_a_forked_child_are_the_same_proof(tmp_path):
    """From FORK_FROM titles on, a forked child shares the stats (SharedDigests): the
    digests are the ones one process computes, whenever this process joins in and even if
    the child gives nothing; a write in place in the first or the last title shows."""
    import time

    from exporter.pipeline.export.output_states import (
        FORK_FROM,
        SharedDigests,
        outputs_digests,
        title_outputs,
    )
    keys = [f"s/a/t{index:05d}" for index in range(FORK_FROM + 10)]
    for key in keys:
        (tmp_path / key).mkdir(parents=True)
        (tmp_path / key / "youtube.mp4").write_bytes(b"video")
    names = ["youtube.mp4", "youtube.export.json"]
    alone = outputs_digests(str(tmp_path), keys, names)
    assert title_outputs(tmp_path, keys, names) == alone
    late = SharedDigests.start(str(tmp_path), keys, names)
    time.sleep(0.2)                     # the child may have done them all
    assert late.finish() == alone
    failed = SharedDigests.start(str(tmp_path), keys, names)
    failed.wait = lambda: None          # as when the child dies: its part is taken here
    assert failed.finish() == alone
    for written in (keys[0], keys[-1]):
        video = tmp_path / written / "youtube.mp4"
        with open(video, "r+b") as handle:      # in place: the directory does not change
            handle.write(b"VIDEO")
        os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns - 10**9))
    again = title_outputs(tmp_path, keys, names)
    assert [key for key in keys if again[key] != alone[key]] == [keys[0], keys[-1]]


def test_the_stamps_output_states_taken_early_in_a_child_are_the_same_proof(tmp_path):
    """A large library's output states are taken from the moment the command line names
    its exports root (EarlyOutputs, of the files the stamp names), by a child and then this
    process too: the same digests as one process takes, for the stamp's titles only, once;
    asked for other titles or files, it gives nothing (they are taken again). A write in
    place shows at either end."""
    from exporter.pipeline.export.output_states import FORK_FROM, EarlyOutputs, outputs_digests
    exports = tmp_path / "exports"
    keys = [f"s/a/t{index:05d}" for index in range(FORK_FROM)]
    for key in keys[::7]:
        (exports / key).mkdir(parents=True)
        (exports / key / "youtube.mp4").write_bytes(b"video")
    names = ["youtube.mp4", "youtube.export.json"]
    (exports / STAMP_NAME).write_text(json.dumps({"titles": {key: [] for key in keys},
                                                  "file_names": names}))
    early = EarlyOutputs(exports)
    before = early.digests(keys, names)
    assert before == outputs_digests(str(exports), keys, names)
    assert early.digests(keys, names) is None, "the child's digests are given once"
    written = [keys[7], keys[(len(keys) - 1) // 7 * 7]]     # near the front and the back
    for key in written:
        video = exports / key / "youtube.mp4"
        state = video.stat()
        with open(video, "r+b") as handle:
            handle.write(b"VIDEO")
        os.utime(video, ns=(state.st_atime_ns, state.st_mtime_ns))
    after = EarlyOutputs(exports, names).digests(keys, names)
    assert [key for key in keys if after[key] != before[key]] == written
    other = EarlyOutputs(exports)
    assert other.digests(keys[1:], names) is None
    assert EarlyOutputs(exports).digests(keys, ["other.mp4"]) is None


def test_the_states_begun_at_import_are_used_only_for_their_root_and_files(tmp_path,
                                                                            monkeypatch):
    """The loader begins the stamp's states from the command line alone (a guess: the
    exports root said, the files the stamp names); the build takes them only when its
    settings and platforms agree, and stops the child otherwise."""
    from exporter.pipeline.export import output_states
    from exporter.pipeline.plumbing.arguments import exports_to_prove
    exports = tmp_path / "exports"
    (exports / "s/a/t").mkdir(parents=True)
    names = ["youtube.mp4"]
    (exports / STAMP_NAME).write_text(json.dumps({"titles": {"s/a/t": []},
                                                  "file_names": names}))
    monkeypatch.setattr(output_states, "FORK_FROM", 1)
    monkeypatch.setattr(output_states, "BEGUN", [])
    monkeypatch.chdir(tmp_path)
    assert exports_to_prove(["/venv/bin/doit", "-n", "8", "exports=exports"], {}) == "exports"
    assert exports_to_prove(["doit", "list", "--status"], {"REELEXPORT_EXPORTS": "e"}) == "e"
    assert exports_to_prove(["doit", "status", "exports=exports"], {}) is None
    assert exports_to_prove(["doit", "exports=s3://bucket/prefix"], {}) is None
    assert exports_to_prove(["pytest", "-n", "2"], {}) is None
    assert exports_to_prove(["doit", "--version"], {}) is None

    output_states.begin_early("exports")
    begun = output_states.BEGUN[0]
    assert begun.shared is not None, "a child is working"
    assert output_states.early_outputs(exports, names) is begun
    assert begun.digests(["s/a/t"], names) == output_states.outputs_digests(
        str(exports), ["s/a/t"], names)
    output_states.begin_early("exports")
    begun = output_states.BEGUN[0]
    taken = output_states.early_outputs(exports, ["tiktok.mp4"])     # other platforms
    assert taken is not begun and begun.shared is None, "the guessed child was stopped"
    assert taken.digests(["s/a/t"], ["tiktok.mp4"]) == output_states.outputs_digests(
        str(exports), ["s/a/t"], ["tiktok.mp4"])
    assert output_states.BEGUN == []
