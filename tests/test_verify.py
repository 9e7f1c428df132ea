"""Conformance check of an output probe against its spec (no ffmpeg)."""

import pytest
from conftest import SHIPPED_PLATFORMS, probe_of

from exporter.media.verify import conformance_problems
from exporter.model.spec import load_specs

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once

YOUTUBE = load_specs(SHIPPED_PLATFORMS)["youtube"]


def output_probe(**changes):
    return probe_of(**changes)


def test_a_conforming_output_has_no_problems():
    assert conformance_problems(output_probe(), YOUTUBE, 3.0, faststart=True) == []


@pytest.mark.parametrize("changes, problem", [
    (dict(video_codec="hevc"), "video codec is 'hevc'"),
    (dict(profile="Constrained Baseline"), "profile is 'constrained baseline'"),
    (dict(pix_fmt="yuv420p10le"), "pix_fmt is 'yuv420p10le'"),
    (dict(width=1920, height=1080), "size is '1920x1080'"),
    (dict(rotation=90), "rotation is 90"),
    (dict(fps=29.97), "frame rate is 29.97 fps"),
    (dict(duration_s=2.5), "duration is 2.500 s, expected 3.000 s"),
    (dict(size_bytes=300_000_000), "over the cap 256000000"),
    (dict(video_bitrate=3_900_000), "under 50% of the constant 8000000"),
    (dict(video_bitrate=8_500_000), "more than 5% over the spec's 8000000"),
    (dict(video_bitrate=None), "video bitrate is unknown"),
    (dict(has_audio=False, audio_codec=None), "audio track is missing"),
    (dict(audio_channels=1), "audio channels is 1"),
    (dict(audio_sample_rate=44100), "audio sample rate is 44100"),
    (dict(format_name="matroska,webm"), "container is 'matroska,webm'"),
])
def test_each_deviation_is_reported(changes, problem):
    problems = conformance_problems(output_probe(**changes), YOUTUBE, 3.0, faststart=True)
    assert any(problem in p for p in problems), problems


def test_a_bitrate_a_platform_takes_passes():
    """Platforms cap a file; they do not refuse one for landing under its bitrate."""
    for rate in (4_000_000, 7_178_987, 8_000_000, 8_400_000):
        assert conformance_problems(output_probe(video_bitrate=rate), YOUTUBE, 3.0, True) == []


def test_a_variable_rate_spec_has_no_floor():
    """A flat colour encodes to almost nothing when the spec lets the rate vary."""
    from dataclasses import replace
    vbr = replace(YOUTUBE, video={**YOUTUBE.video, "maxrate": 12_000_000})
    assert conformance_problems(output_probe(video_bitrate=20_000), vbr, 3.0, True) == []
    over = conformance_problems(output_probe(video_bitrate=8_500_000), vbr, 3.0, True)
    assert over and "more than 5% over" in over[0]


def test_every_cause_says_what_to_do():
    bad = output_probe(video_codec="hevc", size_bytes=300_000_000, duration_s=75.0)
    problems = conformance_problems(bad, YOUTUBE, 75.0, faststart=False)
    assert len(problems) == 4
    assert all("(" in p and p.endswith(")") for p in problems), problems


def test_missing_faststart_is_a_problem():
    problems = conformance_problems(output_probe(), YOUTUBE, 3.0, faststart=False)
    assert len(problems) == 1 and problems[0].startswith("moov is not before mdat")


def test_a_remuxed_source_may_be_below_the_bitrate_but_not_over_maxrate():
    low = output_probe(video_bitrate=3_000_000)
    assert conformance_problems(low, YOUTUBE, 3.0, True, encoded=False) == []
    high = output_probe(video_bitrate=9_000_000)
    assert conformance_problems(high, YOUTUBE, 3.0, True, encoded=False) == [
        "video bitrate is 9000000 b/s, over the maxrate 8000000 "
        "(the source is re-encoded when this check fails)"]


def test_a_source_copied_as_it_is_meets_the_apis_keyframe_rules_not_our_encoders_grid():
    """A render made for the platforms with x264's default 250-frame closed GOP is what
    YouTube, Instagram and TikTok take: remuxed. Facebook's Reels API asks for 2 to 5 s:
    encoded. Our own encode is held to its fixed grid of `gop` frames."""
    specs = load_specs(SHIPPED_PLATFORMS)
    source = output_probe(duration_s=12.0, video_bitrate=5_000_000, keyframe_intervals=(250,),
                          first_keyframe_frame=0,
                          closed_gop=True)
    for name in ("youtube", "instagram", "tiktok"):
        assert conformance_problems(source, specs[name], 12.0, True, encoded=False) == [], name
    (problem,) = conformance_problems(source, specs["facebook"], 12.0, True, encoded=False)
    assert problem.startswith("a keyframe interval of 8.33333 s is outside the platform's "
                              "2 to 5 s"), problem
    own = conformance_problems(source, specs["youtube"], 12.0, True)
    assert any("expected every 60 (a fixed grid" in p for p in own), own
    open_gop = output_probe(keyframe_intervals=(60,), first_keyframe_frame=0, closed_gop=False)
    assert any("open GOP" in p for p in
               conformance_problems(open_gop, specs["youtube"], 3.0, True, encoded=False))


@pytest.mark.parametrize("frames, expected", [
    (90, 90),       # 3 s: one GOP of 3 s, not 2 s + 1 s
    (120, 60),      # 4 s: 2 + 2, the spec's own grid
    (135, 68),      # 4.5 s: 2.27 + 2.23, not 2 + 2 + 0.5
    (1800, 60),     # 60 s: thirty GOPs of 2 s
    (1799, None),   # 59.97 s: not 60 (its last GOP 1.97 s); any interval that fits
])
def test_the_gop_is_chosen_per_clip_so_that_the_last_one_is_within_bounds(frames, expected):
    from exporter.media.verify import clip_gop
    facebook = load_specs(SHIPPED_PLATFORMS)["facebook"]
    bounds = facebook.limits["keyframes"]
    gop = clip_gop(facebook.video, bounds, frames)
    last = frames - ((frames - 1) // gop) * gop
    fps = facebook.video["fps"]
    assert frames <= gop or 2 <= last / fps <= 5, (gop, last)
    assert 2 <= gop / fps <= 5
    assert gop == expected or (expected is None and gop != 60)
    # no bounds (YouTube): the spec's grid whatever the length
    assert clip_gop(YOUTUBE.video, YOUTUBE.limits.get("keyframes", {}), frames) == 60


def test_a_last_gop_outside_the_bounds_is_a_problem():
    specs = load_specs(SHIPPED_PLATFORMS)
    short_tail = output_probe(keyframe_intervals=(60,), first_keyframe_frame=0, closed_gop=True,
                              keyframes=2, video_frames=90, last_gop_frames=30)
    problems = conformance_problems(short_tail, specs["facebook"], 3.0, True, encoded=False)
    assert any("the last GOP lasts 1 s, outside the platform's 2 to 5 s" in p
               for p in problems), problems
    assert conformance_problems(short_tail, specs["youtube"], 3.0, True, encoded=False) == []
