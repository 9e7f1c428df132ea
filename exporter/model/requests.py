"""The upload request of one export: the body its platform's API takes, built from the
render's metadata.json, the platform's `upload:` defaults and the formatted text.

`build_request` is pure: (source, formatted document, spec) -> (request, upload, warnings).
`request` is shaped as the API names it (YouTube `snippet` + `status`, TikTok `post_info`,
Instagram's container parameters, Facebook's Reels parameters) and is checked against
schemas/request_{api}.schema.json before it is kept. `upload` says what the request stands
for (privacy, schedule, declarations) and what it still `needs` before it may be posted.

Declarations (`made_for_kids`, `ai_generated`) are legal statements: never guessed. When the
render and the defaults are silent, the field is left out of the request and the export
needs it. docs/uploads.md has every field, its source and its API reference.
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime
from typing import Any

from exporter.model.errors import SourceError
from exporter.model.spec import Spec, first_schema_error, load_schema

# Bump when a code change alters the requests built from the same input and defaults: it
# is part of the metadata files' up-to-date check (pipeline/export/job.metadata_rules_key).
REQUEST_VERSION = 3     # 2: control and bidi-override characters removed; 3: categories

APIS = ("youtube", "tiktok", "instagram", "facebook")
# What a render's metadata.json may say for every platform (top level, or per platform in
# `platforms.{name}`): the text formatter's fields, then the upload fields.
TEXT_FIELDS = ("title", "description", "hashtags", "mentions", "language")
UPLOAD_FIELDS = ("privacy", "made_for_kids", "ai_generated", "category", "publish_at")
COMMON_FIELDS = TEXT_FIELDS + UPLOAD_FIELDS
# What only one API takes, named as that API names it (set in `platforms.{name}`).
API_FIELDS = {
    "youtube": ("embeddable", "license", "public_stats_viewable"),
    "tiktok": ("privacy_level", "disable_duet", "disable_stitch", "disable_comment",
               "video_cover_timestamp_ms", "brand_content_toggle", "brand_organic_toggle"),
    "instagram": ("share_to_feed", "collaborators", "thumb_offset", "cover_url",
                  "audio_name"),
    "facebook": ("video_state",),
}
# The declarations each API takes: without them, its export is not posted.
# TikTok's Direct Post reference marks post_info.brand_content_toggle Required: whether the
# post is a paid partnership is the creator's to say (platforms.tiktok in metadata.json, or
# a team's own default in its platforms/tiktok.yaml upload:).
DECLARATIONS = {"youtube": ("made_for_kids", "ai_generated"),
                "tiktok": ("ai_generated", "brand_content_toggle"),
                "instagram": (), "facebook": ()}
# What the upload stage adds when it posts (not known when the export is made).
POSTING = {
    "youtube": {"endpoint": "POST https://www.googleapis.com/upload/youtube/v3/videos"
                            "?part=snippet,status",
                "adds": ["the video file (media upload)",
                         "the cover: thumbnails.set after the insert"]},
    "tiktok": {"endpoint": "POST https://open.tiktokapis.com/v2/post/publish/video/init/",
               "adds": ["source_info (FILE_UPLOAD: video_size, chunk_size, total_chunk_count)",
                        "privacy_level checked against creator_info.privacy_level_options"]},
    "instagram": {"endpoint": "POST https://graph.facebook.com/{ig-user-id}/media, then "
                              "/media_publish",
                  "adds": ["video_url (the video at a public URL)",
                           "cover_url (the cover at a public URL) unless thumb_offset is set"]},
    "facebook": {"endpoint": "POST https://graph.facebook.com/{page-id}/video_reels "
                             "(upload_phase=start, upload, then finish with these fields)",
                 "adds": ["upload_phase=finish and the video_id of the upload session"]},
}
# The YouTube video categories a video may be assigned (videoCategories.list?regionCode=US,
# snippet.assignable true), as its output reads in public copies, checked 2026-12-06; the
# list has not changed since 2014. A channel elsewhere, or one YouTube changes, sets its own
# in platforms/youtube.yaml `upload.categories`.
YOUTUBE_CATEGORIES = {
    "1": "Film & Animation", "2": "Autos & Vehicles", "10": "Music", "15": "Pets & Animals",
    "17": "Sports", "19": "Travel & Events", "20": "Gaming", "22": "People & Blogs",
    "23": "Comedy", "24": "Entertainment", "25": "News & Politics", "26": "Howto & Style",
    "27": "Education", "28": "Science & Technology", "29": "Nonprofits & Activism"}
TIKTOK_PRIVACY = {"public": "PUBLIC_TO_EVERYONE", "private": "SELF_ONLY"}
FACEBOOK_STATE = {"public": "PUBLISHED", "private": "DRAFT"}


def api_of(spec: Spec) -> str | None:
    """The API whose request this platform's exports carry (its `upload.api`), or None."""
    return (spec.upload or {}).get("api")


