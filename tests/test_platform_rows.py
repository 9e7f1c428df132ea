"""Every row docs/platforms.md calls "Matches", read back from the files one export wrote.

One hostile title (a 150-character title with `<b>`, 6,000 characters of description, 70
hashtags, 25 mentions, a landscape thumbnail) is exported by `doit` to the four shipped
platforms at their full size. Each test reads what the platform would receive (the video,
the request file, the cover) and checks the platform's published rule on it, with the
figures restated here from the platforms' references, not read from our specs.

With the bundled ffmpeg only (`once`): what is ffmpeg's here is checked on Debian's too,
at full size by the sample library (assert_conforms: codec, profile, chroma, bitrate,
size, duration, audio, moov first) and by the conformance matrix (no edit lists); what
is this file's own, the request files and the covers' rules, is the tool's."""

import json

import pytest
from pymediainfo import MediaInfo
from conftest import TEST_FFMPEG, made_once, media_facts, run_doit
from test_acceptance import tracks_with_edit_lists

from exporter.media.ffmpeg import run_ffmpeg
from exporter.media.samples import make_clip

pytestmark = [pytest.mark.slow, pytest.mark.once]

TITLE = "A title that runs far past what YouTube takes <b>bold</b> " * 3
HASHTAGS = [f"tag{number:02d}" for number in range(70)]
MENTIONS = [f"person{number:02d}" for number in range(25)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    def make(root):
        title = root / "renders/women/18-23/hostile"
        make_clip(title / "final.mp4", width=1080, height=1920, seconds=3, fps=30)
        thumbnail = make_clip(root / "thumb.mp4", width=1920, height=1080, seconds=1)
        run_ffmpeg([TEST_FFMPEG, "-loglevel", "error", "-i", str(thumbnail), "-frames:v", "1",
                    "-update", "1", str(title / "thumbnail.jpg")])
        (title / "metadata.json").write_text(json.dumps({
            "title": TITLE, "description": "Words <and> more words. " * 250,
            "hashtags": HASHTAGS, "mentions": MENTIONS, "made_for_kids": False,
            "ai_generated": False, "privacy": "public",
            "platforms": {"tiktok": {"brand_content_toggle": False}}}), encoding="utf-8")
        run_doit(f"renders={root / 'renders'}", f"exports={root / 'exports'}", "-n", "2",
                 check=0)
    root, _ = made_once(tmp_path_factory, "rows", make)
    return root / "exports/women/18-23/hostile"


def request_file(exported, platform):
    return json.loads((exported / f"metadata_{platform}.json").read_text(encoding="utf-8"))


def test_youtube_video_bitrate_codec_and_container(exported):
    facts = media_facts(exported / "youtube.mp4")
    assert facts["video_bitrate"] <= 8_000_000 * 1.05            # 8 Mbps at 30 fps
    assert facts["video_format"] == "AVC" and facts["profile"].startswith("High@")
    assert facts["chroma"] == "4:2:0" and facts["streamable"]     # moov first
    assert tracks_with_edit_lists(exported / "youtube.mp4") == []


def test_youtube_title_description_tags_and_hashtags(exported):
    snippet = request_file(exported, "youtube")["request"]["snippet"]
    assert 0 < len(snippet["title"]) <= 100
    assert len(snippet["description"].encode("utf-8")) <= 5000
    for text in (snippet["title"], snippet["description"]):
        assert "<" not in text and ">" not in text
    assert snippet["description"].count("#") <= 60               # over 60: all ignored
    tags = snippet["tags"]
    # commas between tags count, a tag with a space counts its quotes
    assert sum(len(t) + 2 * (" " in t) for t in tags) + len(tags) - 1 <= 500


def test_tiktok_codec_container_and_caption(exported):
    facts = media_facts(exported / "tiktok.mp4")
    assert facts["video_format"] == "AVC" and facts["streamable"]
    caption = request_file(exported, "tiktok")["request"]["post_info"]["title"]
    assert 0 < len(caption.encode("utf-16-le")) // 2 <= 2200     # UTF-16 runes


def test_instagram_container_audio_caption_and_cover(exported):
    video = exported / "instagram.mp4"
    facts = media_facts(video)
    assert tracks_with_edit_lists(video) == [] and facts["streamable"]
    assert facts["audio_format"] == "AAC" and facts["sample_rate"] <= 48000
    assert facts["channels"] in (1, 2) and facts["duration_s"] >= 3.0
    caption = request_file(exported, "instagram")["request"]["caption"]
    assert len(caption) <= 2200
    assert caption.count("#") <= 30 and caption.count("@") <= 20
    cover = exported / "instagram.cover.jpg"
    (image,) = MediaInfo.parse(str(cover)).image_tracks
    assert image.format == "JPEG" and cover.stat().st_size <= 8_000_000
    assert b"ICC_PROFILE" not in cover.read_bytes()    # no other profile: read as sRGB
    assert int(image.width) * 16 == int(image.height) * 9         # 9:16 recommended


def test_facebook_resolution_and_duration(exported):
    facts = media_facts(exported / "facebook.mp4")
    assert (facts["width"], facts["height"]) == (1080, 1920)
    assert 3.0 <= facts["duration_s"] <= 90
