"""(source probe, spec) -> ffmpeg argv. Pure: no files touched, no processes started."""

from dataclasses import dataclass, replace

from .errors import SourceError
from .probe import DEMUXER_WHITELIST, check_dimensions
from .verify import MP4_FORMAT, conformance_problems

# Sources outside these bounds are refused before ffmpeg spends time on them.
MIN_SOURCE_FPS, MAX_SOURCE_FPS = 1.0, 240.0


@dataclass(frozen=True)
class EncodePlan:
    argv: list
    duration_s: float     # the duration the output must have
    trimmed: bool         # True when an over-long source was cut to the limit
    mode: str = "encode"  # or "remux": stream copy of a source that already conforms


def fit_filter(fit, width, height):
    """Filter graph text mapping [0:v:0] to [fit] at exactly width x height.

    crop: fill the frame and cut the overflow; pad: letterbox in black;
    blur: letterbox over a blurred, cropped copy of the same video.
    """
    cover = (f"scale={width}:{height}:force_original_aspect_ratio=increase,"
             f"crop={width}:{height}")
    contain = f"scale={width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2"
    if fit == "crop":
        return f"[0:v:0]{cover},setsar=1[fit]"
    if fit == "pad":
        return f"[0:v:0]{contain},pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:black,setsar=1[fit]"
    if fit == "blur":
        return (f"[0:v:0]split=2[bg_in][fg_in];"
                f"[bg_in]{cover},boxblur=luma_radius=min(h\\,w)/20:luma_power=2[bg];"
                f"[fg_in]{contain}[fg];"
                f"[bg][fg]overlay=(W-w)/2:(H-h)/2,setsar=1[fit]")
    raise ValueError(f"unknown fit {fit!r}")


def video_filter(spec):
    """Full video graph: fit, constant frame rate, 8-bit 4:2:0. Output label [v]."""
    video = spec.video
    return (fit_filter(spec.fit, video["width"], video["height"])
            + f";[fit]fps={video['fps']},format={video['pix_fmt']}[v]")


def output_duration(probe, spec):
    """Duration to encode; SourceError for an over-long source whose spec says reject."""
    limit = spec.limits["max_duration_s"]
    if probe.duration_s <= limit:
        return probe.duration_s, False
    if spec.limits["on_overlong"] == "reject":
        raise SourceError(f"duration {probe.duration_s:.2f} s exceeds the {spec.name} "
                          f"limit of {limit} s (limits.on_overlong: reject)")
    return float(limit), True


def check_source(probe):
    """Refuse sources no platform could take, with the reason."""
    check_dimensions(probe.width, probe.height)
    if not MIN_SOURCE_FPS <= probe.fps <= MAX_SOURCE_FPS:
        raise SourceError(f"frame rate {probe.fps} fps is outside "
                          f"{MIN_SOURCE_FPS:g}-{MAX_SOURCE_FPS:g} fps")
    if probe.duration_s <= 0:
        raise SourceError("video has no duration")


def video_args(spec, preset):
    video = spec.video
    args = [
        "-c:v", "libx264", "-preset", preset,
        "-profile:v", video["profile"], "-level:v", video["level"],
        "-pix_fmt", video["pix_fmt"],
        "-b:v", str(video["bitrate"]), "-maxrate", str(video["maxrate"]),
        "-bufsize", str(video["bufsize"]),
        "-g", str(video["gop"]), "-keyint_min", str(video["gop"]),
        "-fps_mode", "cfr", "-r", str(video["fps"]),
    ]
    if video["maxrate"] == video["bitrate"]:
        # Constant bitrate with filler: the measured rate meets the spec even on a
        # 3-second clip of easy content, and can never exceed maxrate.
        args += ["-minrate", str(video["bitrate"]), "-x264-params", "nal-hrd=cbr"]
    return args


def audio_args(spec):
    audio = spec.audio
    return ["-c:a", audio["codec"], "-b:a", str(audio["bitrate"]),
            "-ar", str(audio["sample_rate"]), "-ac", str(audio["channels"])]


