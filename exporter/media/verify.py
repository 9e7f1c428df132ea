"""Output probe vs spec: the reasons a platform would reject the file, or that show an
encoder fault. Pure.

Platforms cap a file (container, codec, frame size and rate, duration, size, peak rate);
none refuses one for landing near, but not on, its recommended bitrate. So the check is
no stricter than a platform, except where a figure shows the encode went wrong.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from exporter.media.colour import output_tag_problems

if TYPE_CHECKING:
    from exporter.media.probe import Probe
    from exporter.model.spec import Spec

MP4_FORMAT = "mov,mp4,m4a,3gp,3g2,mj2"
# An encode's average video bitrate may exceed the spec's by this much at most
# (plan.clip_bufsize keeps it within 4 %).
BITRATE_OVER = 0.05
# A constant-bitrate encode (maxrate == bitrate) below this share of its bitrate did not
# hold the rate: x264's filler keeps every clip at 0.9 or more, from a single frame up.
CBR_FLOOR = 0.5
# One frame of video plus two AAC frames of audio priming/padding.
DURATION_SLACK_S = 0.1
ENCODER_FAULT = "an encoder fault: try another ffmpeg (ffmpeg=PATH) and report it"


def conformance_problems(probe: Probe, spec: Spec, expected_duration_s: float, faststart: bool,
                         encoded: bool = True) -> list[str]:
    """Every way `probe` misses `spec`, each saying what to do; empty when it conforms.

    `encoded`: the file is our own encode, held to the rate control's promise (at most
    BITRATE_OVER above the spec's bitrate). A remuxed source (`encoded=False`) keeps the
    rate it was rendered at: the platforms take anything up to the spec's maxrate.
    """
    video, audio, limits = spec.video, spec.audio, spec.limits
    problems = []

    def expect(name: str, actual: object, wanted: object) -> None:
        if actual != wanted:
            problems.append(f"{name} is {actual!r}, expected {wanted!r} ({ENCODER_FAULT})")

    expect("container", probe.format_name, MP4_FORMAT)
    expect("video codec", probe.video_codec, video["codec"])
    expect("profile", (probe.profile or "").lower(), video["profile"])
    expect("pix_fmt", probe.pix_fmt, video["pix_fmt"])
    expect("size", f"{probe.width}x{probe.height}", f"{video['width']}x{video['height']}")
    expect("rotation", probe.rotation, 0)
    problems += [f"colour: {problem} (every export is SDR BT.709, limited range; "
                 f"{ENCODER_FAULT})" for problem in output_tag_problems(probe)]
    if abs(probe.fps - video["fps"]) > 0.01:
        problems.append(f"frame rate is {probe.fps} fps, expected {video['fps']} "
                        f"({ENCODER_FAULT})")
    if abs(probe.duration_s - expected_duration_s) > DURATION_SLACK_S + 1 / video["fps"]:
        problems.append(f"duration is {probe.duration_s:.3f} s, expected "
                        f"{expected_duration_s:.3f} s (the source may be truncated: "
                        "check that it plays to its end)")
    if probe.duration_s > limits["max_duration_s"] + DURATION_SLACK_S:
        problems.append(f"duration {probe.duration_s:.3f} s exceeds the limit "
                        f"{limits['max_duration_s']} s (shorten the render, or set "
                        "limits.on_overlong: trim)")
    if probe.size_bytes > limits["max_size_bytes"]:
        problems.append(f"file is {probe.size_bytes} bytes, over the cap "
                        f"{limits['max_size_bytes']} (lower video.bitrate and maxrate "
                        "in the platform file)")
    problems += bitrate_problems(probe.video_bitrate, video, encoded)
    if spec.audio_required or probe.has_audio:
        if not probe.has_audio:
            problems.append(f"audio track is missing ({ENCODER_FAULT})")
        else:
            expect("audio codec", probe.audio_codec, audio["codec"])
            expect("audio channels", probe.audio_channels, audio["channels"])
            expect("audio sample rate", probe.audio_sample_rate, audio["sample_rate"])
    if spec.container.get("faststart") and not faststart:
        problems.append(f"moov is not before mdat (not faststart; {ENCODER_FAULT})")
    return problems + acceptance_problems(probe, spec, encoded)


def acceptance_problems(probe: Probe, spec: Spec, encoded: bool = True) -> list[str]:
    """The upload APIs' rules beyond the product table, read back from the file: minimum
    duration, edit lists, where audio and video start, keyframes, the audio's profile. A
    fact the probe did not read (None) is not judged. `encoded`: our own encode, whose
    keyframes must also be on the spec's fixed grid (keyframe_problems).

    The audio bitrate floor (limits.audio.min_bitrate) is not judged here: the encode asks
    for at least it (spec.check_consistency), and the AAC encoder lands on it for continuous
    sound, but spends next to nothing on silence or quiet passages whatever it is asked
    (docs/platforms.md has the measurements); nothing is added to the audio to fake it."""
    video, limits = spec.video, spec.limits
    frame = 1 / video["fps"]
    problems = []
    if spec.min_duration and round(probe.duration_s, 3) < spec.min_duration:
        problems.append(f"duration {probe.duration_s:.3f} s is under the platform's minimum "
                        f"of {spec.min_duration:g} s (limits.min_duration)")
    if probe.edit_lists and not limits.get("edit_lists", False):
        problems.append(f"edit lists on the {' and '.join(probe.edit_lists)} track "
                        f"(the platform takes none; {ENCODER_FAULT})")
    if probe.video_start_s is not None and abs(probe.video_start_s) > frame / 2:
        problems.append(f"the first frame is shown at {probe.video_start_s:.3f} s, not 0 "
                        f"({ENCODER_FAULT})")
    if (probe.audio_start_s is not None and probe.video_start_s is not None
            and abs(probe.audio_start_s - probe.video_start_s) > frame):
        problems.append(f"audio starts {probe.audio_start_s - probe.video_start_s:+.3f} s "
                        f"from the video, more than one frame ({ENCODER_FAULT})")
    problems += keyframe_problems(probe, video, limits.get("keyframes", {}), encoded)
    rules = limits.get("audio", {})
    if probe.has_audio and rules.get("profile") and probe.audio_profile is not None \
            and probe.audio_profile != rules["profile"]:
        problems.append(f"audio profile is {probe.audio_profile!r}, expected "
                        f"{rules['profile']!r} ({ENCODER_FAULT})")
    return problems


def clip_gop(video: dict[str, Any], bounds: dict[str, Any], frames: int) -> int:
    """Frames from one keyframe to the next for a clip of `frames`: the spec's `gop`, unless
    the last GOP (from the last keyframe to the end) would then fall outside the platform's
    bounds (limits.keyframes); then the interval nearest `gop` that keeps every GOP, the
    last included, within them (a 3 s clip under Facebook's 2-5 s: one GOP of 3 s, not 2 + 1).
    Pure."""
    fps, gop = video["fps"], video["gop"]
    low, high = bounds.get("min_interval_s"), bounds.get("max_interval_s")
    low_f = math.ceil(low * fps - 1e-9) if low else 1
    high_f = math.floor(high * fps + 1e-9) if high else max(frames, gop)

    def fits(interval: int) -> bool:
        last = frames - ((frames - 1) // interval) * interval
        return low_f <= interval <= high_f and (frames <= interval or low_f <= last <= high_f)

    if not (low or high) or fits(gop):
        return gop
    fitting = [interval for interval in range(max(1, low_f), high_f + 1) if fits(interval)]
    return min(fitting, key=lambda interval: (abs(interval - gop), interval)) if fitting else gop


def last_gop_problem(probe: Probe, video: dict[str, Any], bounds: dict[str, Any]) -> str | None:
    """The last GOP (its last keyframe to the end) outside the platform's bounds; a clip
    of one GOP is exempt (nothing can be done about its length)."""
    if not probe.last_gop_frames or not probe.keyframes or probe.keyframes < 2:
        return None
    low, high = bounds.get("min_interval_s"), bounds.get("max_interval_s")
    seconds = probe.last_gop_frames / video["fps"]
    if (low is not None and seconds < low - 1e-9) or (high is not None and seconds > high + 1e-9):
        return (f"the last GOP lasts {seconds:g} s, outside the platform's "
                f"{low or 0:g} to {high if high is not None else 'any':} s (limits.keyframes)")
    return None


def keyframe_problems(probe: Probe, video: dict[str, Any], bounds: dict[str, Any],
                      encoded: bool = True) -> list[str]:
    """Keyframes each an IDR picture (a closed GOP), the first on the first frame, every
    interval within the platform's bounds: what the upload APIs ask. Our own encode is
    also held to the spec's fixed grid (every `gop` frames, no scene-cut keyframe), which it
    asks x264 for; a source copied as it is (`encoded=False`) need only meet the APIs'
    rules, so a render already made for the platforms is remuxed, not encoded again."""
    problems = []
    if probe.first_keyframe_frame not in (None, 0):
        problems.append(f"the first keyframe is frame {probe.first_keyframe_frame}, not the "
                        f"first frame ({ENCODER_FAULT})")
    intervals = probe.keyframe_intervals or ()
    gop = (clip_gop(video, bounds, probe.video_frames) if probe.video_frames
           else video["gop"])
    off_grid = [gap for gap in intervals if gap != gop] if encoded else []
    if off_grid:
        problems.append(f"keyframe intervals of {', '.join(map(str, intervals))} frames, "
                        f"expected every {gop} (a fixed grid, no scene-cut "
                        f"keyframes; {ENCODER_FAULT})")
    low, high = bounds.get("min_interval_s"), bounds.get("max_interval_s")
    for gap in intervals:
        seconds = gap / video["fps"]
        if (low is not None and seconds < low) or (high is not None and seconds > high):
            allowed = f"{low or 0:g} to {high:g} s" if high is not None else f"{low:g} s or more"
            problems.append(f"a keyframe interval of {seconds:g} s is outside the platform's "
                            f"{allowed} (limits.keyframes)")
            break
    last = last_gop_problem(probe, video, bounds)
    if last:
        problems.append(last)
    if bounds.get("closed_gop", True) and probe.closed_gop is False:
        problems.append(f"a keyframe is not an IDR picture (an open GOP; {ENCODER_FAULT})")
    return problems


def rate_over(bitrate: int | None, video: dict[str, Any]) -> bool:
    """True when an encode's average video bitrate is over what the rate control promises."""
    return bool(bitrate) and bitrate > video["bitrate"] * (1 + BITRATE_OVER)


def bitrate_problems(bitrate: int | None, video: dict[str, Any], encoded: bool) -> list[str]:
    """The average video bitrate against what the platform caps and the encode promises."""
    if not bitrate:
        return [f"video bitrate is unknown ({ENCODER_FAULT})"]
    if not encoded:
        if bitrate > video["maxrate"]:
            return [f"video bitrate is {bitrate} b/s, over the maxrate {video['maxrate']} "
                    "(the source is re-encoded when this check fails)"]
        return []
    target = video["bitrate"]
    if rate_over(bitrate, video):
        return [f"video bitrate is {bitrate} b/s, more than {BITRATE_OVER:.0%} over the "
                f"spec's {target} ({ENCODER_FAULT})"]
    if video["maxrate"] == target and bitrate < target * CBR_FLOOR:
        return [f"video bitrate is {bitrate} b/s, under {CBR_FLOOR:.0%} of the constant "
                f"{target} ({ENCODER_FAULT})"]
    return []
