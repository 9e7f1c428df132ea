"""Command building: (probe, spec) -> argv, pure (no ffmpeg)."""

import pytest
from conftest import SHIPPED_PLATFORMS, probe_of

from exporter.media.plan import build_encode, build_encodes, fit_filter
from exporter.model.errors import SourceError
from exporter.model.spec import load_specs

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once

SPECS = load_specs(SHIPPED_PLATFORMS)


def source_probe(**changes):
    """A 12 s landscape 25 fps render with 44.1 kHz audio: every platform must encode it."""
    landscape = dict(size_bytes=1000, duration_s=12.0, width=1920, height=1080, fps=25.0,
                     video_bitrate=5_000_000, audio_sample_rate=44100)
    return probe_of(**{**landscape, **changes})


def option(argv, flag):
    """The value following `flag` in argv (first occurrence)."""
    return argv[argv.index(flag) + 1]


def build(spec="youtube", **changes):
    return build_encode("ffmpeg", "in.mp4", source_probe(**changes), SPECS[spec], "out.tmp")


def test_argv_is_a_list_with_the_spec_settings():
    plan = build()
    argv = plan.argv
    assert argv[0] == "ffmpeg" and argv[-3:] == ["-f", "mp4", "out.tmp"]
    assert option(argv, "-protocol_whitelist") == "file"
    assert option(argv, "-format_whitelist") == "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts"
    assert option(argv, "-i") == "in.mp4"
    assert option(argv, "-c:v") == "libx264" and option(argv, "-profile:v") == "high"
    assert option(argv, "-pix_fmt") == "yuv420p"
    assert option(argv, "-b:v") == option(argv, "-maxrate") == "8000000"
    assert option(argv, "-bufsize") == "4562962"      # clip_bufsize of a 12 s clip
    # keyframes every gop frames, never at a scene cut, each an IDR (a closed GOP)
    assert option(argv, "-x264-params") == "vbv-init=0.9:scenecut=0:open-gop=0:nal-hrd=cbr"
    assert option(argv, "-g") == option(argv, "-keyint_min") == "60"
    assert option(argv, "-fps_mode") == "cfr" and option(argv, "-r") == "30"
    assert option(argv, "-c:a") == "aac" and option(argv, "-ac") == "2"
    assert option(argv, "-ar") == "48000"
    assert option(argv, "-movflags") == "+faststart+negative_cts_offsets"
    assert option(argv, "-use_editlist") == "0"            # no edit lists
    assert option(argv, "-profile:a") == "aac_low"
    assert option(argv, "-map_metadata") == "-1"
    assert option(argv, "-fs") == "256000000"
    assert option(argv, "-t") == "12.000" and plan.duration_s == 12.0 and not plan.trimmed
    assert option(argv, "-preset") == "veryfast"      # the shipped spec's
    graph = option(argv, "-filter_complex")
    assert graph.startswith("[0:v:0]fps=30[rate0];")
    # an SDR BT.709 source: no conversion; every output tagged SDR BT.709 limited range
    assert "zscale" not in graph
    assert graph.endswith("format=yuv420p,setparams=range=tv:color_primaries=bt709"
                          ":color_trc=bt709:colorspace=bt709[v0]")
    assert [option(argv, name) for name in ("-colorspace", "-color_primaries", "-color_trc",
                                            "-color_range")] == ["bt709"] * 3 + ["tv"]
    assert option(argv, "-map") == "[v0]"