def silence_input(spec):
    layout = "stereo" if spec.audio["channels"] == 2 else "mono"
    return ["-f", "lavfi", "-i",
            f"anullsrc=channel_layout={layout}:sample_rate={spec.audio['sample_rate']}"]


def remux_problems(probe, spec):
    """Why the source's streams cannot be copied as they are (empty: they can).

    The source must already be what the conformance check asks of an export; only the
    container is rewritten (to MP4 with faststart, metadata stripped).
    """
    as_remuxed = replace(probe, format_name=MP4_FORMAT)
    return conformance_problems(as_remuxed, spec, probe.duration_s, faststart=True)


def build_remux(ffmpeg, source, probe, spec, output):
    """argv copying the first video and audio streams into a faststart MP4."""
    check_source(probe)
    return EncodePlan(
        argv=[ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
              "-protocol_whitelist", "file", "-format_whitelist", DEMUXER_WHITELIST,
              "-i", str(source), "-map", "0:v:0", "-map", "0:a:0", "-c", "copy",
              "-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact",
              "-movflags", "+faststart", "-f", "mp4", str(output)],
        duration_s=probe.duration_s, trimmed=False, mode="remux")


def build_plan(ffmpeg, source, probe, spec, output, preset=None):
    """Remux when the source already conforms to `spec`, else encode."""
    if not remux_problems(probe, spec):
        return build_remux(ffmpeg, source, probe, spec, output)
    return build_encode(ffmpeg, source, probe, spec, output, preset)


def build_encode(ffmpeg, source, probe, spec, output, preset=None):
    """The argv that turns `source` into a conforming `output` for `spec`.

    ffmpeg applies the source's rotation on decode (autorotate is its default), so the
    fit filter sees the picture as a viewer would.
    """
    check_source(probe)
    duration, trimmed = output_duration(probe, spec)
    preset = preset or spec.video.get("preset", "medium")
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
            "-protocol_whitelist", "file", "-format_whitelist", DEMUXER_WHITELIST,
            "-i", str(source)]
    if probe.has_audio:
        audio_map = ["-map", "0:a:0"]
    elif spec.audio_required:
        argv += silence_input(spec)
        audio_map = ["-map", "1:a:0"]
    else:
        audio_map = []
    argv += ["-filter_complex", video_filter(spec), "-map", "[v]", *audio_map,
             "-t", f"{duration:.3f}"]
    argv += video_args(spec, preset)
    if audio_map:
        argv += audio_args(spec)
    argv += ["-map_metadata", "-1", "-map_chapters", "-1",
             "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
             "-movflags", "+faststart",
             "-fs", str(spec.limits["max_size_bytes"]),
             "-f", "mp4", str(output)]
    return EncodePlan(argv=argv, duration_s=duration, trimmed=trimmed)


# JPEG quality steps (ffmpeg -q:v, 2 = best) tried until a cover fits its byte limit.
COVER_QUALITIES = (2, 4, 6, 9, 13, 18, 24, 31)
POSTER_WIDTH = 270


def cover_input(image, video, seek_s):
    """Input arguments for a cover: the render's thumbnail.jpg, else one frame of the video."""
    if image is not None:
        return ["-f", "image2", "-pattern_type", "none", "-i", str(image)]
    return ["-protocol_whitelist", "file", "-format_whitelist", DEMUXER_WHITELIST,
            "-ss", f"{seek_s:.3f}", "-i", str(video)]


def build_still(ffmpeg, input_args, fit, width, height, output, quality):
    """argv writing one JPEG of exactly width x height from the first frame of the input."""
    graph = fit_filter(fit, width, height) + ";[fit]format=yuvj420p[v]"
    return [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *input_args,
            "-filter_complex", graph, "-map", "[v]", "-frames:v", "1",
            "-map_metadata", "-1", "-c:v", "mjpeg", "-q:v", str(quality),
            "-f", "image2", "-update", "1", str(output)]


def poster_size(video):
    """A small frame for the gallery, in the export's own aspect ratio (even height)."""
    height = round(POSTER_WIDTH * video["height"] / video["width"] / 2) * 2
    return POSTER_WIDTH, height
