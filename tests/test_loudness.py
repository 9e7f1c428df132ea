"""Loudness per platform: the two-pass loudnorm lands every platform at its target, measured
by the test itself with ffmpeg's ebur128 (not the tool's code); silence stays silence."""

import json
import re
import subprocess

import pytest
from conftest import (
    TEST_FFMPEG,
    assert_conforms,
    doit_env,
    load_yaml,
    logging_ffmpeg,
    read_json,
    run_doit,
    small_platforms,
)

from exporter.media.loudness import (
    is_silent,
    loudness_problems,
    measure_argv,
    parse_measurement,
    second_pass_filter,
)

PLATFORMS = ("youtube", "tiktok", "instagram", "facebook")
TARGET = {"integrated": -14, "true_peak": -1, "range": 11}

LOUDNORM_STDERR = """[Parsed_loudnorm_0 @ 0x5] 
{
\t"input_i" : "-21.81",
\t"input_tp" : "-14.51",
\t"input_lra" : "0.00",
\t"input_thresh" : "-31.81",
\t"output_i" : "-14.01",
\t"output_tp" : "-6.70",
\t"output_lra" : "0.00",
\t"output_thresh" : "-24.01",
\t"normalization_type" : "dynamic",
\t"target_offset" : "0.01"
}
"""


def test_the_first_pass_is_read_and_becomes_the_second_pass_filter():
    measured = parse_measurement(LOUDNORM_STDERR)
    assert measured == {"input_i": -21.81, "input_tp": -14.51, "input_lra": 0.0,
                        "input_thresh": -31.81, "target_offset": 0.01}
    assert second_pass_filter(TARGET, measured) == (
        "aformat=channel_layouts=stereo:sample_rates=48000,"
        "loudnorm=I=-14:TP=-1:LRA=11:measured_I=-21.81:measured_TP=-14.51:measured_LRA=0.0"
        ":measured_thresh=-31.81:offset=0.01:linear=true,aresample=48000")
    silent = parse_measurement(LOUDNORM_STDERR.replace('"-21.81"', '"-inf"'))
    assert is_silent(silent) and not is_silent(measured)


def test_the_first_pass_measures_only_what_the_export_keeps():
    argv = measure_argv("ffmpeg", "final.mp4", TARGET, 60)    # a source trimmed to 60 s
    assert argv[argv.index("-t") + 1] == "60.000"
    assert argv.index("-t") > argv.index("-i"), "an output option: the first 60 s"


def test_both_passes_work_on_the_downmixed_resampled_audio_that_is_output():
    """A 5.1 or mono mix is measured as the stereo 48 kHz the export holds, not as itself."""
    measure = measure_argv("ffmpeg", "final.mp4", TARGET, 3, {"channels": 2, "sample_rate": 48000})
    assert measure[measure.index("-af") + 1].startswith(
        "aformat=channel_layouts=stereo:sample_rates=48000,loudnorm=")
    mono = second_pass_filter(TARGET, parse_measurement(LOUDNORM_STDERR),
                              {"channels": 1, "sample_rate": 44100})
    assert mono.startswith("aformat=channel_layouts=mono:sample_rates=44100,loudnorm=")
    assert mono.endswith(",aresample=44100")


def test_an_output_more_than_one_lu_off_is_rejected():
    assert loudness_problems({"integrated": -14.9, "true_peak": -3}, TARGET) == []
    assert loudness_problems({"integrated": -15.2, "true_peak": -3}, TARGET) == [
        "loudness -15.2 LUFS, the platform's target is -14 LUFS ± 1 LU"]
    assert loudness_problems({"integrated": float("-inf"), "true_peak": -3}, TARGET) != []


def ebur128(path):
    """Integrated loudness (LUFS) and true peak (dBFS) of a file, measured here."""
    stderr = subprocess.run([TEST_FFMPEG, "-hide_banner", "-nostats", "-i", str(path),
                             "-map", "0:a:0", "-af", "ebur128=peak=true", "-f", "null", "-"],
                            capture_output=True, text=True, check=True).stderr
    summary = stderr[stderr.rfind("Summary:"):]
    integrated = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary).group(1)
    peak = re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1)
    return float(integrated), float(peak)


@pytest.fixture
def sources(library, clip_cache):
    """A quiet (-30 LUFS), a loud (-6 LUFS) and a silent render."""
    shape = dict(width=360, height=640, seconds=3, fps=30, audio=True)  # Meta's 3 s minimum
    clips = {"quiet": clip_cache("quiet", **shape, volume_db=-8.2),
             "loud": clip_cache("loud", **shape, volume_db=15.8),
             "silent": clip_cache("digital-silence", **shape, silence=True)}
    for name, clip in clips.items():
        directory = library.add("women", "18-23", name)
        (directory / "final.mp4").write_bytes(clip.read_bytes())
    return clips



