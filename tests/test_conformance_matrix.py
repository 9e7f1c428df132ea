"""Every valid render exports, on any clip: a matrix of generated sources (length, content,
shape, pixel format, frame rate, audio, container), exported for all four platforms by the
ffmpeg under test and checked with the independent probe (MediaInfo), plus what the upload
APIs document, read here (tests/test_acceptance.py's readers): no edit lists, keyframes on
the spec's grid and each an IDR, the loudness of each audio layout. Under 3 s, Instagram and
Facebook refuse the clip in one line; `facebook-pad` (Facebook with limits.on_short: pad)
exports it held to 3 s.

Each dimension's values are spread over a few titles rather than multiplied out, so the
matrix runs in about a minute on 2 cores. Platforms are the shipped specs at 270x480
(tests/conftest.small_platforms): the rate control is the same at any frame size.
"""

import subprocess

import pytest
import yaml
from colour_support import KINDS, PATCHES, make_patch_render
from conftest import (
    assert_conforms,
    exported_videos,
    leftovers,
    load_yaml,
    made_once,
    read_json,
    run_doit,
    small_platforms,
)
from pymediainfo import MediaInfo
from test_acceptance import assert_keyframe_grid, ebur128, tracks_with_edit_lists

from exporter.media.ffmpeg import QUIET
from exporter.media.ffmpeg_binary import bundled_ffmpeg
from exporter.media.samples import NOISE

ALL_FOUR = ("youtube", "tiktok", "instagram", "facebook")
PADDED = "facebook-pad"
PLATFORMS = (*ALL_FOUR, PADDED)
MINIMUM_S = 3.0           # Instagram and Facebook

AUDIO = {
    "none": [],
    "mono-22k": ["-f", "lavfi", "-i", "sine=frequency=300:sample_rate=22050"],
    "5.1": ["-f", "lavfi", "-i",
            "aevalsrc=sin(440*2*PI*t)|sin(550*2*PI*t)|0|0|0|0:channel_layout=5.1:s=48000"],
    "stereo-48k": ["-f", "lavfi", "-i",
                   "aevalsrc=sin(440*2*PI*t)|sin(660*2*PI*t):channel_layout=stereo:s=48000"],
    "stereo-96k": ["-f", "lavfi", "-i",
                   "aevalsrc=0.3*sin(440*2*PI*t)|0.3*sin(660*2*PI*t):channel_layout=stereo"
                   ":s=96000"],
}
# (title, seconds, content, width x height, rotation, pix_fmt, fps, audio, container)
CASES = [
    ("one-frame", 1 / 30, "testsrc2", (360, 640), 0, "yuv420p", "30", "stereo-48k", "mp4"),
    ("half-second-noise-10bit", 0.5, NOISE, (640, 360), 0, "yuv420p10le", "25", "mono-22k",
     "mkv"),
    ("one-second-flat-422", 1, "color=c=0x336699", (480, 480), 0, "yuv422p", "24", "none",
     "mov"),
    ("three-seconds-odd-444", 3, "testsrc2", (361, 641), 0, "yuv444p", "30000/1001", "5.1",
     "mp4"),
    # the longest: several GOPs, Facebook's stretched to end on its bounds (2.5 s each)
    ("long-rotated", 7.5, "testsrc2", (568, 320), 90, "yuv420p", "60", "stereo-96k", "mp4"),
    ("webm-vp9", 2, "testsrc2", (360, 640), 0, "yuv420p", "50", "stereo-48k", "webm"),
    ("mpegts-noise", 3, NOISE, (360, 640), 0, "yuv420p", "25", "stereo-48k", "ts"),
    ("variable-frame-rate", 3.5, "testsrc2", (360, 640), 0, "yuv420p", "vfr", "mono-22k", "mp4"),
    # colour (docs/quality.md#colour): a 10-bit HDR render (PQ), tone-mapped; a BT.601 one
    ("hdr-pq-10bit", 2, "patches", (640, 360), 0, "yuv420p10le", "25", "none", "mp4"),
    ("bt601-sd", 3, "testsrc2", (640, 480), 0, "yuv420p", "30000/1001", "stereo-48k", "mov"),
]
# Colour tags written into a matrix source, on its frames (ffmpeg 7 and newer write the
# frames' tags, not the options'). The HDR case is tests/colour_support.py's PQ render of
# colour patches at SDR levels (its samples computed, not converted by ffmpeg).
COLOUR_TAGS = {
    "bt601-sd": "setparams=color_primaries=smpte170m:color_trc=smpte170m"
                ":colorspace=smpte170m:range=tv",
}
PATCH_RENDERS = {"hdr-pq-10bit": "pq-10bit"}


def source_argv(path, seconds, content, size, pix_fmt, fps, audio, container, colour=None):
    """argv of one matrix source, made by the bundled ffmpeg (the same bytes in both CI runs);
    `colour`: the filters making and tagging its colour (COLOUR_TAGS)."""
    width, height = size
    rate = "30" if fps == "vfr" else fps
    source, video_filter = content, []
    if content == NOISE:
        source, video_filter = "color=c=gray", ["noise=alls=100:allf=t+u"]
    separator = ":" if "=" in source else "="
    argv = [bundled_ffmpeg(), *QUIET,
            "-f", "lavfi", "-i", f"{source}{separator}size={width}x{height}:rate={rate}",
            *AUDIO[audio]]
    if fps == "vfr":       # drop two frames of every three after the first second
        video_filter.append("select='lt(t\\,1)+not(mod(n\\,3))'")
    if colour:
        video_filter.append(colour)
    if video_filter:
        argv += ["-vf", ",".join(video_filter)]
    argv += ["-map", "0:v"] + (["-map", "1:a"] if AUDIO[audio] else [])
    if container == "webm":
        argv += ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                 "-b:v", "1M", "-pix_fmt", pix_fmt, "-c:a", "libopus"]
    else:
        argv += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", pix_fmt]
        argv += ["-c:a", "mp2" if container == "ts" else "aac"] if AUDIO[audio] else []
    if fps == "vfr":
        argv += ["-fps_mode", "vfr"]
    return argv + ["-t", f"{seconds:.4f}", str(path)]


