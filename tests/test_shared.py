"""Which exports share an encode, and when a source is remuxed (pure, no ffmpeg)."""

import os
from dataclasses import replace

import pytest
from conftest import SHIPPED_PLATFORMS
from test_plan import source_probe

from exporter.media.plan import build_encode, build_plan, remux_problems
from exporter.media.shared import SharedCache, share_key
from exporter.model.errors import CacheChanged
from exporter.model.spec import load_specs

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once

SPECS = load_specs(SHIPPED_PLATFORMS)
SOURCE = "ab" * 32


def key_for(name, duration_s=30.0, source=SOURCE, preset=None):
    spec = SPECS[name]
    probe = source_probe(duration_s=duration_s)
    plan = build_plan("ffmpeg", "in.mp4", probe, spec, "out", preset)
    settings = {**spec.encode_settings(preset), "ffmpeg_version": "ffmpeg 9"}
    return share_key(source, plan, settings)


def test_youtube_instagram_facebook_share_below_60s_tiktok_does_not():
    keys = {name: key_for(name) for name in SPECS}
    assert keys["youtube"] == keys["instagram"] == keys["facebook"]
    assert keys["tiktok"] != keys["youtube"]


def test_a_source_trimmed_for_one_platform_does_not_share_with_the_others():
    trim = {**SPECS["youtube"].limits, "on_overlong": "trim"}
    SPECS_TRIM = replace(SPECS["youtube"], limits=trim)
    probe = source_probe(duration_s=75.0)
    settings = lambda spec: {**spec.encode_settings(), "ffmpeg_version": "ffmpeg 9"}
    youtube = build_encode("ffmpeg", "in.mp4", probe, SPECS_TRIM, "out")
    instagram = build_encode("ffmpeg", "in.mp4", probe, SPECS["instagram"], "out")
    assert youtube.duration_s == 60.0 and instagram.duration_s == 75.0
    assert (share_key(SOURCE, youtube, settings(SPECS_TRIM))
            != share_key(SOURCE, instagram, settings(SPECS["instagram"])))


def test_byte_identical_sources_share_and_other_sources_or_presets_do_not():
    assert key_for("youtube", source="ab" * 32) == key_for("youtube", source="ab" * 32)
    assert key_for("youtube", source="cd" * 32) != key_for("youtube")
    assert key_for("youtube", preset="medium") != key_for("youtube")     # shipped: veryfast


def conforming_probe(**changes):
    facts = dict(format_name="matroska,webm", width=1080, height=1920, fps=30.0,
                 video_bitrate=8_000_000, audio_channels=2, audio_sample_rate=48000,
                 duration_s=20.0)
    facts.update(changes)
    return source_probe(**facts)


def test_a_conforming_source_is_remuxed():
    plan = build_plan("ffmpeg", "in.mkv", conforming_probe(), SPECS["youtube"], "out.mp4")
    assert plan.mode == "remux"
    assert "-c" in plan.argv and plan.argv[plan.argv.index("-c") + 1] == "copy"
    assert any("+faststart" in arg for arg in plan.argv) and "-map_metadata" in plan.argv
    assert remux_problems(conforming_probe(), SPECS["youtube"]) == []


def test_any_mismatch_means_encode():
    for changes in (dict(width=720, height=1280), dict(fps=25.0), dict(rotation=90),
                    dict(profile="Main"), dict(pix_fmt="yuv422p"), dict(audio_channels=1),
                    dict(audio_sample_rate=44100), dict(video_bitrate=8_500_000),
                    dict(has_audio=False, audio_codec=None), dict(duration_s=75.0)):
        probe = conforming_probe(**changes)
        assert remux_problems(probe, SPECS["youtube"]), changes
    # 8 Mb/s is over TikTok's 6 Mb/s maxrate: TikTok encodes while the others remux
    assert build_plan("ffmpeg", "in", conforming_probe(), SPECS["tiktok"], "o").mode == "encode"


