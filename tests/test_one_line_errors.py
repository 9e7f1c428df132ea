"""Issues 20 and 25: causes that were tracebacks are one line naming the file (or variable)
and the cause, the run exits non-zero, the exports made are kept and the rest of the batch
finishes: metadata.json that json cannot read, a directory in place of a file of the
exports root, a read-only exports root, a full disk, a malformed doit variable."""

import os
import shutil
import subprocess
import time

import pytest
from conftest import (
    doit_env,
    executed_tasks,
    exported_videos,
    read_json,
    run_doit,
    small_platforms,
)

from test_hostile_inputs import args_for, statuses

from exporter.model.settings import SettingsError, resolve_settings
from exporter.pipeline.plumbing.db import set_aside_unreadable_db

# bookkeeping files, variables and the disk, not ffmpeg: the first pass only
pytestmark = pytest.mark.once


@pytest.fixture
def platforms(tmp_path):
    return small_platforms(tmp_path / "platforms", names=("youtube",))


def error_lines(stderr):
    """The lines of a run's standard error that are not progress."""
    return [line for line in stderr.splitlines() if line and not line.startswith("progress")]


def assert_no_traceback(result):
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def video_identities(exports):
    """(inode, mtime) of each export's video: unchanged means not made again."""
    return {str(path): (path.stat().st_ino, path.stat().st_mtime_ns)
            for path in exported_videos(exports)}


# ---- metadata.json json cannot read -------------------------------------------------------

UNREADABLE_JSON = {
    "a 5,000-digit number": ('{"title": "t", "views": ' + "9" * 5000 + "}",
                             ("metadata.json: cannot be read as JSON: a number has more "
                              "than 4300 digits")),
    "nesting 100,000 deep": ('{"title": "t", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
                             "metadata.json: cannot be read as JSON: nested too deeply"),
}


@pytest.mark.parametrize("case", UNREADABLE_JSON)
def test_metadata_json_could_not_read_fails_its_title_alone(library, platforms, case):
    text, cause = UNREADABLE_JSON[case]
    bad = library.add("women", "18-23", "bad")
    library.add("women", "18-23", "good")
    (bad / "metadata.json").write_text(text, encoding="utf-8")
    result = run_doit(*args_for(library, platforms))
    assert_no_traceback(result)
    assert result.returncode == 2, result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("FAILED")]
    assert failed == [f"FAILED youtube:bad (women/18-23/bad): {cause}"]
    assert statuses(library.exports) == {("bad", "youtube"): "failed",
                                         ("good", "youtube"): "exported"}
    error = read_json(library.exports / "women/18-23/bad/youtube.error.json")
    assert error["cause"] == cause and error["error_type"] == "SourceError"
    again = run_doit(*args_for(library, platforms))      # a bad source stays failed, said so
    assert again.returncode == 2 and f"{cause} (unchanged since" in again.stderr


# ---- a directory in place of a file of the exports root ------------------------------------

@pytest.mark.parametrize("name", ["registry.json", ".up-to-date.json", "index.html"])
def test_a_directory_in_place_of_a_file_of_the_root_is_one_line(library, platforms, name):
    library.add("women", "18-23", "alpha")
    library.add("women", "18-23", "beta")
    in_place = library.exports / name
    in_place.mkdir(parents=True)
    result = run_doit(*args_for(library, platforms))
    assert_no_traceback(result)
    assert result.returncode == 2, result.stderr
    assert error_lines(result.stderr) == [
        (f"reelexport: cannot write {in_place}: Is a directory; the exports are kept, the "
         "next run writes it again")]
    assert len(exported_videos(library.exports)) == 2, "the exports made are kept"
    made = video_identities(library.exports)
    in_place.rmdir()
    again = run_doit(*args_for(library, platforms), check=0)
    assert in_place.is_file()
    assert executed_tasks(again.stdout) == [] and video_identities(library.exports) == made
    assert set(statuses(library.exports).values()) == {"exported"}


# ---- a read-only exports root, a full disk -------------------------------------------------