def make_source(directory, seconds, content, size, rotation, pix_fmt, fps, audio, container):
    directory.mkdir(parents=True)
    if directory.name in PATCH_RENDERS:
        final = make_patch_render(directory / "final.mp4", KINDS[PATCH_RENDERS[directory.name]],
                                  size=size, fps=int(fps),
                                  seconds_each=seconds / len(PATCHES))
        (directory / "metadata.json").write_text('{"title": "matrix", "hashtags": ["test"]}')
        return final
    made = directory / f"made.{container}"
    subprocess.run(source_argv(made, seconds, content, size, pix_fmt, fps, audio, container,
                               COLOUR_TAGS.get(directory.name)),
                   check=True)
    final = directory / "final.mp4"        # any container ffmpeg reads, under the usual name
    if rotation:
        subprocess.run([bundled_ffmpeg(), "-hide_banner", "-nostdin", "-y", "-loglevel",
                        "error", "-display_rotation", str(rotation), "-i", str(made),
                        "-c", "copy", "-f", "mp4", str(final)], check=True)
        made.unlink()
    else:
        made.rename(final)
    (directory / "metadata.json").write_text('{"title": "matrix", "hashtags": ["test"]}')
    return final


def source_duration(path):
    """The source's duration by MediaInfo (not the tool's own probe)."""
    video = MediaInfo.parse(str(path)).video_tracks[0]
    return float(video.duration) / 1000


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    def make(root):
        renders, exports = root / "renders", root / "exports"
        durations = {}
        for title, *shape in CASES:
            final = make_source(renders / "matrix" / "all" / title, *shape)
            durations[title] = source_duration(final)
        platforms = small_platforms(root / "platforms", names=ALL_FOUR, minimum=True)
        padded = load_yaml(platforms / "facebook.yaml")
        padded["name"], padded["limits"]["on_short"] = PADDED, "pad"
        (platforms / f"{PADDED}.yaml").write_text(yaml.safe_dump(padded), encoding="utf-8")
        return run_doit(f"renders={renders}", f"exports={exports}",
                        f"platforms_dir={platforms}", "-n", "2"), durations
    root, (result, durations) = made_once(tmp_path_factory, "matrix", make)
    return result, root / "exports", root / "platforms", durations


SHORT = [case[0] for case in CASES if case[1] < MINIMUM_S]


def test_every_clip_exports_except_short_ones_for_meta(matrix):
    result, exports, _, _ = matrix
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(exported_videos(exports)) == len(CASES) * len(PLATFORMS) - 2 * len(SHORT), (
        result.stderr)
    refused = sorted(line.split(" (")[0] for line in result.stderr.splitlines()
                     if line.startswith("FAILED"))
    assert refused == sorted(f"FAILED {platform}:{title}" for title in SHORT
                             for platform in ("facebook", "instagram")), result.stderr
    assert leftovers(exports) == []


@pytest.mark.parametrize("title", [case[0] for case in CASES])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_each_export_conforms_by_the_independent_probe(matrix, title, platform):
    _, exports, platforms, durations = matrix
    video = exports / "matrix" / "all" / title / f"{platform}.mp4"
    spec = load_yaml(platforms / f"{platform}.yaml")
    minimum = spec["limits"].get("min_duration", 0)
    if title in SHORT and minimum and spec["limits"]["on_short"] == "reject":
        assert not video.exists()
        cause = read_json(video.with_name(f"{platform}.error.json"))["cause"]
        assert cause.startswith(f"duration {durations[title]:.1f}"), cause    # MediaInfo's
        assert cause.endswith(f" s is under the {platform} minimum of 3 s "
                              "(limits.on_short: reject; pad holds the last frame)"), cause
        return
    expected = max(durations[title], minimum)
    facts = assert_conforms(video, spec, expected)
    assert facts["duration_s"] >= minimum
    sidecar = read_json(video.with_name(f"{platform}.export.json"))
    assert sidecar["output"]["sha256"] and sidecar["encode"]["ffmpeg_version"]
    assert (sidecar["encode"]["padded"] is not None) == (title in SHORT and bool(minimum))
    if durations[title] >= 3:       # real-looking motion for 3 s or more: at the rate asked
        assert facts["video_bitrate"] >= 0.85 * spec["video"]["bitrate"], facts
    # what the upload APIs document, read back here
    assert tracks_with_edit_lists(video) == []
    assert_keyframe_grid(video, spec)
    audio = MediaInfo.parse(str(video)).audio_tracks[0]
    assert audio.format_additionalfeatures == "LC"
    sound = next(case[7] for case in CASES if case[0] == title) != "none"
    if sound and durations[title] >= 1:          # each audio layout lands at the target
        assert abs(ebur128(video) - spec["audio"]["loudness"]["integrated"]) <= 1, title
    floor = spec["limits"].get("audio", {}).get("min_bitrate")
    if floor and sound and durations[title] >= MINIMUM_S:   # continuous sound: the floor met
        assert int(audio.bit_rate) >= 0.98 * floor, (title, audio.bit_rate)