def test_a_source_below_the_spec_bitrate_is_kept_as_it_is():
    # a 6 Mb/s render conforms to every shipped platform: the platforms take anything up
    # to maxrate, and encoding it up to 8 Mb/s would only add loss
    probe = conforming_probe(video_bitrate=6_000_000)
    assert all(build_plan("ffmpeg", "in", probe, spec, "o").mode == "remux"
               for spec in SPECS.values())


def test_remux_and_encode_of_the_same_source_do_not_share():
    probe = conforming_probe(duration_s=30.0)
    remux = build_plan("ffmpeg", "in", probe, SPECS["youtube"], "o")
    encode = build_encode("ffmpeg", "in", probe, SPECS["youtube"], "o")
    assert (remux.mode, encode.mode) == ("remux", "encode")
    settings = {**SPECS["youtube"].encode_settings(), "ffmpeg_version": "ffmpeg 9"}
    assert share_key(SOURCE, remux, settings) != share_key(SOURCE, encode, settings)


def test_prune_removes_what_killed_runs_were_writing_in_the_cache_and_its_folders(tmp_path):
    cache = SharedCache(tmp_path)
    left = [cache.root / ".k1.mp4.123.tmp", cache.root / "loudness/.loudness-k2.json.x.tmp"]
    kept = cache.root / "loudness/loudness-k2.json"
    for path in [*left, kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    cache.prune()
    assert [path.exists() for path in left] == [False, False]
    assert kept.exists(), "a finished measurement stays"


def stored(cache, key, data):
    cache.root.mkdir(parents=True, exist_ok=True)
    temp = cache.root / f".{key}.tmp"
    temp.write_bytes(data)
    cache.store(key, temp, {"made_by": "youtube:t1", "wanted_by": ["instagram:t1"],
                            "source_sha256": "s"})
    return cache.path(key)


def test_an_export_holds_its_own_bytes_and_a_write_to_it_changes_no_other(tmp_path):
    cache = SharedCache(tmp_path)
    entry = stored(cache, "k1", b"encoded" * 1000)
    youtube, facebook = tmp_path / "youtube.mp4", tmp_path / "facebook.mp4"
    assert cache.copy_to("k1", youtube) == cache.record("k1")["sha256"]
    cache.copy_to("k1", facebook)
    assert youtube.stat().st_ino != facebook.stat().st_ino != entry.stat().st_ino
    with open(youtube, "r+b") as handle:        # dd conv=notrunc into one export
        handle.write(b"XXXX")
    assert facebook.read_bytes() == entry.read_bytes() == b"encoded" * 1000


def test_a_cache_entry_changed_in_place_is_never_shared_and_is_removed(tmp_path):
    cache = SharedCache(tmp_path)
    entry = stored(cache, "k1", b"encoded" * 1000)
    assert cache.usable("k1")
    mtime = entry.stat().st_mtime_ns
    with open(entry, "r+b") as handle:
        handle.seek(100)
        handle.write(b"XXXX")
    os.utime(entry, ns=(mtime, mtime))          # and its mtime put back
    assert not cache.usable("k1")
    assert not entry.exists() and cache.record("k1") is None


def test_a_copy_that_differs_from_the_record_fails_and_drops_the_entry(tmp_path):
    cache = SharedCache(tmp_path)
    entry = stored(cache, "k1", b"encoded" * 1000)
    entry.write_bytes(b"changed after it was checked")
    with pytest.raises(CacheChanged):
        cache.copy_to("k1", tmp_path / "youtube.mp4")
    assert not entry.exists()


def test_prune_keeps_only_entries_an_export_still_waits_for(tmp_path):
    cache = SharedCache(tmp_path)
    wanted, done = stored(cache, "k1", b"a"), stored(cache, "k2", b"b")
    assert cache.prune(lambda record: record["sha256"] == cache.record("k1")["sha256"]) == 1
    assert wanted.exists() and not done.exists()
