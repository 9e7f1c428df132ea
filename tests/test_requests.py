"""The upload request of each platform (exporter/model/requests.py): every field, every
limit its schema holds, and declarations never guessed. Pure: no ffmpeg, no files but the
shipped platform specs and schemas."""

import dataclasses
import json
import re

import pytest
import yaml
from conftest import SHIPPED_PLATFORMS

from exporter.metadata import format_metadata, load_source_metadata
from exporter.model.errors import SourceError, SpecError
from exporter.model.requests import build_request
from exporter.model.spec import first_schema_error, load_schema, load_spec, load_specs

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once

SPECS = load_specs(SHIPPED_PLATFORMS)
DECLARED = {"made_for_kids": False, "ai_generated": False}


def request_of(platform, **source):
    """(request, upload, warnings) of `source` (a title added) for a shipped platform."""
    source = {"title": "A title #tag", **source}
    document, _ = format_metadata(source, SPECS[platform])
    return build_request(source, document, SPECS[platform])


def needs_of(upload):
    return [need["field"] for need in upload["needs"]]


def with_upload(platform, **upload):
    return dataclasses.replace(SPECS[platform], upload={**SPECS[platform].upload, **upload})


# ---- YouTube: snippet + status --------------------------------------------------------------

def test_youtube_request_carries_every_field():
    request, upload, warnings = request_of(
        "youtube", description="About it", hashtags=["more"], privacy="unlisted",
        category="27", language="pt-BR", **DECLARED,
        platforms={"youtube": {"embeddable": False, "license": "creativeCommon",
                               "public_stats_viewable": True}})
    assert request == {
        "snippet": {"title": "A title #tag", "description": "About it\n\n#more #Shorts",
                    "tags": ["tag", "more", "Shorts"], "categoryId": "27",
                    "defaultLanguage": "pt-BR"},
        "status": {"privacyStatus": "unlisted", "selfDeclaredMadeForKids": False,
                   "containsSyntheticMedia": False, "embeddable": False,
                   "license": "creativeCommon", "publicStatsViewable": True}}
    assert upload["needs"] == [] and warnings == []


def test_youtube_defaults_come_from_the_platform_file():
    request, upload, _ = request_of("youtube", **DECLARED)
    assert request["status"]["privacyStatus"] == "private"       # youtube.yaml upload:
    assert request["snippet"]["categoryId"] == "22"
    assert upload["privacy"] == "private"


def test_youtube_category_must_be_one_it_assigns_or_the_platform_file_lists():
    request, upload, _ = request_of("youtube", category="9999", **DECLARED)
    assert "categoryId" not in request["snippet"]
    assert needs_of(upload) == ["category"]
    assert "9999 is not a category YouTube assigns" in upload["needs"][0]["why"]
    request, upload, _ = request_of("youtube", category="18", **DECLARED)   # Short Movies
    assert needs_of(upload) == ["category"]
    # a channel's own list (another region, or a change of YouTube's) wins
    spec = with_upload("youtube", categories=["9999"])
    source = {"title": "A title", "category": "9999", **DECLARED}
    request, upload, _ = build_request(source, format_metadata(source, spec)[0], spec)
    assert request["snippet"]["categoryId"] == "9999" and upload["needs"] == []
    request, upload, _ = build_request({**source, "category": "22"},
                                       format_metadata(source, spec)[0], spec)
    assert needs_of(upload) == ["category"]
    # still told when nothing sets privacy either
    spec = dataclasses.replace(SPECS["youtube"], upload={"api": "youtube"})
    source = {"title": "A title", "category": "9999", **DECLARED}
    _, upload, _ = build_request(source, format_metadata(source, spec)[0], spec)
    assert needs_of(upload) == ["category", "privacy"]


def test_youtube_publish_at_schedules_a_public_video_as_private_until_then():
    request, upload, _ = request_of("youtube", privacy="public",
                                    publish_at="2026-12-01T10:00:00+02:00", **DECLARED)
    assert request["status"]["privacyStatus"] == "private"
    assert request["status"]["publishAt"] == "2026-12-01T08:00:00Z"
    assert upload["publish_at"] == "2026-12-01T08:00:00Z" and upload["needs"] == []


def test_youtube_publish_at_on_a_private_video_is_a_need_not_a_guess():
    request, upload, _ = request_of("youtube", privacy="unlisted",
                                    publish_at="2026-12-01T08:00:00Z", **DECLARED)
    assert "publishAt" not in request["status"]
    assert needs_of(upload) == ["privacy"]


