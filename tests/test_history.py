"""The distribution history: the append-only store, remake causes, uploads, and the
registry, status, gallery and `doit history` built on it."""

import hashlib
import json
import re
import subprocess
import sys

import jsonschema
import pytest
from conftest import assert_conforms, load_yaml, read_json, run_doit, small_platforms

from exporter.model.history import (
    KINDS,
    HistoryError,
    append_events,
    distribution_facts,
    distribution_index,
    event,
    history_path,
    read_events,
)
from exporter.model.records import remake_causes
from exporter.model.spec import load_schema
from exporter.model.uploads import UploadRefused, check_upload_fields
from exporter.report.gallery import content_security_policy, upload_html

# The tool's bookkeeping, not ffmpeg: run once, in the first pass (README: Test).
pytestmark = pytest.mark.once

# ---- the store ------------------------------------------------------------------------------


def test_every_event_kind_is_appended_and_read_back_in_order(tmp_path):
    append_events(tmp_path, [event(kind, "youtube:a", n=i) for i, kind in enumerate(KINDS)])
    events, state = read_events(tmp_path)
    assert [(e["event"], e["n"]) for e in events] == [(k, i) for i, k in enumerate(KINDS)]
    assert state is not None
    with pytest.raises(ValueError):
        event("deleted", "youtube:a")


