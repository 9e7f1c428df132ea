"""(source probe, spec) -> ffmpeg argv. Pure: no files touched, no processes started."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.media.colour import (
    OUTPUT_TAGS,
    REMUX_TAGS_BSF,
    colour_problems,
    output_tag_args,
    source_colour,
    tag_bt709,
    to_bt709,
)
from exporter.media.colour_check import GLIMPSE_CODEC, render_glimpse
from exporter.media.ffmpeg import QUIET
from exporter.media.loudness import second_pass_filter, target_of
from exporter.media.probe import DEMUXER_WHITELIST, Probe, check_dimensions
from exporter.media.verify import MP4_FORMAT, clip_gop, conformance_problems
from exporter.model.errors import SourceError

if TYPE_CHECKING:
    from exporter.model.spec import Spec

# Sources outside these bounds are refused before ffmpeg spends time on them.
MIN_SOURCE_FPS, MAX_SOURCE_FPS = 1.0, 240.0

# The content check scores one frame in this many (the first, then every SAMPLE_EVERY-th);
# the encode keeps those frames of its own picture chain, losslessly, as the check's
# reference (docs/quality.md: what it costs and how it moves the score). A prime, so the
# samples fall on every position of a GOP alike: at 20, one sample in three was a keyframe
# of the 60-frame GOP, which x264 spends more bits on, and the mean read a point high.
SAMPLE_EVERY = 19
# The reference frames' file: FFV1 in Matroska, lossless and intra-only (about 60 frames a
# second at 1080x1920 on one core here: 1.5 a second of video costs little).
SAMPLES_CODEC = ["-c:v", "ffv1", "-fps_mode", "passthrough", "-f", "matroska"]


# The check decodes one GOP in this many (the first, every CHECK_GOP_EVERY-th, and the
# last) and scores its samples: the rest is proven by its packets, which must be the ones
# x264 wrote (EncodePlan.packets). Decoding was most of the check's cost (docs/quality.md).
CHECK_GOP_EVERY = 4
# x264's packets as it handed them to the MP4 muxer, written beside it by the tee muxer
# (the MP4 is byte for byte what it is without the tee: docs/quality.md).
PACKETS_MUXER = "f=nut:select=v"


def sample_frames(every: int = SAMPLE_EVERY) -> str:
    """The filter keeping frames 0, every, 2*every, ... (numbered from the chain's start)."""
    return f"select='not(mod(n,{every}))'"


def frames_in(duration_s: float, fps: float) -> int:
    """The frames an encode of `duration_s` holds: every one that starts before its end."""
    return max(1, math.ceil(round(duration_s * fps, 6)))


def checked_gop(index: int, gop: int, frames: int) -> bool:
    """Whether the content check decodes GOP `index` of an export of `frames` frames whose
    keyframes are `gop` apart. Pure; checked_samples is the same rule for ffmpeg."""
    return index % CHECK_GOP_EVERY == 0 or index == (frames - 1) // gop


def checked_sample(frame: int, gop: int, frames: int) -> bool:
    """Whether frame number `frame` is scored: a sample in a decoded GOP."""
    return frame % SAMPLE_EVERY == 0 and checked_gop(frame // gop, gop, frames)


def checked_samples(gop: int, frames: int) -> str:
    """The filter keeping the frames checked_sample keeps (numbered from the chain's
    start): one in SAMPLE_EVERY, in the GOPs the check decodes."""
    last = (frames - 1) // gop
    return (f"select='not(mod(n,{SAMPLE_EVERY}))"
            f"*(not(mod(floor(n/{gop}),{CHECK_GOP_EVERY}))+eq(floor(n/{gop}),{last}))'")


def keeping_samples(graph: str, kept: Sequence[str]) -> tuple[str, list[str]]:
    """`graph` (feeding [v0], [v1], ...) with each output's reference frames split off to
    [s0], [s1], ... by the filters `kept` (one per output): the graph, and the labels the
    encoders now take."""
    graph += "".join(f";[v{index}]split=2[e{index}][r{index}];[r{index}]{keep}[s{index}]"
                     for index, keep in enumerate(kept))
    return graph, [f"[e{index}]" for index in range(len(kept))]


def tee_escaped(path: Path | str) -> str:
    """`path` as one slave of ffmpeg's tee muxer ('|' separates them, '\\' escapes)."""
    return "".join("\\" + char if char in "\\|[]'" else char for char in str(path))


def mp4_with_packets(output: Path | str, packets: Path | str) -> list[str]:
    """The output arguments writing the MP4 and, beside it, x264's video packets as the
    muxer got them (the content check proves the MP4 holds exactly those). The encoders
    are asked for global headers (encoder_flags), as the MP4 muxer alone asks them."""
    muxer = ":".join(f"{name.lstrip('-')}={value}"
                     for name, value in zip(MP4_MUXER[::2], MP4_MUXER[1::2]))
    return ["-f", "tee",
            f"[f=mp4:{muxer}]{tee_escaped(output)}|[{PACKETS_MUXER}]{tee_escaped(packets)}"]


def encoder_flags(tee: bool) -> list[str]:
    """Bit-exact encoders (no version strings); with global headers through the tee muxer,
    which does not ask for them as the MP4 muxer does."""
    flags = "+bitexact+global_header" if tee else "+bitexact"
    return ["-flags:v", flags, "-flags:a", flags]


@dataclass(frozen=True)
class EncodePlan:
    argv: list
    duration_s: float     # the duration the output must have
    trimmed: bool         # True when an over-long source was cut to the limit
    mode: str = "encode"  # or "remux": stream copy of a source that already conforms
    loudness: dict | None = None    # the loudnorm measurement applied to its audio, if any
    padded_from_s: float | None = None   # a short source's duration, held to the minimum
    # The encode reads the source's audio. ffmpeg (5.1 and 9.0 measured) starts an input's clock at its
    # earliest *used* stream, so whether the audio is read moves the video's timestamps
    # (by 10 ms in an MPEG-TS whose audio starts first) and with them which frames the
    # frame-rate conversion repeats: the quality check must read it too (quality.py).
    reads_source_audio: bool = False
    gop: int | None = None  # frames between keyframes, chosen per clip (verify.clip_gop)
    # Where the encode wrote its reference frames (SAMPLE_EVERY of its own picture chain,
    # before x264): the check scores the export against these, decoding only the export.
    samples: str | None = None
    # Where the encode wrote x264's video packets beside the MP4 (mp4_with_packets): the
    # check compares them with the MP4's and decodes only some GOPs (quality.py).
    packets: str | None = None
    # The filters making the source's pictures SDR BT.709 (media/colour.py; '' when they
    # are), after the frame rate: the check's reference goes through them too.
    colour_filter: str = ""


def fit_filter(fit: str, width: int, height: int, source: str = "[0:v:0]",
               output: str = "[fit]", tag: str = "") -> str:
    """Filter graph text mapping `source` to `output` at exactly width x height.

    crop: fill the frame and cut the overflow; pad: letterbox in black;
    blur: letterbox over a blurred, cropped copy of the same video. `tag` keeps the
    inner labels unique when one graph holds several chains.
    """
    cover = (f"scale={width}:{height}:force_original_aspect_ratio=increase,"
             f"crop={width}:{height}")
    contain = f"scale={width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2"
    if fit == "crop":
        return f"{source}{cover},setsar=1{output}"
    if fit == "pad":
        return f"{source}{contain},pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:black,setsar=1{output}"
    if fit == "blur":
        return (f"{source}split=2[bg_in{tag}][fg_in{tag}];"
                f"[bg_in{tag}]{cover},boxblur=luma_radius=min(h\\,w)/20:luma_power=2[bg{tag}];"
                f"[fg_in{tag}]{contain}[fg{tag}];"
                f"[bg{tag}][fg{tag}]overlay=(W-w)/2:(H-h)/2,setsar=1{output}")
    raise ValueError(f"unknown fit {fit!r}")


def picture(spec: Spec, pad_s: float = 0.0) -> tuple[str, int, int, float, str, float]:
    """What decides an output's pictures: outputs that agree on it share one filter chain."""
    video = spec.video
    return (spec.fit, video["width"], video["height"], video["fps"], video["pix_fmt"], pad_s)


def video_graph(specs: Sequence[Spec], pads: Sequence[float] = (),
                source: str = "[0:v:0]", keep: str = "", convert: str = "") -> str:
    """One filter graph feeding outputs [v0], [v1], ... (one per spec, in order).

    The source is decoded once; each distinct picture (fit, size, fps, pix_fmt, padding)
    is computed once and split between the outputs that need it. `pads`: seconds of the
    last frame held at the end of each output (a short source padded to the minimum).
    `source`: the input's label (the quality check feeds the source as its second input);
    `keep`: filters choosing the frames that go through the fit (the quality check's
    trim and sampling), after the frame rate and padding; `convert`: the filters making
    the source SDR BT.709 (media/colour.to_bt709), before the fit, so padding is BT.709
    black. Every output is tagged SDR BT.709 limited range.
    """
    chains = {}
    for index, spec in enumerate(specs):
        pad_s = pads[index] if index < len(pads) else 0.0
        chains.setdefault(picture(spec, pad_s), []).append(index)
    parts = []
    if len(chains) > 1:
        parts.append(f"{source}split=" + str(len(chains))
                     + "".join(f"[in{c}]" for c in range(len(chains))))
    for c, ((fit, width, height, fps, pix_fmt, pad_s), outputs) in enumerate(chains.items()):
        chain_in = source if len(chains) == 1 else f"[in{c}]"
        # The frame rate first: ffmpeg 5.1's fps filter after the blur's overlay drops
        # the only frame of a one-frame clip (and fewer frames go through the fit).
        hold = f",tpad=stop_mode=clone:stop_duration={pad_s:.3f}" if pad_s else ""
        colour = f",{convert}" if convert else ""
        parts.append(f"{chain_in}fps={fps}{hold}{keep}{colour}[rate{c}]")
        parts.append(fit_filter(fit, width, height, f"[rate{c}]", f"[fit{c}]", tag=str(c)))
        if len(outputs) == 1:
            parts.append(f"[fit{c}]format={pix_fmt},{tag_bt709()}[v{outputs[0]}]")
        else:
            parts.append(f"[fit{c}]format={pix_fmt},{tag_bt709()},split={len(outputs)}"
                         + "".join(f"[v{i}]" for i in outputs))
    return ";".join(parts)


def video_filter(spec: Spec) -> str:
    """The video graph of a single output, labelled [v0]."""
    return video_graph([spec])


def exported_duration(duration_s: float, fps: float) -> float:
    """How long an export of a `duration_s` source lasts at `fps`, to the millisecond the
    MP4 stores: the encode keeps every frame that starts before the end (at least one)."""
    # duration_s is to the millisecond: up to half of one off the frames' own end
    frames = max(1, math.ceil(round((duration_s - 0.0005) * fps, 6)))
    return round(frames / fps, 3)


def pad_from(probe: Probe, spec: Spec) -> float | None:
    """The source's duration when its export would be shorter than the platform's minimum
    (compared as the platform reads the file: to the millisecond), else None."""
    minimum = spec.min_duration
    if not minimum or exported_duration(probe.duration_s, spec.video["fps"]) >= minimum:
        return None
    return probe.duration_s


def output_duration(probe: Probe, spec: Spec) -> tuple[float, bool]:
    """Duration to encode; SourceError for an over-long or short source whose spec says
    reject. A short source whose spec says pad is encoded to the minimum."""
    limit = spec.limits["max_duration_s"]
    if pad_from(probe, spec) is not None:
        if spec.on_short == "reject":
            raise SourceError(f"duration {probe.duration_s:.3f} s is under the {spec.name} "
                              f"minimum of {spec.min_duration:g} s (limits.on_short: reject; "
                              "pad holds the last frame)")
        return spec.min_duration, False
    if probe.duration_s <= limit:
        return probe.duration_s, False
    if spec.limits["on_overlong"] == "reject":
        raise SourceError(f"duration {probe.duration_s:.2f} s exceeds the {spec.name} "
                          f"limit of {limit} s (limits.on_overlong: reject)")
    return float(limit), True


def check_hdr_policy(probe: Probe, spec: Spec) -> None:
    """SourceError when the platform refuses this render's colour (an HDR render where
    `colour.hdr` is reject)."""
    problems = colour_problems(source_colour(probe), spec.hdr_policy)
    if problems:
        raise SourceError(problems[0])


def check_source(probe: Probe) -> None:
    """Refuse sources no platform could take, with the reason."""
    check_dimensions(probe.width, probe.height)
    if not MIN_SOURCE_FPS <= probe.fps <= MAX_SOURCE_FPS:
        raise SourceError(f"frame rate {probe.fps} fps is outside "
                          f"{MIN_SOURCE_FPS:g}-{MAX_SOURCE_FPS:g} fps")
    if probe.duration_s <= 0:
        raise SourceError("video has no duration")


# x264 starts decoding with its VBV buffer this full (its own default, stated so no build's
# default can change it).
VBV_INIT = 0.9
# How far above the spec's bitrate the buffer may lift a clip's average; verification
# allows 5 % (verify.BITRATE_OVER), this keeps a point in hand.
RATE_MARGIN = 0.04


def clip_bufsize(video: dict[str, Any], duration_s: float) -> int:
    """The VBV buffer for a clip of `duration_s`: the spec's, or smaller for a short clip.

    An encode may spend the bits its buffer starts with on top of the bitrate: over N
    frames it writes at most VBV_INIT * bufsize + bitrate * (N - 1) / fps bits. Keeping
    VBV_INIT * bufsize within one frame's share plus RATE_MARGIN of the clip's bits holds
    the average within RATE_MARGIN of the bitrate, from a single frame to the cap. From
    about 20 s on, the spec's own buffer (one second of maxrate) is already that small.
    Measured on both ffmpegs: docs/platforms.md.
    """
    fps, bitrate = video["fps"], video["bitrate"]
    frames = max(1, round(duration_s * fps))
    allowed = bitrate / fps * (1 + RATE_MARGIN * frames)
    return min(video["bufsize"], int(allowed / VBV_INIT))


def video_args(spec: Spec, preset: str, duration_s: float, gop: int) -> list[str]:
    """x264's arguments for `spec`; `gop`: the clip's keyframe interval (clip_gop)."""
    video = spec.video
    bufsize = clip_bufsize(video, duration_s)
    # Keyframes on a fixed grid: every `gop` frames, never at a scene cut, each one an IDR
    # picture (a closed GOP), as the upload APIs ask (docs/platforms.md).
    x264 = f"vbv-init={VBV_INIT}:scenecut=0:open-gop=0"
    args = [
        "-c:v", "libx264", "-preset", preset,
        "-profile:v", video["profile"], "-level:v", video["level"],
        "-pix_fmt", video["pix_fmt"],
        "-b:v", str(video["bitrate"]), "-maxrate", str(video["maxrate"]),
        "-bufsize", str(bufsize),
        "-g", str(gop), "-keyint_min", str(gop),
        "-fps_mode", "cfr", "-r", str(video["fps"]),
        *output_tag_args(),
    ]
    if video["maxrate"] == video["bitrate"]:
        # Constant bitrate with filler: the average meets the spec on any content (a flat
        # colour included), never above it by more than the buffer allows.
        args += ["-minrate", str(video["bitrate"])]
        x264 += ":nal-hrd=cbr"
    return args + ["-x264-params", x264]


def audio_args(spec: Spec) -> list[str]:
    audio = spec.audio
    return ["-c:a", audio["codec"], "-profile:a", "aac_low", "-b:a", str(audio["bitrate"]),
            "-ar", str(audio["sample_rate"]), "-ac", str(audio["channels"])]


def silence_input(spec: Spec) -> list[str]:
    layout = "stereo" if spec.audio["channels"] == 2 else "mono"
    return ["-f", "lavfi", "-i",
            f"anullsrc=channel_layout={layout}:sample_rate={spec.audio['sample_rate']}"]


# Source metadata (titles, creation time, GPS) and chapters are not carried into exports.
STRIP_METADATA = ["-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact"]
# The MP4 of every export, encoded or remuxed: no edit lists (the upload APIs ask for none).
# The B-frame delay goes into negative composition offsets (a version-1 ctts), so the first
# frame is shown at 0; the AAC priming (1024 samples, 21 ms at 48 kHz) is then played
# rather than skipped: the sound starts that much after the picture, under one frame.
MP4_MUXER = ["-use_editlist", "0", "-movflags", "+faststart+negative_cts_offsets"]


# AAC encoders put 1024 samples of priming before the sound (ffmpeg's, and most others).
AAC_PRIMING = 1024


def primed(probe: Probe) -> bool:
    """True when the source's AAC track has no edit list to hide its priming (an export of
    this tool, say): decoded, its first 1024 samples are the last encoder's priming, and an
    encode that kept them would add its own after them (the sound 43 ms late, not 21)."""
    return (probe.audio_codec == "aac" and probe.format_name == MP4_FORMAT
            and probe.edit_lists is not None and "soun" not in probe.edit_lists)


def audio_filters(spec: Spec, measured: dict | None, pad_to_s: float | None,
                  drop_priming: bool = False) -> list[str]:
    """The -af of an output: the source's baked-in priming dropped, the loudness second
    pass, and silence up to a padded length."""
    chain = [f"atrim=start_sample={AAC_PRIMING},asetpts=PTS-STARTPTS"] if drop_priming else []
    if pad_to_s:            # before the loudness pass, which measured it padded
        chain.append(f"apad=whole_dur={pad_to_s:.3f}")
    if measured:
        chain.append(second_pass_filter(target_of(spec), measured, spec.audio))
    return ["-af", ",".join(chain)] if chain else []


def untrusted_input(path: Path | str, seek_s: float | None = None) -> list[str]:
    """Input arguments for a render: local files only, and only real media containers, so a
    playlist disguised as a video cannot make ffmpeg read other files."""
    seek = ["-ss", f"{seek_s:.3f}"] if seek_s is not None else []
    return ["-protocol_whitelist", "file", "-format_whitelist", DEMUXER_WHITELIST, *seek,
            "-i", str(path)]


def remux_problems(probe: Probe, spec: Spec) -> list[str]:
    """Why the source's streams cannot be copied as they are (empty: they can).

    The source must already be what the conformance check asks of an export; only the
    container is rewritten (to MP4 with faststart, metadata stripped).
    """
    # the MP4 muxer writes no edit list and starts both tracks at 0; the parameter sets
    # are tagged BT.709 (REMUX_TAGS_BSF) when the render is SDR BT.709 by its tags or the
    # rule, and a render of any other colour keeps its own tags, so is encoded
    tags = OUTPUT_TAGS if source_colour(probe).is_output else {}
    as_remuxed = replace(probe, format_name=MP4_FORMAT, edit_lists=(), video_start_s=0.0,
                         audio_start_s=0.0 if probe.has_audio else None, **tags)
    return conformance_problems(as_remuxed, spec, probe.duration_s, faststart=True,
                                encoded=False)


def build_remux(ffmpeg: str, source: Path | str, probe: Probe, spec: Spec,
                output: Path | str, loudness: dict | None = None) -> EncodePlan:
    """argv copying the first video and audio streams into a faststart MP4; with
    `loudness` (a measurement for the spec's target), the audio alone is encoded again."""
    check_source(probe)
    audio = (["-c:v", "copy", *audio_filters(spec, loudness, None, primed(probe)),
              *audio_args(spec)] if loudness else ["-c", "copy"])
    audio += ["-bsf:v", REMUX_TAGS_BSF, *output_tag_args()]
    return EncodePlan(
        argv=[ffmpeg, *QUIET, *untrusted_input(source),
              "-map", "0:v:0", "-map", "0:a:0", *audio, *STRIP_METADATA,
              *MP4_MUXER, "-f", "mp4", str(output)],
        duration_s=probe.duration_s, trimmed=False, mode="remux", loudness=loudness)


def build_plan(ffmpeg: str, source: Path | str, probe: Probe, spec: Spec, output: Path | str,
               preset: str | None = None, loudness: dict | None = None) -> EncodePlan:
    """Remux when the source already conforms to `spec`, else encode. `loudness`: the
    first-pass measurement of the source for the spec's target, when it is normalised."""
    _, trimmed = output_duration(probe, spec)       # refuses what the spec rejects
    check_hdr_policy(probe, spec)
    if not trimmed and pad_from(probe, spec) is None and not remux_problems(probe, spec):
        return build_remux(ffmpeg, source, probe, spec, output, loudness)
    return build_encode(ffmpeg, source, probe, spec, output, preset, loudness)


def build_encode(ffmpeg: str, source: Path | str, probe: Probe, spec: Spec,
                 output: Path | str, preset: str | None = None,
                 loudness: dict | None = None) -> EncodePlan:
    """The argv that turns `source` into a conforming `output` for `spec`."""
    return build_encodes(ffmpeg, source, probe, [(spec, output)], preset,
                         {spec.name: loudness} if loudness else None)[0]


def build_encodes(ffmpeg: str, source: Path | str, probe: Probe,
                  targets: Sequence[tuple[Spec, Path | str]],
                  preset: str | None = None,
                  loudness: dict[str, dict] | None = None,
                  samples: Sequence[Path | str] = (),
                  glimpse: Path | str | None = None,
                  packets: Sequence[Path | str] = ()) -> list[EncodePlan]:
    """One ffmpeg process encoding `source` for several (spec, output) targets: one plan each.

    Decoding and filtering once for all outputs beats one process per output on this
    machine (docs/performance.md). ffmpeg applies the source's rotation on decode
    (autorotate is its default), so the fit filter sees the picture as a viewer would.
    `samples`: a file per target for the content check's reference frames (one in
    SAMPLE_EVERY of the pictures x264 is given, kept losslessly), or none; `glimpse`: where
    to write every decoded frame of the render, small, for the colour check
    (colour_check.render_glimpse), or nowhere; `packets`: a file per target for x264's
    packets (mp4_with_packets), or none. With both samples and packets, the samples are
    those of the GOPs the check decodes (checked_samples).
    """
    check_source(probe)
    specs = [spec for spec, _ in targets]
    for spec in specs:
        check_hdr_policy(probe, spec)
    convert = to_bt709(source_colour(probe))
    timing = [output_duration(probe, spec) for spec in specs]
    argv = [ffmpeg, *QUIET, *untrusted_input(source)]
    silent = [spec for spec in specs if not probe.has_audio and spec.audio_required]
    if silent:
        argv += silence_input(silent[0])
    pads = [pad_from(probe, spec) for spec in specs]
    graph = video_graph(
        specs, [duration - padded + 1 / spec.video["fps"] if padded is not None else 0.0
                for spec, (duration, _), padded in zip(specs, timing, pads)],
        source="[render]" if glimpse else "[0:v:0]", convert=convert)
    if glimpse:         # the decoded render, before any filter, for the colour check
        seen = render_glimpse(probe, [(spec.fit, (spec.video["width"], spec.video["height"]))
                                      for spec in specs])
        graph = f"[0:v:0]split=2[render][seen];[seen]{seen}[glimpse];{graph}"
    pictures = [f"[v{index}]" for index in range(len(targets))]
    gops = [clip_gop(spec.video, spec.limits.get("keyframes", {}),
                     max(1, round(duration * spec.video["fps"])))
            for spec, (duration, _) in zip(specs, timing)]
    if samples:
        graph, pictures = keeping_samples(graph, [
            checked_samples(gop, frames_in(duration, spec.video["fps"])) if packets
            else sample_frames()
            for spec, (duration, _), gop in zip(specs, timing, gops)])
    argv += ["-filter_complex", graph]
    for index, ((spec, output), (duration, _), padded) in enumerate(zip(targets, timing, pads)):
        if probe.has_audio:
            audio_map = ["-map", "0:a:0"]
        elif spec.audio_required:
            audio_map = ["-map", "1:a:0"]
        else:
            audio_map = []
        argv += ["-map", pictures[index], *audio_map, "-t", f"{duration:.3f}"]
        argv += video_args(spec, preset or spec.preset, duration, gops[index])
        measured = (loudness or {}).get(spec.name) if probe.has_audio else None
        if probe.has_audio:
            argv += audio_filters(spec, measured, duration if padded is not None else None,
                                  primed(probe))
        if audio_map:
            argv += audio_args(spec)
        argv += [*STRIP_METADATA, *encoder_flags(bool(packets)),
                 "-fs", str(spec.limits["max_size_bytes"]),
                 *(mp4_with_packets(output, packets[index]) if packets
                   else [*MP4_MUXER, "-f", "mp4", str(output)])]
        if samples:         # the frames x264 was given, cut where the export ends
            argv += ["-map", f"[s{index}]", "-t", f"{duration:.3f}", *SAMPLES_CODEC,
                     str(samples[index])]
    if glimpse:             # a frame past the longest export's end
        longest = max(duration for duration, _ in timing)
        argv += ["-map", "[glimpse]", "-t", f"{longest + 1:.3f}", *GLIMPSE_CODEC, str(glimpse)]
    return [EncodePlan(argv=argv, duration_s=duration, trimmed=trimmed,
                       loudness=(loudness or {}).get(spec.name) if probe.has_audio else None,
                       padded_from_s=padded, reads_source_audio=probe.has_audio,
                       gop=gops[index],
                       samples=str(samples[index]) if samples else None,
                       packets=str(packets[index]) if packets else None,
                       colour_filter=convert)
            for index, (spec, (duration, trimmed), padded)
            in enumerate(zip(specs, timing, pads))]


# JPEG quality steps (ffmpeg -q:v, 2 = best) tried until a cover fits its byte limit.
COVER_QUALITIES = (2, 4, 6, 9, 13, 18, 24, 31)
POSTER_WIDTH = 270


def cover_inputs(image: Path | None, video: Path | str, seek_s: float) -> list[list[str]]:
    """Input arguments for a cover, best first: the render's thumbnail.jpg, else one frame
    of the video at `seek_s`, found by a fast seek or, when that finds no frame (an MPEG-TS
    source with one keyframe), by decoding from the start."""
    if image is not None:
        return [["-f", "image2", "-pattern_type", "none", "-i", str(image)]]
    return [untrusted_input(video, seek_s),
            [*untrusted_input(video), "-ss", f"{seek_s:.3f}"]]


# A JPEG's samples are BT.601 full range (JFIF) whatever the picture was: a video frame,
# made SDR BT.709 limited first (`convert`), is converted to them; a thumbnail.jpg already is.
JPEG_FROM_BT709 = ("scale=in_color_matrix=bt709:in_range=tv:out_color_matrix=bt601"
                   ":out_range=pc,format=yuvj420p")


# swscale's SIMD paths round differently on different CPUs (measured: the same frame's JPEG
# 95 bytes apart with AVX2 and without); these flags make a still the same bytes on every
# x86-64 machine (SSSE3 to AVX-512 measured), so a cover's sha256 is a fact of its inputs.
STILL_SCALING = "sws_flags=bicubic+accurate_rnd+bitexact;"
STILL_ENCODER = ["-c:v", "mjpeg", "-flags:v", "+bitexact"]


def still_input(convert: str | None) -> tuple[str, str]:
    """(the graph's head, its label) and the JPEG tail for a still: `convert` None for an
    image (thumbnail.jpg), else the filters making a video frame SDR BT.709 ('' when it is)."""
    if convert is None:
        return "", "format=yuvj420p"
    head = f"[0:v:0]{convert}[conv];" if convert else ""
    return head, JPEG_FROM_BT709


def build_still(ffmpeg: str, input_args: list[str], fit: str, width: int, height: int,
                output: Path | str, quality: int, convert: str | None = None) -> list[str]:
    """argv writing one JPEG of exactly width x height from the first frame of the input
    (`convert`: still_input)."""
    head, tail = still_input(convert)
    source = "[conv]" if head else "[0:v:0]"
    graph = STILL_SCALING + head + fit_filter(fit, width, height, source) + f";[fit]{tail}[v]"
    return [ffmpeg, *QUIET, *input_args,
            "-filter_complex", graph, "-map", "[v]", "-frames:v", "1",
            "-map_metadata", "-1", *STILL_ENCODER, "-q:v", str(quality),
            "-f", "image2", "-update", "1", str(output)]


def build_stills(ffmpeg: str, input_args: list[str],
                 outputs: list[tuple[str, int, int, Path | str]], quality: int,
                 convert: str | None = None) -> list[str]:
    """argv writing several JPEGs (fit, width, height, path) from the same first frame of the
    input: one decode for the covers of every platform of a title (`convert`: still_input)."""
    count = len(outputs)
    head, tail = still_input(convert)
    source = "[conv]" if head else "[0:v:0]"
    graph = [f"{STILL_SCALING}{head}{source}split={count}"
             + "".join(f"[in{i}]" for i in range(count))]
    maps = []
    for i, (fit, width, height, path) in enumerate(outputs):
        graph.append(fit_filter(fit, width, height, f"[in{i}]", f"[fit{i}]", tag=str(i))
                     + f";[fit{i}]{tail}[v{i}]")
        maps += ["-map", f"[v{i}]", "-frames:v", "1", "-map_metadata", "-1", *STILL_ENCODER,
                 "-q:v", str(quality), "-f", "image2", "-update", "1", str(path)]
    return [ffmpeg, *QUIET, *input_args, "-filter_complex", ";".join(graph), *maps]


def poster_size(video: dict[str, Any]) -> tuple[int, int]:
    """A small frame for the gallery, in the export's own aspect ratio (even height)."""
    height = round(POSTER_WIDTH * video["height"] / video["width"] / 2) * 2
    return POSTER_WIDTH, height
