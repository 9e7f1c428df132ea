"""Registry assembly from statuses and sidecars (no ffmpeg, no doit)."""

import json

import jsonschema
import pytest

from exporter.model.spec import load_schema
from exporter.report.registry import (
    build_registry,
    export_status,
    registry_row,
    with_distribution,
)

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once


@pytest.mark.parametrize("present, fresh, error, status", [
    (True, True, False, "exported"),
    (True, True, True, "exported"),     # a later success wins over an old error record
    (True, False, False, "stale"),
    (True, False, True, "failed"),
    (False, False, True, "failed"),
    (False, False, False, "pending"),
])
def test_export_status(present, fresh, error, status):
    assert export_status(present, fresh, error) == status


def identity(title, platform, segment="women", age="18-23"):
    return {"title_id": title, "segment": segment, "age": age, "platform": platform}


SIDECAR = {"output": {"size_bytes": 1000, "duration_s": 2.5, "sha256": "ab" * 32},
           "encode": {"mode": "encode"}, "finished_at": "2026-11-25T08:00:00.000+00:00"}
ERROR = {"cause": "final.mp4 has no video stream (audio-only)",
         "failed_at": "2026-11-25T08:01:00.000+00:00"}


def made(sha256):
    return {"event": "made", "at": "2026-11-25T08:00:00.000+00:00", "sha256": sha256}


def uploaded(sha256, post_id="p1"):
    return {"event": "uploaded", "at": "2026-11-25T09:00:00.000+00:00", "sha256": sha256,
            "id": post_id, "url": f"https://example.com/{post_id}"}


# b/youtube: two versions, the current one uploaded; b/tiktok: the earlier one uploaded
HISTORY = {("b", "youtube"): [made("cd" * 32), made("ab" * 32), uploaded("ab" * 32)],
           ("b", "tiktok"): [made("cd" * 32), uploaded("cd" * 32), made("ab" * 32)]}


def sample_rows():
    rows = [
        registry_row(identity("b", "youtube"), "exported", "women/18-23/b/youtube.mp4", SIDECAR),
        registry_row(identity("a", "tiktok", "men"), "failed", "men/18-23/a/tiktok.mp4",
                     error=ERROR),
        registry_row(identity("b", "tiktok"), "stale", "women/18-23/b/tiktok.mp4", SIDECAR),
        registry_row(identity("a", "youtube", "men"), "pending", "men/18-23/a/youtube.mp4"),
    ]
    return [with_distribution(row, HISTORY.get((row["title_id"], row["platform"]), []))
            for row in rows]


def test_distribution_fields_come_from_the_history():
    rows = {(r["title_id"], r["platform"]): r for r in sample_rows()}
    assert rows["b", "youtube"]["versions"] == 2
    assert rows["b", "youtube"]["uploaded"] == {"at": "2026-11-25T09:00:00.000+00:00",
                                                "id": "p1", "url": "https://example.com/p1",
                                                "sha256": "ab" * 32}
    assert rows["b", "youtube"]["upload_outdated"] is False
    assert rows["b", "tiktok"]["upload_outdated"] is True      # remade since the upload
    assert rows["a", "youtube"] | {} == {**rows["a", "youtube"], "versions": 0,
                                         "uploaded": None, "upload_outdated": False}


def test_rows_are_sorted_and_totals_add_up():
    document = build_registry(sample_rows(), ["youtube", "tiktok"])
    keys = [(r["segment"], r["title_id"], r["platform"]) for r in document["exports"]]
    assert keys == sorted(keys)
    assert document["platforms"] == ["tiktok", "youtube"]
    totals = document["totals"]
    assert totals["all"] == {"exported": 1, "stale": 1, "failed": 1, "pending": 1,
                             "removed": 0, "size_bytes": 2000, "duration_s": 5.0, "uploaded": 2,
                             "upload_outdated": 1}
    assert totals["by_segment"]["men"]["failed"] == 1
    assert totals["by_platform"]["tiktok"] == {"exported": 0, "stale": 1, "failed": 1,
                                               "pending": 0, "removed": 0, "size_bytes": 1000,
                                               "duration_s": 2.5, "uploaded": 1,
                                               "upload_outdated": 1}
    failed = [r for r in document["exports"] if r["status"] == "failed"][0]
    assert failed["cause"] == ERROR["cause"]


def test_same_input_gives_identical_text_whatever_the_order():
    rows = sample_rows()
    first = json.dumps(build_registry(rows, ["youtube", "tiktok"]), sort_keys=True)
    second = json.dumps(build_registry(rows[::-1], ["tiktok", "youtube"]), sort_keys=True)
    assert first == second


def test_registry_is_valid_against_its_schema():
    jsonschema.validate(build_registry(sample_rows(), ["youtube", "tiktok"]),
                        load_schema("registry"))


def test_schema_rejects_a_failed_row_without_cause():
    document = build_registry(sample_rows(), ["youtube", "tiktok"])
    for row in document["exports"]:
        row.pop("cause", None)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, load_schema("registry"))