def test_a_line_cut_short_by_a_crash_loses_only_itself(tmp_path, caplog):
    append_events(tmp_path, [event("made", "youtube:a", sha256="1" * 64)])
    whole = json.dumps(event("made", "youtube:a", sha256="2" * 64))
    with open(history_path(tmp_path), "a") as file:     # a crash mid-append
        file.write(whole[: len(whole) // 2])
    assert [e["sha256"] for e in read_events(tmp_path)[0]] == ["1" * 64]
    assert "history.jsonl:2: not JSON (an append cut short by a crash?): line skipped" in caplog.text
    append_events(tmp_path, [event("uploaded", "youtube:a", sha256="1" * 64, id="p")])
    events = read_events(tmp_path)[0]
    assert [e["event"] for e in events] == ["made", "uploaded"], "the next append is whole"


APPENDER = """
import sys
from pathlib import Path
from exporter.model.history import append_events, event
for i in range(int(sys.argv[3])):
    append_events(Path(sys.argv[1]), [event("uploaded", sys.argv[2], id=str(i), pad="x" * 3000)])
"""


def test_two_processes_appending_at_once_both_land_whole(tmp_path):
    count = 300      # lines of ~3 kB: larger than a pipe's atomic write, so locking matters
    appenders = [subprocess.Popen([sys.executable, "-c", APPENDER, str(tmp_path), name,
                                   str(count)]) for name in ("youtube:a", "tiktok:b")]
    assert [process.wait(timeout=120) for process in appenders] == [0, 0]
    events = read_events(tmp_path)[0]
    lines = history_path(tmp_path).read_text().splitlines()
    assert len(lines) == len(events) == 2 * count
    for name in ("youtube:a", "tiktok:b"):
        assert [e["id"] for e in events if e["export"] == name] == [str(i) for i in range(count)]


def test_the_registry_index_reads_only_what_was_appended_and_agrees_with_a_full_read(tmp_path):
    append_events(tmp_path, [event("made", "youtube:a", sha256="1"),
                             event("made", "youtube:a", sha256="1"),      # kept: one version
                             event("uploaded", "youtube:a", sha256="1", id="p1", url=None)])
    index, _ = distribution_index(tmp_path)
    offset = read_json(tmp_path / ".history-index.json")["offset"]
    assert offset == history_path(tmp_path).stat().st_size
    append_events(tmp_path, [event("made", "youtube:a", sha256="2"),
                             event("uploaded", "youtube:a", sha256="2", id="p2", url="u"),
                             event("failed", "tiktok:b", cause="x")])
    with open(history_path(tmp_path), "a") as file:
        file.write('{"event": "made", "export": "tiktok:b", "sha')     # still being written
    index, _ = distribution_index(tmp_path)
    full = {}
    for item in read_events(tmp_path)[0]:
        full.setdefault(item["export"], []).append(item)
    for export in ("youtube:a", "tiktok:b"):
        assert (distribution_facts(index.get(export, []), "2")
                == distribution_facts(full.get(export, []), "2"))
    assert distribution_facts(index["youtube:a"], "2") == {
        "versions": 2, "upload_outdated": False,
        "uploaded": {"at": index["youtube:a"][-1]["at"], "id": "p2", "url": "u", "sha256": "2"}}
    history_path(tmp_path).unlink()     # the events the index read are gone: said, not dropped
    append_events(tmp_path, [event("made", "youtube:a", sha256="9")])
    with pytest.raises(HistoryError, match="was replaced .*, but 6 events had been recorded"):
        distribution_index(tmp_path)
    (tmp_path / ".history-index.json").unlink()     # a new history, said so: read from its start
    assert distribution_index(tmp_path)[0] == {"youtube:a": [{"event": "made", "sha256": "9"}]}


# ---- pure logic -----------------------------------------------------------------------------

INPUTS = {"source_sha256": "s1", "metadata_sha256": "m1", "thumbnail_sha256": None,
          "encode_key": "e1", "metadata_rules_key": "r1"}
SIDECAR = {"inputs": INPUTS, "spec": {"sha256": "spec1"},
           "encode": {"ffmpeg_version": "ffmpeg 5.1", "tool_version": "0.1"},
           "output": {"sha256": "v1"}}


def causes(previous=SIDECAR, output_missing=False, retried=False, spec="spec1",
           ffmpeg="ffmpeg 5.1", **changed):
    return remake_causes(previous, {**INPUTS, **changed}, spec_sha256=spec,
                         ffmpeg_version=ffmpeg, tool_version="0.1",
                         output_missing=output_missing, retried=retried)


def test_remake_causes_name_what_changed():
    assert causes(previous=None) == ["new"]
    assert causes(previous=None, retried=True) == ["retry"]
    assert causes() == ["forced"]
    assert causes(source_sha256="s2") == ["source changed"]
    assert causes(metadata_sha256="m2") == ["metadata changed"]
    assert causes(thumbnail_sha256="t2") == ["thumbnail changed"]
    assert causes(spec="spec2", encode_key="e2") == ["spec changed"]
    assert causes(ffmpeg="ffmpeg 7.1", encode_key="e2") == ["tool changed"]
    assert causes(encode_key="e2") == ["settings changed"]     # preset=
    assert causes(output_missing=True) == ["output missing"]
    assert causes(retried=True) == ["retry"]
    assert causes(source_sha256="s2", metadata_sha256="m2") == ["source changed",
                                                                "metadata changed"]


def test_distribution_facts_count_versions_and_see_an_outdated_upload():
    made = [{"event": "made", "sha256": sha, "at": "t"} for sha in ("a", "b", "b")]
    upload = {"event": "uploaded", "sha256": "a", "at": "t2", "id": "p", "url": None}
    assert distribution_facts(made, "b") == {"versions": 2, "uploaded": None,
                                             "upload_outdated": False}
    facts = distribution_facts([*made, upload], "b")
    assert facts["uploaded"] == {"at": "t2", "id": "p", "url": None, "sha256": "a"}
    assert facts["upload_outdated"] is True
    assert distribution_facts([*made, upload], "a")["upload_outdated"] is False


# ---- the commands, as a user runs them --------------------------------------------------------

def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def history(library, name, *extra):
    result = run_doit("history", name, f"exports={library.exports}", *extra, check=0)
    return json.loads(result.stdout)["events"] if "--json" in extra else result.stdout


def row_of(library, title, platform="youtube"):
    registry = read_json(library.exports / "registry.json")
    jsonschema.validate(registry, load_schema("registry"))
    return next(r for r in registry["exports"]
                if (r["title_id"], r["platform"]) == (title, platform))


def test_history_records_makes_uploads_failures_cleans_and_forgets(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    library.add("women", "18-23", "alpha")
    args = library.args(f"platforms_dir={platforms}")
    run_doit(*args, check=0)
    video = library.exports / "women/18-23/alpha/youtube.mp4"
    assert_conforms(video, load_yaml(platforms / "youtube.yaml"), 1.0)
    first = sha256(video)
    [made] = history(library, "youtube:alpha", "--json")
    assert (made["event"], made["causes"], made["sha256"]) == ("made", ["new"], first)
    assert row_of(library, "alpha")["uploaded"] is None

    # refused: no such export, not the current file; recorded: the current file
    refused = run_doit("uploaded", "youtube:nobody", "--id", "x", *args, check=1)
    assert "youtube:nobody: no export in" in refused.stderr
    refused = run_doit("uploaded", "youtube:alpha", "--id", "x", "--sha256", "0" * 64, *args,
                       check=1)
    assert "is not the current export" in refused.stderr
    run_doit("uploaded", "youtube:alpha", "--id", "vid-1", "--url", "https://y.example/1",
             *args, check=0)
    row = row_of(library, "alpha")
    assert row["uploaded"]["id"] == "vid-1" and row["uploaded"]["sha256"] == first
    assert (row["versions"], row["upload_outdated"]) == (1, False)

    # a new render: a new version, and the uploaded copy is outdated everywhere it shows
    library.add("women", "18-23", "alpha", shape="two-seconds")
    run_doit(*args, check=0)
    row = row_of(library, "alpha")
    assert (row["versions"], row["upload_outdated"]) == (2, True)
    assert history(library, "alpha", "--json")[0]["causes"] == ["source changed"]
    status = json.loads(run_doit("status", "--json", *args, check=0).stdout)
    assert status["total"]["upload_outdated"] == 1
    assert [o["task"] for o in status["upload_outdated"]] == ["youtube:alpha"]
    assert "UPLOAD OUTDATED youtube:alpha" in run_doit("status", *args, check=0).stdout
    assert "upload outdated: " in (library.exports / "index.html").read_text()
    # the earlier file, uploaded elsewhere, is accepted when said to be an earlier version
    run_doit("uploaded", "youtube:alpha", "--id", "vid-0", "--sha256", first,
             "--earlier-version", *args, check=0)
    assert row_of(library, "alpha")["uploaded"]["id"] == "vid-0"
    assert row_of(library, "alpha")["upload_outdated"] is True

    # regeneration: the same registry from the DB, the sidecars and the history
    before = read_json(library.exports / "registry.json")
    (library.exports / "registry.json").unlink()
    run_doit(*args, check=0)
    assert read_json(library.exports / "registry.json") == before

    # a bad render fails with its cause; clean and forget are recorded; the DB lost too
    (library.root / "women/18-23/alpha/final.mp4").write_bytes(b"not a video")
    run_doit(*args, check=2)       # a failed export: README "In CI"
    run_doit("clean", "youtube:alpha", *args, check=0)
    run_doit("forget", "youtube:alpha", *args, check=0)
    # the default tasks: each export is in three groups, named (and recorded) once
    forgot = run_doit("forget", *args, check=0).stdout.splitlines()
    assert sorted(forgot) == sorted(set(forgot)) and forgot.count("forgetting youtube:alpha") == 1
    (library.exports / ".doit.db").unlink()
    events = history(library, "alpha", "--json")
    assert [e["event"] for e in events] == ["forgotten", "forgotten", "cleaned", "failed",
                                            "uploaded", "made", "uploaded", "made"]
    assert "final.mp4" in events[3]["cause"]
    assert "youtube.mp4" in events[2]["files"]
    text = history(library, "alpha")
    assert text.splitlines()[0].split()[1:3] == ["youtube:alpha", "forgotten"]
    assert history(library, "nobody") == "nobody: no events in the history\n"


@pytest.mark.parametrize("post_id, url, cause", [
    ("x", "javascript:alert(document.domain)", "is not an http(s) URL"),
    ("x", "data:text/html,<script>alert(1)</script>", "is not an http(s) URL"),
    ("x\n2026-01-01T00:00:00  youtube:alpha  uploaded", None, "holds a control character"),
    ("x\x1b[2J", None, "holds a control character"),
    ("x", "https://example.com/" + "a" * 3000, "at most 2048"),
    ("", None, "the post id is empty"),
])
def test_an_upload_id_or_url_that_could_forge_or_inject_is_refused(tmp_path, post_id, url,
                                                                    cause):
    with pytest.raises(UploadRefused, match=re.escape(cause)):
        check_upload_fields("youtube:alpha", post_id, url)
    check_upload_fields("youtube:alpha", "dQw4w9", "https://www.facebook.com/watch/?v=123")


def test_the_gallery_links_only_web_urls_under_a_content_security_policy():
    page_row = {"uploaded": {"at": "2026-11-30T00:00:00", "id": "x",
                             "url": "javascript:alert(1)"}}
    assert "<a " not in upload_html(page_row)
    page_row["uploaded"]["url"] = "https://youtu.be/x"
    assert '<a href="https://youtu.be/x"' in upload_html(page_row)
    policy = content_security_policy()
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy
    assert "unsafe-inline" not in policy