@pytest.mark.parametrize("seconds, bufsize", [
    (1 / 30, 8_000_000 / 30 * 1.04 / 0.9),     # one frame: its own share, plus 4 %
    (1.0, 8_000_000 / 30 * (1 + 0.04 * 30) / 0.9),
    (3.0, 8_000_000 / 30 * (1 + 0.04 * 90) / 0.9),
    (30.0, 8_000_000),                          # the spec's own buffer from about 20 s
    (60.0, 8_000_000),
])
def test_the_buffer_is_sized_to_the_clip(seconds, bufsize):
    """What the buffer may add to the average stays within 4 % of the bitrate."""
    from exporter.media.plan import VBV_INIT, clip_bufsize
    video = SPECS["youtube"].video
    assert clip_bufsize(video, seconds) == int(bufsize)
    frames = round(seconds * 30)
    worst = VBV_INIT * clip_bufsize(video, seconds) + video["bitrate"] * (frames - 1) / 30
    assert worst / seconds <= 1.04 * video["bitrate"] + 1


def test_a_variable_rate_spec_gets_no_filler():
    from dataclasses import replace
    vbr = replace(SPECS["youtube"], video={**SPECS["youtube"].video, "maxrate": 12_000_000})
    argv = build_encode("ffmpeg", "in.mp4", source_probe(), vbr, "o").argv
    assert option(argv, "-x264-params") == "vbv-init=0.9:scenecut=0:open-gop=0"
    assert "-minrate" not in argv


def test_tiktok_uses_its_own_bitrate():
    argv = build("tiktok").argv
    assert option(argv, "-b:v") == "6000000" and option(argv, "-fs") == "287000000"


def test_preset_override():
    plan = build_encode("ffmpeg", "in.mp4", source_probe(), SPECS["youtube"], "o", "veryfast")
    assert option(plan.argv, "-preset") == "veryfast"


def test_source_audio_is_mapped():
    argv = build().argv
    assert "0:a:0" in argv and "anullsrc" not in " ".join(argv)


def test_silent_track_is_added_when_the_source_has_none():
    argv = build(has_audio=False, audio_codec=None).argv
    assert option(argv, "-f") == "lavfi"
    assert option(argv, "-i") == "in.mp4"
    assert "anullsrc=channel_layout=stereo:sample_rate=48000" in argv
    assert "1:a:0" in argv


def test_overlong_source_is_rejected_with_duration_and_limit():
    with pytest.raises(SourceError, match=r"duration 75.00 s exceeds the youtube limit of 60 s"):
        build(duration_s=75.0)
    plan = build("instagram", duration_s=75.0)   # 90 s limit: fine
    assert option(plan.argv, "-t") == "75.000"


def test_overlong_source_is_trimmed_when_the_spec_says_trim():
    spec = SPECS["youtube"]
    trimming = type(spec)(**{**spec.__dict__, "limits": {**spec.limits, "on_overlong": "trim"}})
    plan = build_encode("ffmpeg", "in.mp4", source_probe(duration_s=75.0), trimming, "o")
    assert plan.trimmed and plan.duration_s == 60.0 and option(plan.argv, "-t") == "60.000"


@pytest.mark.parametrize("changes, message", [
    (dict(width=16384, height=16384), "video is 16384x16384"),
    (dict(fps=0.0), "frame rate 0.0 fps"),
    (dict(fps=1000.0), "frame rate 1000.0 fps"),
    (dict(duration_s=0.0), "no duration"),
])
def test_unusable_sources_are_refused_before_ffmpeg(changes, message):
    with pytest.raises(SourceError, match=message):
        build(**changes)


@pytest.mark.parametrize("fit, expected", [
    ("crop", "[0:v:0]scale=1080:1920:force_original_aspect_ratio=increase,crop=1080:1920"),
    ("pad", "pad=1080:1920:(ow-iw)/2:(oh-ih)/2:black"),
    ("blur", "boxblur"),
])
def test_fit_filters(fit, expected):
    text = fit_filter(fit, 1080, 1920)
    assert expected in text and text.endswith("[fit]")
    assert text.startswith("[0:v:0]")


def test_rotated_probe_reports_display_size():
    assert source_probe(rotation=90).display_size == (1080, 1920)
    assert source_probe(rotation=-90).display_size == (1080, 1920)
    assert source_probe(rotation=180).display_size == (1920, 1080)