@pytest.mark.parametrize("missing", ["made_for_kids", "ai_generated"])
def test_youtube_declarations_are_never_guessed(missing):
    declared = {k: v for k, v in DECLARED.items() if k != missing}
    request, upload, _ = request_of("youtube", **declared)
    theirs = {"made_for_kids": "selfDeclaredMadeForKids",
              "ai_generated": "containsSyntheticMedia"}[missing]
    assert theirs not in request["status"]
    assert needs_of(upload) == [missing] and upload[missing] is None


def test_declarations_true_are_posted_true_and_per_platform_blocks_override():
    request, _, _ = request_of("youtube", made_for_kids=False, ai_generated=False,
                               platforms={"youtube": {"ai_generated": True}})
    assert request["status"]["containsSyntheticMedia"] is True


def test_a_declaration_in_the_platform_defaults_counts():
    spec = with_upload("youtube", made_for_kids=False, ai_generated=True)
    source = {"title": "t"}
    document, _ = format_metadata(source, spec)
    request, upload, _ = build_request(source, document, spec)
    assert request["status"]["selfDeclaredMadeForKids"] is False
    assert upload["needs"] == []


def test_no_privacy_anywhere_is_a_need():
    spec = dataclasses.replace(SPECS["youtube"], upload={"api": "youtube"})
    source = {"title": "t", **DECLARED}
    document, _ = format_metadata(source, spec)
    request, upload, _ = build_request(source, document, spec)
    assert "privacyStatus" not in request["status"] and needs_of(upload) == ["privacy"]


# ---- TikTok: post_info -----------------------------------------------------------------------

def test_tiktok_request_carries_every_field():
    request, upload, warnings = request_of(
        "tiktok", privacy="public", ai_generated=True,
        platforms={"tiktok": {"disable_duet": True, "disable_stitch": False,
                              "disable_comment": True, "video_cover_timestamp_ms": 1500,
                              "brand_content_toggle": False, "brand_organic_toggle": True}})
    assert request == {"post_info": {
        "title": "A title #tag", "privacy_level": "PUBLIC_TO_EVERYONE",
        "disable_duet": True, "disable_stitch": False, "disable_comment": True,
        "video_cover_timestamp_ms": 1500, "brand_content_toggle": False,
        "brand_organic_toggle": True, "is_aigc": True}}
    assert upload["needs"] == [] and warnings == []


@pytest.mark.parametrize("privacy, level", [("public", "PUBLIC_TO_EVERYONE"),
                                            ("private", "SELF_ONLY")])
def test_tiktok_privacy_maps_to_privacy_level(privacy, level):
    request, _, _ = request_of("tiktok", privacy=privacy, ai_generated=False)
    assert request["post_info"]["privacy_level"] == level


NOT_BRANDED = {"tiktok": {"brand_content_toggle": False}}


def test_tiktok_has_no_unlisted_post_so_it_is_a_need_unless_privacy_level_says():
    _, upload, _ = request_of("tiktok", privacy="unlisted", ai_generated=False,
                              platforms=NOT_BRANDED)
    assert needs_of(upload) == ["privacy_level"]
    request, upload, _ = request_of(
        "tiktok", privacy="unlisted", ai_generated=False,
        platforms={"tiktok": {"privacy_level": "FOLLOWER_OF_CREATOR",
                              "brand_content_toggle": False}})
    assert request["post_info"]["privacy_level"] == "FOLLOWER_OF_CREATOR"
    assert upload["needs"] == []


def test_tiktok_needs_the_ai_declaration_not_made_for_kids():
    request, upload, _ = request_of("tiktok", privacy="public", platforms=NOT_BRANDED)
    assert "is_aigc" not in request["post_info"] and needs_of(upload) == ["ai_generated"]


def test_tiktok_commercial_content_and_privacy_are_the_creators_to_say():
    """brand_content_toggle is Required in the Direct Post reference, and TikTok asks the
    creator to choose who sees a post: neither is guessed, nor a shipped default."""
    request, upload, _ = request_of("tiktok", ai_generated=False)
    assert needs_of(upload) == ["brand_content_toggle", "privacy"]
    assert "brand_content_toggle" not in request["post_info"]
    request, upload, _ = request_of("tiktok", ai_generated=False, privacy="private",
                                    platforms=NOT_BRANDED)
    assert upload["needs"] == [] and request["post_info"]["brand_content_toggle"] is False
    # a team's own default in its platform file applies, as a choice made for its renders
    request, upload, _ = build_request(
        {"title": "t", "ai_generated": False},
        format_metadata({"title": "t"}, SPECS["tiktok"])[0],
        with_upload("tiktok", privacy="private", brand_content_toggle=False))
    assert upload["needs"] == [] and request["post_info"]["privacy_level"] == "SELF_ONLY"


