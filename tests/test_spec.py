"""Platform YAML loading and its errors (no ffmpeg)."""

import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import SHIPPED_PLATFORMS, load_yaml, set_field

import exporter.model.spec as spec_module
from exporter.model.errors import SpecError
from exporter.model.spec import digest, load_spec, load_specs, select_specs

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once


def write_spec(directory, name, **edits):
    document = load_yaml(SHIPPED_PLATFORMS / "youtube.yaml")
    document["name"] = name
    for dotted, value in edits.items():
        set_field(document, dotted, value)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_shipped_specs_match_the_design_table():
    specs = load_specs(SHIPPED_PLATFORMS)
    table = {name: (s.video["width"], s.video["height"], s.limits["max_duration_s"],
                    s.limits["max_size_bytes"], s.video["bitrate"], s.video["codec"])
             for name, s in specs.items()}
    assert table == {
        "youtube": (1080, 1920, 60, 256_000_000, 8_000_000, "h264"),
        "tiktok": (1080, 1920, 60, 287_000_000, 6_000_000, "h264"),
        "instagram": (1080, 1920, 90, 250_000_000, 8_000_000, "h264"),
        "facebook": (1080, 1920, 90, 250_000_000, 8_000_000, "h264"),
    }


@pytest.mark.parametrize("field, value, message", [
    ("video.bitrate", "fast", "video.bitrate: 'fast' is not of type 'integer'"),
    ("video.width", 1081, "video.width: 1081 is not a multiple of 2"),
    ("fit", "stretch", "fit: 'stretch' is not one of ['crop', 'pad', 'blur']"),
    ("limits.on_overlong", "cut", "limits.on_overlong: 'cut' is not one of"),
    ("audio", None, "'audio' is a required property"),
    ("video.colour", 1, "video: Additional properties are not allowed ('colour' was unexpected)"),
])
def test_schema_errors_name_file_and_field(tmp_path, field, value, message):
    path = write_spec(tmp_path, "custom", **{field: value})
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_name_must_match_file(tmp_path):
    path = write_spec(tmp_path, "custom")
    path.rename(tmp_path / "other.yaml")
    with pytest.raises(SpecError, match="name: 'custom' must equal the file name 'other'"):
        load_spec(tmp_path / "other.yaml")


@pytest.mark.parametrize("name", ["export", "uploads", "uploaded", "watch", "history"])
def test_reserved_name_is_refused(tmp_path, name):
    with pytest.raises(SpecError, match="reserved"):
        load_spec(write_spec(tmp_path, name))


def test_every_command_we_add_is_a_reserved_name():
    """A platform named like a command would shadow it (`doit uploads` running a group)."""
    import tomllib

    from exporter.model.spec import RESERVED_NAMES
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    commands = pyproject["tool"]["doit"]["plugins"]["command"]
    assert set(commands) <= RESERVED_NAMES


def test_a_size_cap_that_could_be_exceeded_is_refused(tmp_path):
    path = write_spec(tmp_path, "custom", **{"limits.max_size_bytes": 10_000_000})
    with pytest.raises(SpecError, match="limits.max_size_bytes: 10000000 could be exceeded"):
        load_spec(path)


def test_unreadable_yaml_is_a_spec_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(SpecError, match="broken.yaml: cannot read"):
        load_spec(path)


def test_unknown_platform_selection_lists_what_exists():
    with pytest.raises(SpecError, match="unknown platform vimeo; available: facebook, "
                                        "instagram, tiktok, youtube"):
        select_specs(load_specs(SHIPPED_PLATFORMS), ("youtube", "vimeo"))
    assert list(select_specs(load_specs(SHIPPED_PLATFORMS), ("youtube",))) == ["youtube"]


def test_an_invalid_spec_stops_loading(tmp_path):
    write_spec(tmp_path, "good")
    write_spec(tmp_path, "bad", **{"video.fps": 0})
    with pytest.raises(SpecError, match="bad.yaml: video.fps"):
        load_specs(tmp_path)


