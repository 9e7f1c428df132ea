"""Source metadata loading and formatting for the shipped platforms (no ffmpeg)."""

import json

import jsonschema
import pytest
from conftest import SHIPPED_PLATFORMS

from exporter.metadata import format_metadata, load_source_metadata
from exporter.model.errors import SourceError
from exporter.model.spec import load_schema, load_specs

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once

SPECS = load_specs(SHIPPED_PLATFORMS)


def write(tmp_path, content):
    path = tmp_path / "metadata.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.mark.parametrize("content, message", [
    ('{"title": 5}', "metadata.json: title: 5 is not of type 'string'"),
    ('{"description": "x"}', "metadata.json: (top level): 'title' is a required property"),
    ('{"title": "t", "hashtags": ["a", 3]}', "metadata.json: hashtags.1: 3 is not of type"),
    ('{"title": "t",', "metadata.json: invalid JSON at line 1"),
    (b'{"title": "caf\xe9"}', "metadata.json: not UTF-8 (byte 14)"),
])
def test_errors_name_the_file_and_the_json_path(tmp_path, content, message):
    with pytest.raises(SourceError) as caught:
        load_source_metadata(write(tmp_path, content))
    assert message in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match="metadata.json is missing"):
        load_source_metadata(tmp_path / "metadata.json")


def test_unknown_keys_are_allowed(tmp_path):
    document = {"title": "t", "upstream_step": {"id": 4}}
    assert load_source_metadata(write(tmp_path, json.dumps(document))) == document


def test_formatting_with_overrides_and_required_hashtag():
    source = {"title": " My story ", "description": "About it.",
              "hashtags": ["#Summer Vibes", "fun", ""],
              "platforms": {"youtube": {"title": "My story for YouTube"}}}
    youtube, youtube_warnings = format_metadata(source, SPECS["youtube"])
    assert youtube["title"] == "My story for YouTube"
    assert youtube["hashtags"] == ["SummerVibes", "fun", "Shorts"]
    # YouTube posts the title as its own field: the caption is the video description
    assert youtube["caption"] == "About it.\n\n#SummerVibes #fun #Shorts"
    assert youtube["tags"] == ["SummerVibes", "fun", "Shorts"]
    assert youtube_warnings == ["hashtag '' dropped: nothing in it a hashtag can hold"]
    tiktok, _ = format_metadata(source, SPECS["tiktok"])
    assert tiktok["title"] == "My story" and "Shorts" not in tiktok["hashtags"]
    assert tiktok["caption"] == "My story\n\nAbout it.\n\n#SummerVibes #fun"
    for document in (youtube, tiktok):
        jsonschema.validate(document, load_schema("platform-metadata"))


def test_unknown_keys_and_per_platform_overrides_are_validated(tmp_path):
    document = {"title": "t", "platforms": {"tiktok": {"hashtags": "fun", "extra": 1}}}
    with pytest.raises(SourceError, match="metadata.json: platforms.tiktok.hashtags: 'fun' "
                                          "is not of type 'array'"):
        load_source_metadata(write(tmp_path, json.dumps(document)))
    document["platforms"]["tiktok"]["hashtags"] = ["fun"]
    assert load_source_metadata(write(tmp_path, json.dumps(document))) == document


def test_sample_metadata_is_accepted_and_unchanged_by_every_platform():
    source = {"title": "Sunset, vertical", "description": "A vertical render with sound.",
              "hashtags": ["sunset", "#Golden Hour"], "language": "en"}
    for spec in SPECS.values():
        document, warnings = format_metadata(source, spec)
        assert warnings == [] and document["language"] == "en"
        jsonschema.validate(document, load_schema("platform-metadata"))
