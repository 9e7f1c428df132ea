"""Conformance check of an output probe against its spec (no ffmpeg)."""

import pytest

from exporter.spec import load_specs
from exporter.verify import conformance_problems

from conftest import SHIPPED_PLATFORMS, probe_of

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
    (dict(video_bitrate=7_100_000), "video bitrate is 7100000 b/s"),
    (dict(video_bitrate=8_900_000), "video bitrate is 8900000 b/s"),
    (dict(has_audio=False, audio_codec=None), "audio track is missing"),
    (dict(audio_channels=1), "audio channels is 1"),
    (dict(audio_sample_rate=44100), "audio sample rate is 44100"),
    (dict(format_name="matroska,webm"), "container is 'matroska,webm'"),
])
def test_each_deviation_is_reported(changes, problem):
    problems = conformance_problems(output_probe(**changes), YOUTUBE, 3.0, faststart=True)
    assert any(problem in p for p in problems), problems


def test_bitrate_within_ten_percent_passes():
    for rate in (7_250_000, 8_750_000):
        assert conformance_problems(output_probe(video_bitrate=rate), YOUTUBE, 3.0, True) == []


def test_missing_faststart_is_a_problem():
    assert conformance_problems(output_probe(), YOUTUBE, 3.0, faststart=False) == [
        "moov is not before mdat (not faststart)"]


def test_a_remuxed_source_may_be_below_the_bitrate_but_not_over_maxrate():
    low = output_probe(video_bitrate=3_000_000)
    assert conformance_problems(low, YOUTUBE, 3.0, True, exact_bitrate=False) == []
    high = output_probe(video_bitrate=9_000_000)
    assert conformance_problems(high, YOUTUBE, 3.0, True, exact_bitrate=False) == [
        "video bitrate is 9000000 b/s, over the maxrate 8000000"]