def test_platform_files_found_valid_are_not_validated_again_until_one_changes(
        tmp_path, monkeypatch):
    platforms, memo = tmp_path / "platforms", tmp_path / "exports" / ".platforms-checked.json"
    shutil.copytree(SHIPPED_PLATFORMS, platforms)    # a first run: no exports root yet
    validated = []
    real = spec_module.first_schema_error
    monkeypatch.setattr(spec_module, "first_schema_error",
                        lambda *args: validated.append(1) or real(*args))
    first = load_specs(platforms, memo)
    assert len(validated) == len(first) and not memo.parent.exists(), "nothing created"
    memo.parent.mkdir()         # the run made its root: the memo of what it validated
    spec_module.remember_validated(memo)
    assert memo.exists()
    assert load_specs(platforms, memo) == first and len(validated) == len(first), \
        "unchanged files: not validated again"
    document = load_yaml(platforms / "tiktok.yaml")
    set_field(document, "video.bitrate", "fast")      # an edit, even with the old mtime
    stat = (platforms / "tiktok.yaml").stat()
    (platforms / "tiktok.yaml").write_text(yaml.safe_dump(document))
    os.utime(platforms / "tiktok.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(SpecError, match="tiktok.yaml: video.bitrate"):
        load_specs(platforms, memo)
    (platforms / "tiktok.yaml").unlink()
    (platforms / "mine.yaml").write_text("name: [")    # a new file is read and checked
    with pytest.raises(SpecError, match="mine.yaml: cannot read"):
        load_specs(platforms, memo)


def test_encode_settings_ignore_metadata_rules_but_follow_the_preset(tmp_path):
    plain = load_spec(write_spec(tmp_path, "custom"))
    (tmp_path / "edited").mkdir()
    relaxed = load_spec(write_spec(tmp_path / "edited", "custom", **{"metadata.max_hashtags": 3}))
    assert digest(plain.encode_settings()) == digest(relaxed.encode_settings())
    assert digest(plain.encode_settings()) != digest(plain.encode_settings("ultrafast"))
    assert plain.encode_settings("ultrafast")["video"]["preset"] == "ultrafast"


def test_youtube_instagram_facebook_share_encode_settings_below_60s():
    specs = load_specs(SHIPPED_PLATFORMS)
    video = {name: s.encode_settings()["video"] for name, s in specs.items()}
    assert video["youtube"] == video["instagram"] == video["facebook"] != video["tiktok"]


def test_shipped_specs_state_the_upload_apis_rules():
    limits = {name: spec.limits for name, spec in load_specs(SHIPPED_PLATFORMS).items()}
    for name in ("instagram", "facebook"):
        assert limits[name]["min_duration"] == 3 and limits[name]["on_short"] == "reject"
        assert limits[name]["keyframes"]["closed_gop"] is True
    assert limits["facebook"]["keyframes"] == {"closed_gop": True, "min_interval_s": 2,
                                                   "max_interval_s": 5}
    assert limits["facebook"]["audio"] == {"profile": "LC", "min_bitrate": 128000}
    assert limits["youtube"]["edit_lists"] is False and limits["instagram"]["edit_lists"] is False
    assert "min_duration" not in limits["youtube"] and "min_duration" not in limits["tiktok"]


@pytest.mark.parametrize("field, value, message", [
    ("limits.on_short", "stretch", "limits.on_short: 'stretch' is not one of ['reject', 'pad']"),
    ("limits.min_duration", -1, "limits.min_duration: -1 is less than the minimum of 0"),
    ("limits.min_duration", 61, "limits.min_duration: 61 is over limits.max_duration_s 60"),
    ("limits.keyframes", {"max_interval_s": 1},
     "video.gop: 60 frames at 30 fps is a keyframe every 2 s, outside limits.keyframes (0 to 1 s)"),
    ("limits.keyframes", {"closed": True}, "limits.keyframes: Additional properties"),
    ("limits.edit_lists", "no", "limits.edit_lists: 'no' is not of type 'boolean'"),
    ("limits.audio", {"min_bitrate": 192000},
     "audio.bitrate: 128000 is below limits.audio.min_bitrate 192000"),
    ("limits.audio", {"profile": "HE"}, "limits.audio.profile: 'HE' is not one of ['LC']"),
])
def test_a_users_own_acceptance_rules_are_validated(tmp_path, field, value, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        load_spec(write_spec(tmp_path, "custom", **{field: value}))


def test_a_users_own_minimum_and_pad_load(tmp_path):
    spec = load_spec(write_spec(tmp_path, "custom", **{
        "limits.min_duration": 5, "limits.on_short": "pad",
        "limits.keyframes": {"closed_gop": True, "min_interval_s": 1, "max_interval_s": 4}}))
    assert spec.min_duration == 5.0 and spec.on_short == "pad"


@pytest.mark.parametrize("name", ["final", "metadata", "thumbnail"])
def test_a_platform_named_like_a_renders_file_is_refused_by_the_schema(tmp_path, name):
    """Its exports would be final.mp4, metadata.json...: `doit clean` of it deleted a
    render where the renders and the exports met."""
    with pytest.raises(SpecError, match=f"{name}.yaml: name: '{name}' does not match"):
        load_spec(write_spec(tmp_path, name))
    load_spec(write_spec(tmp_path, f"{name}s"))         # a name beginning so is fine


@pytest.mark.parametrize("field, value, shown", [
    ("limits.min_duration", float("nan"), ".nan"),
    ("limits.max_duration_s", float("inf"), ".inf"),
    ("quality.vmaf.max_drop", float("-inf"), "-.inf"),
])
def test_nan_and_infinity_are_refused_in_one_line(tmp_path, field, value, shown):
    """YAML's .nan passed the schema and failed every title; .inf was a traceback."""
    path = write_spec(tmp_path, "custom", **{field: value})
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert str(caught.value) == f"{path}: {field}: {shown} is not a number a platform file can take"


def test_a_preset_that_cannot_make_the_profile_is_refused_at_load(tmp_path):
    path = write_spec(tmp_path, "custom", **{"video.preset": "ultrafast"})
    with pytest.raises(SpecError, match="video.preset: preset ultrafast cannot make profile "
                                        "high"):
        load_spec(path)
    load_spec(write_spec(tmp_path, "fine", **{"video.preset": "superfast"}))
    baseline = write_spec(tmp_path, "base", **{"video.preset": "ultrafast",
                                               "video.profile": "baseline"})
    assert load_spec(baseline).preset == "ultrafast"