def test_one_process_encodes_several_platforms_with_one_filter_chain():
    plans = build_encodes("ffmpeg", "in.mp4", source_probe(), [
        (SPECS["youtube"], "a.mp4"), (SPECS["tiktok"], "b.mp4")])
    assert len(plans) == 2 and plans[0].argv is plans[1].argv
    argv = plans[0].argv
    assert argv.count("-i") == 1 and argv.count("-c:v") == 2
    graph = option(argv, "-filter_complex")
    # same fit, size and fps: computed once, then split between the two encoders
    assert graph.count("boxblur") == 1 and graph.endswith("split=2[v0][v1]")
    outputs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-b:v"]
    assert outputs == ["8000000", "6000000"]
    assert argv[-1] == "b.mp4" and "a.mp4" in argv


def test_different_pictures_get_their_own_chains():
    pad = type(SPECS["tiktok"])(**{**SPECS["tiktok"].__dict__, "fit": "pad"})
    argv = build_encodes("ffmpeg", "in.mp4", source_probe(), [
        (SPECS["youtube"], "a.mp4"), (pad, "b.mp4")])[0].argv
    graph = option(argv, "-filter_complex")
    assert graph.startswith("[0:v:0]split=2[in0][in1]")
    assert "[in0]fps=30[rate0];[rate0]split=2[bg_in0][fg_in0]" in graph
    assert "[in1]fps=30[rate1];[rate1]scale" in graph and "pad=1080:1920" in graph
    assert graph.endswith("[v1]")


def padding(spec="instagram"):
    base = SPECS[spec]
    return type(base)(**{**base.__dict__, "limits": {**base.limits, "on_short": "pad"}})


@pytest.mark.parametrize("seconds, fps", [(3.0, 30.0), (3.0, 29.97), (2.99, 29.97),
                                          (3.003, 29.97), (2.98, 25.0)])
def test_a_source_of_the_minimum_as_the_platform_reads_it_is_taken(seconds, fps):
    """Its export lasts 3.000 s or more to the millisecond the MP4 stores: taken as is."""
    for spec in ("instagram", "facebook"):
        plan = build(spec, duration_s=seconds, fps=fps)
        assert plan.duration_s == seconds and plan.padded_from_s is None


@pytest.mark.parametrize("spec", ["instagram", "facebook"])
def test_a_short_source_is_refused_with_its_duration_and_the_minimum(spec):
    with pytest.raises(SourceError) as refused:
        build(spec, duration_s=2.9)
    assert str(refused.value) == (f"duration 2.900 s is under the {spec} minimum of 3 s "
                                  "(limits.on_short: reject; pad holds the last frame)")
    assert build("youtube", duration_s=2.9).duration_s == 2.9     # no published minimum


def test_on_short_pad_holds_the_last_frame_and_pads_the_audio_to_the_minimum():
    plan = build_encode("ffmpeg", "in.mp4", source_probe(duration_s=1.0), padding(), "o")
    assert plan.padded_from_s == 1.0 and plan.duration_s == 3.0
    assert option(plan.argv, "-t") == "3.000"
    assert "fps=30,tpad=stop_mode=clone:stop_duration=2.033[rate0]" in option(
        plan.argv, "-filter_complex")
    assert option(plan.argv, "-af") == "apad=whole_dur=3.000"     # silence to the minimum


def test_a_padded_output_does_not_share_a_picture_chain_with_an_unpadded_one():
    argv = build_encodes("ffmpeg", "in.mp4", source_probe(duration_s=1.0),
                         [(SPECS["youtube"], "a"), (padding(), "b")])[0].argv
    graph = option(argv, "-filter_complex")
    assert graph.startswith("[0:v:0]split=2[in0][in1];[in0]fps=30[rate0]")
    assert "[in1]fps=30,tpad=stop_mode=clone:stop_duration=2.033[rate1]" in graph