def test_quiet_and_loud_sources_land_at_minus_14_on_every_platform(library, tmp_path, sources):
    assert abs(ebur128(sources["quiet"])[0] - (-30)) < 2
    assert abs(ebur128(sources["loud"])[0] - (-6)) < 2
    platforms = small_platforms(tmp_path / "platforms", names=PLATFORMS)
    wrapper, runs = logging_ffmpeg(tmp_path)
    run_doit("-n", "2", *library.args(f"platforms_dir={platforms}"),
             env=doit_env(REELEXPORT_FFMPEG=str(wrapper)), check=0)
    for name in ("quiet", "loud", "silent"):
        for platform in PLATFORMS:
            out = library.exports / "women/18-23" / name
            assert_conforms(out / f"{platform}.mp4", load_yaml(platforms / f"{platform}.yaml"),
                            3.0)
            integrated, peak = ebur128(out / f"{platform}.mp4")
            loudness = read_json(out / f"{platform}.export.json")["encode"]["loudness"]
            if name == "silent":
                assert integrated <= -70, "silence stays silence"
                assert loudness["skipped"] == ("the source is silent (or too short to "
                                               "measure): left as it is")
                continue
            assert abs(integrated - (-14)) <= 1, (name, platform, integrated)
            assert peak <= -1 + 0.5, (name, platform, peak)
            assert abs(loudness["achieved"]["integrated"] - integrated) <= 0.2
            assert loudness["target"] == TARGET
    # one first pass per source and target, shared by the four platforms
    assert len(list((library.exports / ".shared/loudness").glob("*.json"))) == 3
    # each encode's loudness measured once, when it enters the shared cache: an export
    # taking its bytes (checked by sha256) reuses it
    encodes = {read_json(library.exports / f"women/18-23/{name}/{platform}.export.json")
               ["encode"]["shared_key"] for name in ("quiet", "loud") for platform in PLATFORMS}
    measured = [argv for argv in runs() if "ebur128=peak=true" in argv]
    # two sources, each: 8 Mb/s on a 2 s grid (YouTube, Instagram), 6 Mb/s (TikTok), and
    # Facebook's own 3 s GOP (2-5 s GOPs, the last included: not the 2 s grid's 2 + 1)
    assert len(measured) == len(encodes) == 6, measured


def test_loudness_null_leaves_the_audio_as_mixed(library, tmp_path, sources):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",),
                                youtube={"audio.loudness": None})
    run_doit(*library.args(f"platforms_dir={platforms}"), check=0)
    out = library.exports / "women/18-23/quiet/youtube.mp4"
    assert abs(ebur128(out)[0] - ebur128(sources["quiet"])[0]) < 1.5
    sidecar = read_json(library.exports / "women/18-23/quiet/youtube.export.json")
    assert sidecar["encode"]["loudness"] is None
    assert "loudnorm" not in json.dumps(sidecar["encode"]["argv"])


def video_md5(path):
    """The video stream's packets, hashed here: equal when a remux kept them."""
    return subprocess.run([TEST_FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(path),
                           "-map", "0:v:0", "-c", "copy", "-f", "md5", "-"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_remuxed_export_keeps_its_video_and_gets_the_platform_loudness(
        library, tmp_path, clip_cache):
    """A render that already conforms is remuxed (its video copied); its audio is still
    brought to the target, inside that one ffmpeg run."""
    loud = clip_cache("loud", width=360, height=640, seconds=3, fps=30, audio=True,
                      volume_db=15.8)
    first = library.add("women", "18-23", "first")
    (first / "final.mp4").write_bytes(loud.read_bytes())
    as_mixed = small_platforms(tmp_path / "as-mixed", names=("youtube",),
                               youtube={"audio.loudness": None})
    run_doit(*library.args(f"platforms_dir={as_mixed}"), check=0)
    conforming_render = library.exports / "women/18-23/first/youtube.mp4"  # loud, conforming
    assert ebur128(conforming_render)[0] > -10
    conforming = library.add("women", "18-23", "conforming")
    (conforming / "final.mp4").write_bytes(conforming_render.read_bytes())

    platforms = small_platforms(tmp_path / "normalised", names=("youtube",))
    run_doit(*library.args(f"platforms_dir={platforms}", "segment=women"), check=0)
    out = library.exports / "women/18-23/conforming"
    sidecar = read_json(out / "youtube.export.json")
    assert sidecar["encode"]["mode"] == "remux"
    assert video_md5(out / "youtube.mp4") == video_md5(conforming / "final.mp4")
    integrated, peak = ebur128(out / "youtube.mp4")
    assert abs(integrated - (-14)) <= 1 and peak <= -1 + 0.5, (integrated, peak)
    assert abs(sidecar["encode"]["loudness"]["achieved"]["integrated"] - integrated) <= 0.2
    assert_conforms(out / "youtube.mp4", load_yaml(platforms / "youtube.yaml"), 3.0)