def test_a_default_privacy_does_not_stand_for_the_render_when_it_schedules_a_post():
    """youtube.yaml's privacy: private held every render with publish_at on YouTube and
    Facebook as if the render had said private."""
    for platform in ("youtube", "facebook"):
        request, upload, _ = request_of(platform, publish_at="2031-01-01T09:00:00Z",
                                        **DECLARED)
        assert upload["needs"] == [], (platform, upload["needs"])
    request, upload, _ = request_of("youtube", privacy="private",
                                    publish_at="2031-01-01T09:00:00Z", **DECLARED)
    assert needs_of(upload) == ["privacy"]      # the render's own choice still counts


def test_tiktok_branded_content_cannot_be_private():
    with pytest.raises(SourceError, match="tiktok request.*post_info.privacy_level"):
        request_of("tiktok", privacy="private", ai_generated=False,
                   platforms={"tiktok": {"brand_content_toggle": True}})


def test_tiktok_caption_over_2200_is_refused_by_its_schema():
    problem = first_schema_error({"post_info": {"title": "x" * 2201}},
                                 load_schema("request_tiktok"))
    assert problem.startswith("post_info.title")


# ---- Instagram: a REELS container ------------------------------------------------------------

def test_instagram_request_carries_every_field():
    request, upload, warnings = request_of(
        "instagram", privacy="public",
        platforms={"instagram": {"collaborators": ["dana.levi", "ofir_k"], "thumb_offset": 2000,
                                 "cover_url": "https://cdn.example/c.jpg",
                                 "audio_name": "Original audio", "share_to_feed": False}})
    assert request == {"media_type": "REELS", "caption": "A title #tag",
                       "share_to_feed": False, "collaborators": ["dana.levi", "ofir_k"],
                       "thumb_offset": 2000, "cover_url": "https://cdn.example/c.jpg",
                       "audio_name": "Original audio"}
    assert upload["needs"] == [] and warnings == []


def test_instagram_takes_no_declaration_and_cannot_post_privately():
    request, upload, _ = request_of("instagram")
    assert upload["needs"] == [] and request["share_to_feed"] is True   # instagram.yaml
    _, upload, _ = request_of("instagram", privacy="private")
    assert needs_of(upload) == ["privacy"]


@pytest.mark.parametrize("bad, where", [
    ({"collaborators": ["a", "b", "c", "d"]}, "collaborators"),
    ({"thumb_offset": -1}, "thumb_offset"),
    ({"cover_url": "javascript:alert(1)"}, "cover_url"),
    ({"media_type": "VIDEO"}, "media_type"),
    ({"caption": "x" * 2201}, "caption"),
])
def test_instagram_limits(bad, where):
    request = {"media_type": "REELS", "caption": "c", **bad}
    assert first_schema_error(request, load_schema("request_instagram")).startswith(where)


# ---- Facebook: Reels with video_state --------------------------------------------------------

@pytest.mark.parametrize("privacy, state", [("public", "PUBLISHED"), ("private", "DRAFT")])
def test_facebook_video_state_follows_privacy(privacy, state):
    request, upload, _ = request_of("facebook", privacy=privacy)
    assert request == {"title": "A title #tag", "description": "A title #tag",
                       "video_state": state}
    assert upload["needs"] == []


def test_facebook_publish_at_schedules_the_reel():
    request, _, _ = request_of("facebook", privacy="public", publish_at="2026-12-01T08:00:00Z")
    assert request["video_state"] == "SCHEDULED"
    assert request["scheduled_publish_time"] == 1796112000


def test_facebook_explicit_state_wins_and_scheduled_needs_a_time():
    request, upload, _ = request_of("facebook", platforms={"facebook": {
        "video_state": "SCHEDULED"}})
    assert "scheduled_publish_time" not in request and needs_of(upload) == ["publish_at"]


def test_facebook_unlisted_is_a_need():
    request, upload, _ = request_of("facebook", privacy="unlisted")
    assert "video_state" not in request and needs_of(upload) == ["video_state"]


def test_facebook_schema_ties_scheduled_time_to_scheduled_state():
    schema = load_schema("request_facebook")
    assert first_schema_error({"description": "d", "video_state": "SCHEDULED"}, schema)
    assert first_schema_error({"description": "d", "video_state": "PUBLISHED",
                               "scheduled_publish_time": 1}, schema)


