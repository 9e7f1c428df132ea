"""`doit uploads`: the upload queue, called as a user (or an upload stage) does. One small
library, exported once: ready, needing a declaration, failed, uploaded, stale, and ready
again from a newer video."""

import json

import pytest
from conftest import read_json, run_doit, small_platforms

# the queue and its request files, not ffmpeg: the first pass only
pytestmark = pytest.mark.once

DECLARED = {"made_for_kids": False, "ai_generated": False,
            "platforms": {"tiktok": {"brand_content_toggle": False}}}


@pytest.fixture
def queued(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms")
    library.add("women", "18-23", "ready", metadata={"title": "Ready", "privacy": "public",
                                                     **DECLARED})
    library.add("women", "18-23", "silent", metadata={"title": "Undeclared"})
    library.add("men", "24-30", "bad", metadata={"title": "Bad", "privacy": "secret"})
    args = library.args(f"platforms_dir={platforms}")
    run_doit(*args, check=2)            # bad fails alone
    return library, args


def queue(args, *extra):
    return json.loads(run_doit("uploads", "--json", *args, *extra, check=0).stdout)


def test_the_queue_lists_ready_exports_and_holds_the_rest_with_the_reason(queued):
    library, args = queued
    first = queue(args)
    assert [item["export"] for item in first["ready"]] == ["tiktok:ready", "youtube:ready"]
    item = first["ready"][1]
    assert item["video"].endswith("women/18-23/ready/youtube.mp4")
    assert item["cover"].endswith("youtube.cover.jpg")
    assert item["privacy"] == "public"
    assert item["declarations"] == {"made_for_kids": False, "ai_generated": False}
    request = read_json(item["request_file"])["request"]
    assert request["status"] == {"privacyStatus": "public", "selfDeclaredMadeForKids": False,
                                 "containsSyntheticMedia": False}
    held = {h["export"]: h for h in first["held"]}
    assert held["youtube:silent"]["held"] == "needs"
    assert held["youtube:silent"]["needs"] == ["made_for_kids", "ai_generated"]
    assert held["tiktok:silent"]["needs"] == ["ai_generated", "brand_content_toggle",
                                              "privacy"]
    assert held["youtube:bad"]["held"] == "failed"
    assert "privacy: 'secret' is not one of" in held["youtube:bad"]["reason"]
    assert first["totals"] == {"ready": 2, "uploaded": 0, "needs": 2, "stale": 0,
                               "failed": 2, "pending": 0}
    # the metadata file says what it needs, and the request leaves the declaration out
    silent = read_json(library.exports / "women/18-23/silent/metadata_youtube.json")
    assert "selfDeclaredMadeForKids" not in silent["request"]["status"]
    assert silent["upload"]["made_for_kids"] is None

    # the registry, the gallery and `doit status` say the same
    rows = {(r["platform"], r["title_id"]): r
            for r in read_json(library.exports / "registry.json")["exports"]}
    assert rows["youtube", "ready"]["queue"] == "ready"
    assert rows["youtube", "ready"]["privacy"] == "public"
    assert rows["youtube", "silent"]["queue"] == "needs"
    assert rows["youtube", "silent"]["made_for_kids"] is None
    assert rows["youtube", "silent"]["needs"] == ["made_for_kids", "ai_generated"]
    assert rows["youtube", "bad"]["queue"] == "held"
    page = (library.exports / "index.html").read_text(encoding="utf-8")
    assert ("private · for kids: not declared · AI: not declared · queue: needs "
            "made_for_kids, ai_generated") in page
    assert "public · for kids: no · AI: no · queue: ready" in page
    status = run_doit("status", *args, check=0).stdout
    assert ("NEEDS 2 exported not ready to upload, lacking ai_generated 2, brand_content_toggle "
            "1, made_for_kids 1, privacy 1: `doit uploads` lists them") in status

    only_tiktok = queue(args, "platforms=tiktok")
    assert [i["export"] for i in only_tiktok["ready"]] == ["tiktok:ready"]
    assert {h["platform"] for h in only_tiktok["held"]} == {"tiktok"}

    # posted, recorded: out of the queue
    run_doit("uploaded", "youtube:ready", "--id", "yt-1", *args, check=0)
    after = queue(args)
    assert [i["export"] for i in after["ready"]] == ["tiktok:ready"]
    assert after["totals"]["uploaded"] == 1

    # a new render: stale until exported, then ready again, replacing the upload; a
    # declaration added to a render releases its exports
    library.add("women", "18-23", "ready", "two-seconds",
                metadata={"title": "Ready", "privacy": "public", **DECLARED})
    stale = {h["export"]: h for h in queue(args)["held"]}
    assert stale["youtube:ready"]["reason"].startswith("stale: source changed")
    (library.root / "women/18-23/silent/metadata.json").write_text(
        json.dumps({"title": "Undeclared", **DECLARED, "privacy": "private", "categry": "10"}),
        encoding="utf-8")
    result = run_doit(*args, check=2)
    assert ("WARNING youtube:silent (women/18-23/silent): metadata.json: unknown key "
            "'categry' ignored (did you mean 'category'?)") in result.stderr
    again = queue(args)
    ready = {i["export"]: i for i in again["ready"]}
    assert ready["youtube:ready"]["replaces"]["id"] == "yt-1"
    assert {"youtube:silent", "tiktok:silent"} <= set(ready)

    text = run_doit("uploads", *args, check=0).stdout
    assert "READY youtube:ready (women/18-23/ready): public, replaces yt-1" in text
    assert "HELD youtube:bad (men/24-30/bad): failed: metadata.json: privacy:" in text
    assert text.endswith("queue: 4 ready, 0 uploaded; held: 0 needing a field, 0 stale, "
                         "2 failed, 0 pending\n")


def test_status_uploads_registry_and_gallery_agree_from_one_function(library, tmp_path):
    """A schedule that has passed and a declaration missing are NEEDS everywhere; a post
    recorded is uploaded everywhere: `doit status`, `doit uploads`, registry.json and the
    gallery all read upload_standing."""
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    library.add("women", "18-23", "late", metadata={
        "title": "Late", "publish_at": "2020-01-01T09:00:00Z", **DECLARED})
    library.add("women", "18-23", "silent", metadata={"title": "Undeclared"})
    library.add("women", "18-23", "ready", metadata={"title": "Ready", **DECLARED})
    library.add("women", "18-23", "posted", metadata={"title": "Posted", **DECLARED})
    args = library.args(f"platforms_dir={platforms}")
    run_doit(*args, check=0)
    run_doit("uploaded", "youtube:posted", "--id", "yt-9", *args, check=0)

    uploads = queue(args)
    held = {h["export"]: h["needs"] for h in uploads["held"]}
    assert held == {"youtube:late": ["publish_at"],
                    "youtube:silent": ["made_for_kids", "ai_generated"]}
    assert [i["export"] for i in uploads["ready"]] == ["youtube:ready"]
    assert uploads["totals"]["uploaded"] == 1
    status = json.loads(run_doit("status", "--json", *args, check=0).stdout)
    assert {n["task"]: n["needs"] for n in status["needs"]} == held
    rows = {r["title_id"]: r["queue"]
            for r in read_json(library.exports / "registry.json")["exports"]}
    assert rows == {"late": "needs", "silent": "needs", "ready": "ready", "posted": "uploaded"}
    page = (library.exports / "index.html").read_text(encoding="utf-8")
    assert page.count('data-queue="needs"') == 2 and 'data-queue="uploaded"' in page