def known_fields(api: str | None) -> tuple[str, ...]:
    return COMMON_FIELDS + API_FIELDS.get(api or "", ())


def unknown_key_warnings(source: dict[str, Any], spec: Spec) -> list[str]:
    """One line per key of metadata.json this platform's export does not use: at the top
    level, and in its own `platforms.{name}` block. Never dropped without a word."""
    api = api_of(spec)
    notes = []
    for key in source:
        if key == "platforms" or key in COMMON_FIELDS:
            continue
        owners = [name for name, fields in API_FIELDS.items() if key in fields]
        hint = (f" ({'/'.join(owners)} only: set it in platforms.{owners[0]})" if owners
                else suggestion(key, COMMON_FIELDS))
        notes.append(f"metadata.json: unknown key {key!r} ignored{hint}")
    block = (source.get("platforms") or {}).get(spec.name) or {}
    for key in block:
        if key not in known_fields(api):
            notes.append(f"metadata.json: unknown key 'platforms.{spec.name}.{key}' "
                         f"ignored{suggestion(key, known_fields(api))}")
    return notes


def suggestion(key: str, names: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def upload_fields(source: dict[str, Any], spec: Spec) -> dict[str, Any]:
    """The fields of this export: the platform's defaults, then the render's top level,
    then its `platforms.{name}` block; only fields this platform knows."""
    defaults = {k: v for k, v in (spec.upload or {}).items() if k not in ("api", "categories")}
    block = (source.get("platforms") or {}).get(spec.name) or {}
    top = {k: v for k, v in source.items() if k in COMMON_FIELDS}
    merged = {**defaults, **top, **block}
    return {k: v for k, v in merged.items() if k in known_fields(api_of(spec))}


def chosen_by_render(source: dict[str, Any], spec: Spec) -> set[str]:
    """The upload fields the render's metadata.json sets itself (not the platform's
    defaults)."""
    block = (source.get("platforms") or {}).get(spec.name) or {}
    return {k for k in source if k in COMMON_FIELDS} | set(block)


def utc_text(moment: str) -> str:
    """An ISO 8601 time with its offset, as UTC: 2026-12-01T09:00:00Z."""
    return parse_time(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(moment: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        raise SourceError(f"publish_at: {moment!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise SourceError(f"publish_at: {moment!r} has no UTC offset (add Z or +02:00)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:       # in UTC it falls outside years 1 to 9999
        raise SourceError(f"publish_at: {moment!r} is out of range once in UTC "
                          "(years 1 to 9999)") from None


def need(field: str, why: str) -> dict[str, str]:
    return {"field": field, "why": why}


def declaration_needs(api: str, fields: dict[str, Any], platform: str) -> list[dict]:
    return [need(name, f"a declaration {platform} takes, never guessed: set it (true or "
                       f"false) in metadata.json or in platforms/{platform}.yaml upload:")
            for name in DECLARATIONS[api] if name not in fields]


def synthetic(ai_generated: bool | str) -> bool:
    """An API's yes/no flag of an AI declaration: "partly" (real footage with generated
    parts) is a yes to both YouTube's containsSyntheticMedia and TikTok's is_aigc."""
    return ai_generated is True or ai_generated == "partly"


def youtube_request(document: dict, fields: dict, needs: list) -> dict:
    snippet = {"title": document["title"], "description": document["caption"]}
    if document.get("tags"):
        snippet["tags"] = document["tags"]
    if "category" in fields:
        category, assignable = str(fields["category"]), fields.get("categories")
        if category in (assignable or YOUTUBE_CATEGORIES):
            snippet["categoryId"] = category
        else:
            needs.append(need("category", f"{category} is not a category YouTube assigns "
                                          f"({'the list of upload.categories' if assignable else 'videoCategories.list, assignable'}): "
                                          "set another, or list it in platforms/youtube.yaml "
                                          "upload.categories"))
    if fields.get("language"):
        snippet["defaultLanguage"] = fields["language"]
    status = {}
    privacy, publish_at = fields.get("privacy"), fields.get("publish_at")
    if publish_at and privacy not in (None, "public"):
        needs.append(need("privacy", f"publish_at schedules a public video, but privacy "
                                     f"is {privacy}: remove one"))
    elif publish_at:
        # YouTube schedules a video by inserting it private with publishAt
        status.update(privacyStatus="private", publishAt=utc_text(publish_at))
    elif privacy:
        status["privacyStatus"] = privacy
    if "made_for_kids" in fields:
        status["selfDeclaredMadeForKids"] = fields["made_for_kids"]
    if "ai_generated" in fields:
        status["containsSyntheticMedia"] = synthetic(fields["ai_generated"])
    for ours, theirs in (("embeddable", "embeddable"), ("license", "license"),
                         ("public_stats_viewable", "publicStatsViewable")):
        if ours in fields:
            status[theirs] = fields[ours]
    return {"snippet": snippet, "status": status}


def tiktok_request(document: dict, fields: dict, needs: list) -> dict:
    info: dict[str, Any] = {"title": document["caption"]}
    privacy = fields.get("privacy")
    if "privacy_level" in fields:
        info["privacy_level"] = fields["privacy_level"]
    elif privacy in TIKTOK_PRIVACY:
        info["privacy_level"] = TIKTOK_PRIVACY[privacy]
    elif privacy == "unlisted":
        needs.append(need("privacy_level", "TikTok has no unlisted post: set "
                                           "platforms.tiktok.privacy_level "
                                           "(MUTUAL_FOLLOW_FRIENDS or FOLLOWER_OF_CREATOR)"))
    for name in API_FIELDS["tiktok"][1:]:
        if name in fields:
            info[name] = fields[name]
    if "ai_generated" in fields:
        info["is_aigc"] = synthetic(fields["ai_generated"])
    return {"post_info": info}


def instagram_request(document: dict, fields: dict, needs: list) -> dict:
    privacy = fields.get("privacy")
    if privacy not in (None, "public"):
        needs.append(need("privacy", f"Instagram posts every reel as visible as the account; "
                                     f"privacy is {privacy}: set platforms.instagram.privacy "
                                     "to public, or do not post it there"))
    request: dict[str, Any] = {"media_type": "REELS", "caption": document["caption"]}
    for name in API_FIELDS["instagram"]:
        if name in fields:
            request[name] = fields[name]
    return request


def facebook_request(document: dict, fields: dict, needs: list) -> dict:
    request: dict[str, Any] = {"title": document["title"], "description": document["caption"]}
    privacy, publish_at = fields.get("privacy"), fields.get("publish_at")
    state = fields.get("video_state")
    if state is None and publish_at:
        state = "SCHEDULED" if privacy in (None, "public") else None
        if state is None:
            needs.append(need("privacy", f"publish_at schedules a public reel, but privacy "
                                         f"is {privacy}: remove one"))
    elif state is None and privacy in FACEBOOK_STATE:
        state = FACEBOOK_STATE[privacy]
    elif state is None and privacy == "unlisted":
        needs.append(need("video_state", "Facebook has no unlisted reel: set "
                                         "platforms.facebook.video_state or privacy"))
    if state == "SCHEDULED":
        if not publish_at:
            needs.append(need("publish_at", "video_state SCHEDULED needs publish_at"))
            state = None
        else:
            request["scheduled_publish_time"] = int(parse_time(publish_at).timestamp())
    if state:
        request["video_state"] = state
    return request


BUILDERS = {"youtube": youtube_request, "tiktok": tiktok_request,
            "instagram": instagram_request, "facebook": facebook_request}
# The field without which each API refuses the post, as the request names it.
PRIVACY_FIELD = {"youtube": ("status", "privacyStatus"), "tiktok": ("post_info", "privacy_level"),
                 "facebook": (None, "video_state")}


# Removed from every text of a request: control characters but line feed and tab, and the
# bidi embeddings and overrides (U+202A to U+202E), which reverse what a reader sees.
HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")


def without_hidden_characters(value: Any, field: str = "") -> tuple[Any, list[tuple[str, str]]]:
    """`value` with HIDDEN characters removed from each of its strings, and for each string
    changed (its field, e.g. post_info.title; what was removed, e.g. 'U+202E'). Pure."""
    if isinstance(value, str):
        found = HIDDEN.findall(value)
        if not found:
            return value, []
        names = ", ".join(sorted({f"U+{ord(char):04X}" for char in found}))
        return HIDDEN.sub("", value), [(field, names)]
    if isinstance(value, dict):
        removed, cleaned = [], {}
        for key, item in value.items():
            cleaned[key], more = without_hidden_characters(item, f"{field}.{key}" if field
                                                           else key)
            removed += more
        return cleaned, removed
    if isinstance(value, list):
        removed, cleaned = [], []
        for index, item in enumerate(value):
            item, more = without_hidden_characters(item, f"{field}[{index}]")
            cleaned.append(item)
            removed += more
        return cleaned, removed
    return value, []


# A frame of the video, in milliseconds from its start: a whole number within the video.
OFFSET_FIELDS = {"tiktok": ("post_info", "video_cover_timestamp_ms"),
                 "instagram": (None, "thumb_offset")}


def whole_number_problem(fields: dict[str, Any]) -> str | None:
    """Why an offset field is not a whole number of milliseconds (1.0 and 1e300 are floats
    in JSON: an API that takes an integer refuses them). Pure."""
    for _, name in OFFSET_FIELDS.values():
        value = fields.get(name)
        if isinstance(value, float):
            return f"{name}: {value!r} is not a whole number of milliseconds"
    return None


def offset_problem(request: dict[str, Any] | None, api: str | None,
                   duration_s: float) -> str | None:
    """Why the request's cover frame is not within the video (`duration_s`), or None. Pure."""
    if request is None or api not in OFFSET_FIELDS:
        return None
    where, name = OFFSET_FIELDS[api]
    value = (request.get(where) or {} if where else request).get(name)
    if isinstance(value, int) and value >= round(duration_s * 1000):
        return (f"{name}: {value} ms is past the end of the video ({duration_s:.3f} s): "
                "the cover frame must be one of the video's")
    return None


def build_request(source: dict[str, Any], document: dict[str, Any], spec: Spec
                  ) -> tuple[dict | None, dict[str, Any], list[str]]:
    """(request, upload, warnings) for one export. `request` is None when the platform's
    file names no `upload.api`. Raises SourceError (one line) when the request the fields
    make is not one the API takes (its schema, schemas/request_{api}.schema.json)."""
    warnings = unknown_key_warnings(source, spec)
    api = api_of(spec)
    fields = upload_fields(source, spec)
    if fields.get("publish_at") and "privacy" not in chosen_by_render(source, spec):
        # a platform file's default privacy is not the render's choice: a render that
        # schedules a post means it to be public then
        fields.pop("privacy", None)
    problem = whole_number_problem(fields)
    if problem:
        raise SourceError(problem)
    upload: dict[str, Any] = {
        "api": api, "privacy": fields.get("privacy"),
        "publish_at": utc_text(fields["publish_at"]) if fields.get("publish_at") else None,
        "made_for_kids": fields.get("made_for_kids"),
        "ai_generated": fields.get("ai_generated"), "needs": []}
    if api is None:
        upload["needs"].append(need("upload.api", f"platforms/{spec.name}.yaml has no "
                                                  "upload: section naming its API"))
        return None, upload, warnings
    needs = declaration_needs(api, fields, spec.name)
    declared = len(needs)
    if (spec.upload or {}).get("categories"):
        fields["categories"] = spec.upload["categories"]
    request, removed = without_hidden_characters(BUILDERS[api](document, fields, needs))
    warnings += [f"{field}: removed {what} (a control or bidi-override character the "
                 f"{api} API would take as text, or refuse)" for field, what in removed]
    where, key = PRIVACY_FIELD.get(api, (None, None))
    said = {item["field"] for item in needs[declared:]}
    if key and key not in (request.get(where) if where else request) and not said & {
            "privacy", "privacy_level", "video_state", "publish_at"}:
        # the builder said nothing of it: nothing set privacy at all
        needs.append(need("privacy", f"{api} requires {key}: set privacy in metadata.json "
                                     f"or platforms/{spec.name}.yaml upload:"))
    problem = first_schema_error(request, load_schema(f"request_{api}"))
    if problem is not None:
        raise SourceError(f"the {api} request is not one its API takes: {problem}")
    upload["needs"] = needs
    return request, upload, warnings
