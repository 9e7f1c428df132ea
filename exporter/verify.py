"""Output probe vs spec: the list of reasons a platform would reject the file. Pure."""

MP4_FORMAT = "mov,mp4,m4a,3gp,3g2,mj2"
BITRATE_TOLERANCE = 0.10
# One frame of video plus two AAC frames of audio priming/padding.
DURATION_SLACK_S = 0.1


def conformance_problems(probe, spec, expected_duration_s, faststart, exact_bitrate=True):
    """Every way `probe` (of an encoded file) misses `spec`; empty when it conforms.

    Our own encodes must land within 10 % of the spec's bitrate. A remuxed source keeps
    the bitrate it was rendered at (`exact_bitrate=False`): the platforms take anything
    up to the spec's maxrate, and re-encoding would only add loss.
    """
    video, audio, limits = spec.video, spec.audio, spec.limits
    problems = []

    def expect(name, actual, wanted):
        if actual != wanted:
            problems.append(f"{name} is {actual!r}, expected {wanted!r}")

    expect("container", probe.format_name, MP4_FORMAT)
    expect("video codec", probe.video_codec, video["codec"])
    expect("profile", (probe.profile or "").lower(), video["profile"])
    expect("pix_fmt", probe.pix_fmt, video["pix_fmt"])
    expect("size", f"{probe.width}x{probe.height}", f"{video['width']}x{video['height']}")
    expect("rotation", probe.rotation, 0)
    if abs(probe.fps - video["fps"]) > 0.01:
        problems.append(f"frame rate is {probe.fps} fps, expected {video['fps']}")
    if abs(probe.duration_s - expected_duration_s) > DURATION_SLACK_S + 1 / video["fps"]:
        problems.append(f"duration is {probe.duration_s:.3f} s, expected {expected_duration_s:.3f} s")
    if probe.duration_s > limits["max_duration_s"] + DURATION_SLACK_S:
        problems.append(f"duration {probe.duration_s:.3f} s exceeds the limit "
                        f"{limits['max_duration_s']} s")
    if probe.size_bytes > limits["max_size_bytes"]:
        problems.append(f"file is {probe.size_bytes} bytes, over the cap "
                        f"{limits['max_size_bytes']}")
    if probe.video_bitrate and exact_bitrate:
        low, high = (video["bitrate"] * (1 - BITRATE_TOLERANCE),
                     video["bitrate"] * (1 + BITRATE_TOLERANCE))
        if not low <= probe.video_bitrate <= high:
            problems.append(f"video bitrate is {probe.video_bitrate} b/s, expected "
                            f"{video['bitrate']} +/-{BITRATE_TOLERANCE:.0%}")
    elif probe.video_bitrate:
        if probe.video_bitrate > video["maxrate"]:
            problems.append(f"video bitrate is {probe.video_bitrate} b/s, over the maxrate "
                            f"{video['maxrate']}")
    else:
        problems.append("video bitrate is unknown")
    if spec.audio_required or probe.has_audio:
        if not probe.has_audio:
            problems.append("audio track is missing")
        else:
            expect("audio codec", probe.audio_codec, audio["codec"])
            expect("audio channels", probe.audio_channels, audio["channels"])
            expect("audio sample rate", probe.audio_sample_rate, audio["sample_rate"])
    if spec.container.get("faststart") and not faststart:
        problems.append("moov is not before mdat (not faststart)")
    return problems