# ---- YouTube schema limits -------------------------------------------------------------------

@pytest.mark.parametrize("snippet, status, where", [
    ({"title": "x" * 101}, {}, "snippet.title"),
    ({"title": "a<b"}, {}, "snippet.title"),
    ({"title": "t", "description": "x" * 5001}, {}, "snippet.description"),
    ({"title": "t", "categoryId": "music"}, {}, "snippet.categoryId"),
    ({"title": "t"}, {"privacyStatus": "friends"}, "status.privacyStatus"),
    ({"title": "t"}, {"privacyStatus": "public", "publishAt": "2026-12-01T08:00:00Z"},
     "status.privacyStatus"),
    ({"title": "t"}, {"selfDeclaredMadeForKids": "no"}, "status.selfDeclaredMadeForKids"),
])
def test_youtube_limits(snippet, status, where):
    request = {"snippet": {"description": "", **snippet}, "status": status}
    assert first_schema_error(request, load_schema("request_youtube")).startswith(where)


# ---- the source: schema-checked, unknown keys named ------------------------------------------

def test_unknown_keys_are_warnings_naming_them():
    _, _, warnings = request_of("tiktok", privacy="public", ai_generated=False, category_id="22",
                                disable_duet=True, platforms={"tiktok": {"dissable_stitch": 1}})
    assert warnings == [
        "metadata.json: unknown key 'category_id' ignored (did you mean 'category'?)",
        ("metadata.json: unknown key 'disable_duet' ignored (tiktok only: set it in "
         "platforms.tiktok)"),
        ("metadata.json: unknown key 'platforms.tiktok.dissable_stitch' ignored (did you mean "
         "'disable_stitch'?)")]


def test_a_top_level_api_field_is_not_used():
    request, _, _ = request_of("tiktok", privacy="public", ai_generated=False,
                               disable_duet=True)
    assert "disable_duet" not in request["post_info"]


@pytest.mark.parametrize("source, message", [
    ({"privacy": "secret"}, "privacy: 'secret' is not one of"),
    ({"made_for_kids": "no"}, "made_for_kids: 'no' is not of type 'boolean'"),
    ({"category": "music"}, "category: 'music' does not match"),
    ({"publish_at": "2026-12-01 08:00"}, "publish_at: '2026-12-01 08:00' does not match"),
    ({"publish_at": "2026-12-01T08:00:00"}, "publish_at"),     # no offset
    ({"platforms": {"instagram": {"collaborators": ["a", "b", "c", "d"]}}},
     "platforms.instagram.collaborators"),
    ({"platforms": {"tiktok": {"privacy_level": "EVERYONE"}}}, "platforms.tiktok.privacy_level"),
])
def test_the_source_schema_refuses_wrong_values(tmp_path, source, message):
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps({"title": "t", **source}), encoding="utf-8")
    with pytest.raises(SourceError, match=f"metadata.json: {message}"):
        load_source_metadata(path)


def test_every_document_is_valid_against_the_output_schema():
    schema = load_schema("platform-metadata")
    for name, spec in SPECS.items():
        source = {"title": "t", "privacy": "public", **DECLARED}
        document, _ = format_metadata(source, spec)
        request, upload, _ = build_request(source, document, spec)
        assert first_schema_error({**document, "request": request, "upload": upload},
                                  schema) is None, name


def test_a_platform_without_an_upload_api_has_no_request():
    spec = dataclasses.replace(SPECS["tiktok"], upload={})
    request, upload, _ = build_request({"title": "t"}, {"caption": "t", "title": "t"}, spec)
    assert request is None and needs_of(upload) == ["upload.api"]


@pytest.mark.parametrize("upload, message", [
    ({"api": "myspace"}, "upload.api"),
    ({"api": "youtube", "disable_duet": True}, "upload"),
    ({"privacy": "public"}, "upload: 'api' is a required property"),
    ({"api": "tiktok", "privacy": "hidden"}, "upload.privacy"),
])
def test_the_platform_file_upload_section_is_checked_at_load(tmp_path, upload, message):
    document = yaml.safe_load((SHIPPED_PLATFORMS / "tiktok.yaml").read_text(encoding="utf-8"))
    document["upload"] = upload
    path = tmp_path / "tiktok.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    with pytest.raises(SpecError, match=message):
        load_spec(path)


