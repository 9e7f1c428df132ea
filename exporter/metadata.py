"""Source metadata.json -> the upload metadata for one platform. Formatting is pure.

Plain formatting for now: platform-specific limits and cutting rules are their own issue.
"""

import json

from .errors import SourceError
from .spec import first_schema_error, load_schema


def load_source_metadata(path):
    """Parse and validate metadata.json; SourceError naming the file and the JSON path."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{path.name} is missing") from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path.name}: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path.name}: invalid JSON at line {exc.lineno} "
                          f"column {exc.colno}: {exc.msg}") from None
    problem = first_schema_error(document, load_schema("source-metadata"))
    if problem is not None:
        raise SourceError(f"{path.name}: {problem}")
    return document


def normalise_hashtag(tag):
    """'#Summer Vibes' -> 'SummerVibes'."""
    return "".join(tag.lstrip("#").split())


def format_metadata(source, spec):
    """The metadata document for `spec`'s platform: overrides applied, caption assembled."""
    merged = {**source, **source.get("platforms", {}).get(spec.name, {})}
    hashtags = [normalise_hashtag(t) for t in merged.get("hashtags", [])]
    hashtags = [t for t in hashtags if t]
    for required in spec.metadata.get("required_hashtags", []):
        if required.lower() not in {t.lower() for t in hashtags}:
            hashtags.append(required)
    title = merged["title"].strip()
    description = merged.get("description", "").strip()
    caption = "\n\n".join(part for part in
                          (title, description, " ".join(f"#{t}" for t in hashtags)) if part)
    return {
        "platform": spec.name,
        "title": title,
        "description": description,
        "hashtags": hashtags,
        "mentions": [m.lstrip("@") for m in merged.get("mentions", [])],
        "caption": caption,
        "language": merged.get("language"),
    }