def mount_tmpfs(directory, options):
    """Mount a tmpfs at `directory` (a real file system of its own, so that it can be full
    or read-only for root too); skip the test, saying why, where mounting is not allowed."""
    directory.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount"):
        pytest.skip("no mount command: a full or read-only file system cannot be made")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here (needs root with CAP_SYS_ADMIN): "
                    f"{mounted.stderr.strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    """mount(options) -> a fresh tmpfs directory; unmounted after the test."""
    mounted = []

    def mount(options="size=64m"):
        directory = tmp_path / f"tmpfs-{len(mounted)}"
        mount_tmpfs(directory, options)
        mounted.append(directory)
        return directory
    yield mount
    for directory in mounted:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def remount(directory, options):
    subprocess.run(["mount", "-o", f"remount,{options}", str(directory)], check=True)


def fill(directory):
    """Write files until the file system is full (ENOSPC): what a filling disk does."""
    for name, chunk in (("filler", 65536), ("filler-2", 512)):     # then the last block
        descriptor = os.open(directory / name, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(descriptor, b"\0" * chunk)
        except OSError as error:
            assert error.errno == 28, error
        finally:
            os.close(descriptor)
    assert os.statvfs(directory).f_bavail == 0, "the kernel's ENOSPC, not a mock"


def free(directory):
    for name in ("filler", "filler-2"):
        (directory / name).unlink()


def test_a_read_only_exports_root_is_one_line(library, platforms, tmpfs):
    library.add("women", "18-23", "alpha")
    library.exports = tmpfs()
    run_doit(*args_for(library, platforms), check=0)
    remount(library.exports, "ro")
    result = run_doit(*args_for(library, platforms))
    assert_no_traceback(result)
    assert result.returncode == 3
    assert error_lines(result.stderr) == [
        (f"reelexport: refused: the exports root cannot be written: {library.exports}/.lock: "
         "Read-only file system")]
    listing = run_doit("list", "--status", *args_for(library, platforms), check=0)
    assert "U youtube:alpha" in listing.stdout          # reading needs no write


@pytest.mark.parametrize("command", [(), ("list", "--status")])
def test_a_fresh_read_only_exports_root_is_one_line(library, platforms, tmpfs, command):
    library.add("women", "18-23", "alpha")
    library.exports = tmpfs("size=1m,ro")
    result = run_doit(*command, *args_for(library, platforms))
    assert_no_traceback(result)
    assert result.returncode == 3
    assert error_lines(result.stderr) == [
        (f"ERROR: {library.exports}/.doit.db: doit's dependency DB cannot be created: the "
         f"exports root {library.exports} is a read-only file system")]


def test_a_full_disk_at_the_end_of_a_run_is_one_line_and_keeps_the_exports(
        library, platforms, tmpfs):
    """doit's DB and the registry cannot be saved: each is one line, the run exits 2, the
    exports are kept and the next run (with room again) makes nothing anew."""
    for title_id in ("alpha", "beta", "gamma", "delta"):
        library.add("women", "18-23", title_id)
    library.exports = tmpfs("size=32m")
    args = args_for(library, platforms)
    run_doit(*args, check=0)
    made = video_identities(library.exports)
    run_doit("forget", *args, check=0)       # every export runs again (and is kept)
    fill(library.exports)
    result = run_doit(*args)
    assert_no_traceback(result)
    assert result.returncode == 2, result.stderr
    assert len(executed_tasks(result.stdout)) == 4, "the batch is not cut short"
    lines = error_lines(result.stderr)
    assert lines[0] == (f"reelexport: doit's dependency DB {library.exports}/.doit.db not "
                        "saved: database or disk is full; the exports made are kept, the next "
                        "run checks them again (no re-encoding)")
    assert all(line.startswith("reelexport: ") and "No space left on device" in line
               for line in lines[1:]), lines
    assert video_identities(library.exports) == made
    free(library.exports)
    run_doit(*args, check=0)
    assert video_identities(library.exports) == made, "kept, never encoded again"
    assert set(statuses(library.exports).values()) == {"exported"}


def test_a_full_disk_when_only_the_registry_changes_is_one_line(library, platforms, tmpfs):
    for title_id in ("alpha", "beta"):
        library.add("women", "18-23", title_id)
    library.exports = tmpfs("size=32m")
    args = args_for(library, platforms)
    run_doit(*args, check=0)
    shutil.rmtree(library.root / "women/18-23/beta")        # its row becomes "removed"
    fill(library.exports)
    result = run_doit(*args)
    assert_no_traceback(result)
    assert result.returncode == 2, result.stderr
    assert (f"reelexport: cannot write {library.exports}/registry.json: No space left on "
            "device; the exports are kept, the next run writes it again") in result.stderr
    assert "registry: not written" in result.stdout
    free(library.exports)
    run_doit(*args, check=0)
    assert statuses(library.exports) == {("alpha", "youtube"): "exported",
                                         ("beta", "youtube"): "removed"}


# ---- doit's DB set aside -------------------------------------------------------------------

def test_db_set_asides_within_one_second_never_overwrite_each_other(tmp_path):
    path = tmp_path / ".doit.db"
    while time.time() % 1 > 0.5:        # start early in a second: all three fall within it
        time.sleep(0.05)
    moved = []
    for index in range(3):
        path.write_bytes(f"not a database {index}".encode() * 100)
        moved.append(set_aside_unreadable_db(path))
    assert len(set(moved)) == 3 and all(p.parent == tmp_path for p in moved)
    assert sorted(p.read_bytes()[:16] for p in moved) == [
        f"not a database {index}".encode()[:16] for index in range(3)]
    assert not path.exists()


# ---- doit variables ------------------------------------------------------------------------

BAD_VARIABLES = {
    "retry=yes": "ERROR: retry=yes: retry= takes only 'failed' (retry=failed tries again the "
                 "exports that failed on unchanged inputs)",
    "attempts=abc": "ERROR: attempts=abc: not a whole number of tries (attempts=3: 1 or more)",
    "backoff=soon": "ERROR: backoff=soon: not a number of seconds, 0 or more (backoff=2: the "
                    "wait before the 2nd try, doubled for each further one)",
    "preset=fastest": "ERROR: preset=fastest: not an x264 preset; preset= takes one of "
                      "ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, "
                      "veryslow",
    "platform=youtube": "ERROR: unknown variable platform=: the variables are renders=, "
                        "exports=, platforms_dir=, segment=, age=, platforms=, preset=, "
                        "ffmpeg=, attempts=, backoff=, retry=, cluster=, tls_ca=, "
                        "tls_cert=, tls_key=, cluster_insecure=, c2pa_cert=, c2pa_key=, "
                        "c2pa_alg=, c2pa_tsa=, settle=, poll= (docs/usage.md)",
}


@pytest.mark.parametrize("variable", BAD_VARIABLES)
@pytest.mark.parametrize("command", [(), ("list", "--status")])
def test_a_malformed_or_unknown_variable_is_one_line(library, platforms, variable, command):
    library.add("women", "18-23", "alpha")
    result = run_doit(*command, *args_for(library, platforms, variable))
    assert_no_traceback(result)
    assert result.returncode == 3
    assert error_lines(result.stderr) == [BAD_VARIABLES[variable]]
    assert exported_videos(library.exports) == []


def test_a_malformed_environment_variable_is_named(library, platforms):
    library.add("women", "18-23", "alpha")
    result = run_doit(*args_for(library, platforms),
                      env=doit_env(REELEXPORT_ATTEMPTS="three"))
    assert_no_traceback(result)
    assert result.returncode == 3
    assert error_lines(result.stderr) == [
        "ERROR: REELEXPORT_ATTEMPTS=three: not a whole number of tries (attempts=3: 1 or more)"]


def settings_of(variables, environ=None):
    return resolve_settings(lambda name, default=None: variables.get(name, default),
                            environ or {}, variables)


def test_the_variables_the_settings_take():
    settings = settings_of({"retry": "failed", "attempts": "5", "backoff": "0.5",
                            "preset": "veryfast", "settle": "2"})
    assert (settings.retry_failed, settings.attempts, settings.backoff_s, settings.preset) \
        == (True, 5, 0.5, "veryfast")
    assert settings_of({}).attempts == 3 and not settings_of({"retry": ""}).retry_failed
    # an argument that is not a NAME=VALUE a user types (a URL's query) is not refused here
    assert settings_of({"https://www.facebook.com/watch/?v": "123"}).attempts == 3
    with pytest.raises(SettingsError, match="^unknown variables age_=, segmnt=: "):
        settings_of({"segmnt": "women", "age_": "18-23"})
    with pytest.raises(SettingsError, match=r"^attempts=1\.5: not a whole number"):
        settings_of({"attempts": "1.5"})
    with pytest.raises(SettingsError, match="^REELEXPORT_BACKOFF_S=nan: not a number"):
        settings_of({}, {"REELEXPORT_BACKOFF_S": "nan"})

