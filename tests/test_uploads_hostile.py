"""`doit uploaded` and `doit history` against hostile arguments, concurrency, stale and
failed exports, and a history that was lost, damaged or replaced (issue 20)."""

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import DOIT, doit_env, read_json, run_doit, small_platforms

from exporter.pipeline.plumbing.lock import acquire, release
from exporter.report.history import UPLOADED_HOLDER

pytestmark = pytest.mark.once

REPO = Path(__file__).resolve().parent.parent


def make_two(library):
    """Two titles, youtube and tiktok, exported."""
    platforms = small_platforms(library.root.parent / "platforms")
    library.add("women", "18-23", "t1")
    library.add("men", "24-30", "t2")
    args = library.args(f"platforms_dir={platforms}")
    run_doit(*args, check=0)
    return {"all_args": args}


@pytest.fixture
def made(restored_library):
    """(library, doit args): make_two's library, restored for each test."""
    library = restored_library("uploads-hostile", make_two)
    return library, library.all_args


def upload_of(library, title, platform="youtube"):
    registry = read_json(library.exports / "registry.json")
    row = next(r for r in registry["exports"]
               if (r["title_id"], r["platform"]) == (title, platform))
    return row["uploaded"], row["upload_outdated"]


def one_line(text):
    assert "Traceback" not in text, text
    assert len(text.strip().splitlines()) == 1, text
    return text


# ---- the command line -------------------------------------------------------------------------

def test_a_url_holding_a_query_is_the_urls_value_in_either_form(made):
    library, args = made
    url = "https://www.facebook.com/watch/?v=123"
    run_doit("uploaded", "youtube:t1", "--id", "x", "--url", url, *args, check=0)
    assert upload_of(library, "t1")[0]["url"] == url
    run_doit("uploaded", "tiktok:t1", "--id", "y", f"--url={url}&a=b", *args, check=0)
    assert upload_of(library, "t1", "tiktok")[0]["url"] == url + "&a=b"
    # a URL without --url is an argument the command refuses, not a variable dropped
    refused = run_doit("uploaded", "youtube:t2", "--id", "z", url, *args, check=3)
    assert "doit uploaded takes one export" in one_line(refused.stderr)


def test_an_empty_argument_is_one_line(made):
    library, args = made
    refused = run_doit("", check=3)
    assert "argument 1 is empty" in one_line(refused.stderr)
    refused = run_doit("uploaded", "youtube:t1", "--id", "x", "--url", "", *args, check=1)
    assert "--url is empty" in one_line(refused.stderr)
    refused = run_doit("history", "t1", "", *args, check=3)
    assert "argument 3 is empty" in one_line(refused.stderr)
    assert upload_of(library, "t1")[0] is None


# ---- four uploads at once ------------------------------------------------------------------

EXPORTS = ("youtube:t1", "tiktok:t1", "youtube:t2", "tiktok:t2")