def test_a_schedule_that_has_passed_holds_the_export_when_the_queue_is_read():
    from datetime import datetime, timezone

    from exporter.report.queue import needs_text, schedule_needs
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    metadata = {"upload": {"publish_at": "2026-11-30T11:59:00+00:00", "needs": []}}
    (need,) = schedule_needs(metadata, now)
    assert need["field"] == "publish_at"
    assert needs_text([need]).startswith(
        "needs publish_at (2026-11-30T11:59:00+00:00 has passed: a schedule must be in the "
        "future")
    later = {"upload": {"publish_at": "2026-11-30T14:00:00+02:00"}}   # 12:00 UTC: now
    assert schedule_needs(later, now) != [], "a time equal to now has passed"
    assert schedule_needs({"upload": {"publish_at": "2026-12-01T08:00:00Z"}}, now) == []
    assert schedule_needs({"upload": {"publish_at": None}}, now) == []
    assert schedule_needs({"upload": {}}, now) == [] and schedule_needs({}, now) == []


def test_a_publish_at_out_of_range_in_utc_is_one_line_not_a_traceback():
    with pytest.raises(SourceError, match=r"publish_at: '9999-12-31T23:59:59-14:00' is out "
                                          r"of range once in UTC \(years 1 to 9999\)"):
        request_of("youtube", privacy="public", publish_at="9999-12-31T23:59:59-14:00")


@pytest.mark.parametrize("schema, document", [
    ("source-metadata", {"title": "t", "category": "22\n"}),
    ("source-metadata", {"title": "t", "language": "en\n"}),
    ("source-metadata", {"title": "t", "platforms": {"instagram": {
        "cover_url": "https://example.com/c.jpg\n"}}}),
])
def test_a_pattern_matches_the_whole_value_not_up_to_a_final_newline(schema, document):
    """Python's `$` also matches before a final newline: every schema pattern ends in \\Z,
    so '22\\n' is not a category id (issue 35)."""
    problem = first_schema_error(document, load_schema(schema))
    assert problem is not None and "does not match" in problem, problem
    clean = json.loads(json.dumps(document).replace("\\n", ""))
    assert first_schema_error(clean, load_schema(schema)) is None


def test_every_schema_pattern_is_anchored_at_the_very_end():
    for path in sorted((SHIPPED_PLATFORMS.parent / "schemas").glob("*.json")):
        for pattern in re.findall(r'"pattern": "((?:[^"\\]|\\.)*)"', path.read_text()):
            assert pattern.endswith("\\\\Z"), (path.name, pattern)


# ---- what no API takes as text or as a number --------------------------------------------


def test_control_and_bidi_override_characters_are_removed_with_a_warning_naming_the_field():
    request, _, warnings = request_of(
        "instagram", privacy="public",
        platforms={"instagram": {"audio_name": "Original\x00 audio\x1b"}})
    assert request["audio_name"] == "Original audio"
    assert "audio_name: removed U+0000, U+001B (a control or bidi-override character" in \
        " ".join(warnings)
    request, _, warnings = request_of("youtube", title="Price \u202e0001$",
                                      description="line one\nline\ttwo", **DECLARED,
                                      privacy="public")
    assert request["snippet"]["title"].startswith("Price 0001$")
    assert "\n" in request["snippet"]["description"]      # line feeds and tabs are text
    assert [w.split(":")[0] for w in warnings] == ["snippet.title"]


@pytest.mark.parametrize("platform, block", [
    ("instagram", {"thumb_offset": 1e300}),
    ("instagram", {"thumb_offset": 2000.0}),
    ("tiktok", {"video_cover_timestamp_ms": 1.0, "privacy_level": "SELF_ONLY"}),
])
def test_an_offset_must_be_a_whole_number_of_milliseconds(platform, block):
    name = next(iter(block))
    with pytest.raises(SourceError, match=f"{name}: .* is not a whole number of milliseconds"):
        request_of(platform, privacy="public", ai_generated=False,
                   platforms={platform: block})


def test_an_offset_past_the_end_of_the_video_is_refused():
    from exporter.model.requests import offset_problem
    tiktok = {"post_info": {"video_cover_timestamp_ms": 3500}}
    assert offset_problem(tiktok, "tiktok", 3.5) == (
        "video_cover_timestamp_ms: 3500 ms is past the end of the video (3.500 s): the cover "
        "frame must be one of the video's")
    assert offset_problem(tiktok, "tiktok", 3.501) is None
    assert offset_problem({"thumb_offset": 9000}, "instagram", 8.0).startswith("thumb_offset")
    assert offset_problem({"title": "t"}, "youtube", 1.0) is None