def start_uploads(args):
    return [subprocess.Popen([str(DOIT), "uploaded", name, "--id", f"id-{i}", *args],
                             cwd=REPO, env=doit_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for i, name in enumerate(EXPORTS)]


def finished(processes):
    return [(p.wait(timeout=300), *p.communicate()) for p in processes]


def registry_uploads(library):
    registry = read_json(library.exports / "registry.json")
    return {f"{r['platform']}:{r['title_id']}": r["uploaded"]["id"]
            for r in registry["exports"] if r["uploaded"]}


def test_four_uploads_at_once_all_land_in_the_registry(made):
    library, args = made
    results = finished(start_uploads(args))
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results
    for _, out, _ in results:
        assert "registry.json updated" in out, results
    assert registry_uploads(library) == {name: f"id-{i}" for i, name in enumerate(EXPORTS)}
    page = (library.exports / "index.html").read_text()
    assert all(f"id-{i}" in page for i in range(4))


def recorded_uploads(library):
    lines = (library.exports / "history.jsonl").read_text().splitlines()
    return sum(json.loads(line)["event"] == "uploaded" for line in lines)


def test_uploads_wait_for_one_another_but_not_for_a_run(made):
    library, args = made
    lock = library.exports / ".lock"
    # another `doit uploaded` holds the tree: each call records, waits, then refreshes
    fd = acquire(lock, by=UPLOADED_HOLDER)
    try:
        processes = start_uploads(args)
        deadline = time.monotonic() + 120
        while recorded_uploads(library) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        assert all(p.poll() is None for p in processes), "they wait for the lock"
    finally:
        release(fd)
    results = finished(processes)
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results
    assert not any("a run holds" in out for _, out, _ in results), results
    assert registry_uploads(library) == {name: f"id-{i}" for i, name in enumerate(EXPORTS)}
    # a run holds it: recorded, refused at once with the run's message
    fd = acquire(lock)
    try:
        started = time.monotonic()
        result = run_doit("uploaded", "youtube:t1", "--id", "during-run", *args, check=0)
        assert time.monotonic() - started < 20
    finally:
        release(fd)
    assert "a run holds the tree" in result.stdout
    assert registry_uploads(library)["youtube:t1"] == "id-0"


# ---- stale and failed exports --------------------------------------------------------------

def test_a_stale_upload_is_recorded_with_a_warning_and_shown_outdated(made):
    library, args = made
    metadata = library.root / "women/18-23/t1/metadata.json"
    metadata.write_text(json.dumps({"title": "A new title", "hashtags": ["x"]}))
    result = run_doit("uploaded", "youtube:t1", "--id", "old", *args, check=0)
    assert ("youtube:t1 was uploaded stale (metadata changed since it was made)"
            in one_line(result.stderr))
    uploaded, outdated = upload_of(library, "t1")
    assert uploaded["id"] == "old" and outdated is True
    history = run_doit("history", "youtube:t1", *args, check=0).stdout
    assert "(stale: metadata changed since it was made)" in history.splitlines()[0]
    # an up-to-date export says nothing
    result = run_doit("uploaded", "youtube:t2", "--id", "fresh", *args, check=0)
    assert result.stderr == ""
    assert upload_of(library, "t2") [1] is False


def test_an_upload_of_a_failed_export_is_refused(made):
    library, args = made
    (library.root / "women/18-23/t1/final.mp4").write_bytes(b"not a video")
    run_doit(*args, check=2)
    assert (library.exports / "women/18-23/t1/youtube.mp4").exists(), "the old file stays"
    refused = run_doit("uploaded", "youtube:t1", "--id", "x", *args, check=1)
    assert "youtube:t1: its last export failed (" in one_line(refused.stderr)
    assert upload_of(library, "t1")[0] is None


# ---- the history lost, damaged, or in the way -------------------------------------------------

def test_a_deleted_history_is_said_not_dropped(made):
    library, args = made
    run_doit("uploaded", "youtube:t1", "--id", "p1", *args, check=0)
    history = library.exports / "history.jsonl"
    count = len(history.read_text().splitlines())
    history.unlink()
    expected = f"{history} is missing, but {count} events had been recorded in it"
    for command in (["history", "t1"], ["status", "--check"],
                    ["uploaded", "youtube:t2", "--id", "p2"]):
        result = run_doit(*command, *args)
        assert result.returncode != 0, command
        assert expected in one_line(result.stderr), command
    assert not history.exists(), "nothing recorded on top of a lost history"
    # the documented way to start again
    (library.exports / ".history-index.json").unlink()
    run_doit("uploaded", "youtube:t2", "--id", "p2", *args, check=0)
    assert upload_of(library, "t2")[0]["id"] == "p2"


def test_a_history_line_of_the_wrong_shape_is_one_line_naming_it(made):
    library, args = made
    history = library.exports / "history.jsonl"
    count = len(history.read_text().splitlines())
    with history.open("a") as file:
        file.write('{"event": "made", "export": "youtube:t1"}\n{"a": 1}\n')
    result = run_doit("history", "t1", *args, check=0)
    assert (f'{history}:{count + 1}: no "at": line skipped; 2 lines skipped in all'
            in one_line(result.stderr))
    assert "youtube:t1" in result.stdout


@pytest.mark.parametrize("name", ["history.jsonl", ".history-index.json"])
def test_a_directory_in_place_of_the_history_or_its_index_is_one_line(made, name):
    library, args = made
    path = library.exports / name
    before = library.exports.joinpath("history.jsonl").read_bytes()
    path.unlink()
    path.mkdir()
    for command in (["history", "t1"], ["uploaded", "youtube:t1", "--id", "x"]):
        result = run_doit(*command, *args)
        assert result.returncode != 0, command
        assert str(path) in one_line(result.stderr), command
    path.rmdir()
    if name == "history.jsonl":
        path.write_bytes(before)
    else:
        assert library.exports.joinpath("history.jsonl").read_bytes() == before, "kept"
