"""Verified by content: an export's video proven x264's and scored against its source.

Headers and counts (verify.py) cannot see broken pictures: bytes overwritten mid-file leave
every box and packet size intact. So before an export is kept, its video packets are
compared (a checksum of their NAL units, read without decoding) with the packets x264
handed the muxer, which the encode wrote beside the MP4 (plan.mp4_with_packets): every
byte of the video is then the encoder's. The pictures are checked by decoding one GOP in
CHECK_GOP_EVERY (the first and the last among them) and scoring one frame in SAMPLE_EVERY
of those against the frames the encode gave x264, kept losslessly by the encode itself
(EncodePlan.samples): VMAF where this ffmpeg has libvmaf, SSIM where it has not. Decoding
the whole export cost more than the rest of the check (docs/quality.md).

Without the packets or the reference frames (a bench's every-frame score, a cache entry
made before the check), one ffmpeg pass decodes the video whole, counts its frames, and
scores one in SAMPLE_EVERY against the encode's frames or the source decoded again through
the same graph. A remux keeps the source's video packets: that is proven by comparing them
(PACKETS), not by scoring a copy against itself.

The score is recorded (mean, 5th percentile, worst frame, the metric named); the platform's
`quality:` floors (a gate) turn a low score into a failed export (gate_problems).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.media.colour import LIMITED, source_colour, tag_bt709
from exporter.media.colour_check import (
    COLOUR,
    GLIMPSE_CODEC,
    OUTPUT_WIDTH,
    Glimpses,
    check_colour,
    export_glimpse_size,
    glimpse_filter,
    numpy,
    small,
)
from exporter.media.ffmpeg import QUIET, run_ffmpeg
from exporter.media.plan import (
    SAMPLE_EVERY,
    checked_gop,
    checked_sample,
    frames_in,
    sample_frames,
    untrusted_input,
    video_graph,
)
from exporter.media.probe import OPEN_OPTIONS, pyav
from exporter.model.errors import DamagedOutput

if TYPE_CHECKING:
    from exporter.media.plan import EncodePlan
    from exporter.media.probe import Probe
    from exporter.model.spec import Spec

VMAF, SSIM, PACKETS = "vmaf", "ssim", "packets"
Glimpse = tuple[tuple[int, int], Path]      # (size, where) of an export's glimpse
# The reference scored against: the encode's own frames (plan.samples), or the source
# decoded again through the encode's graph.
ENCODE_SAMPLES, SOURCE = "encode", "source"
VMAF_THREADS = 2
DAMAGED = "damaged after its encode, or an encoder fault: not kept"


@functools.lru_cache(maxsize=8)
def metric_of(ffmpeg: str) -> str:
    """VMAF when this ffmpeg has libvmaf, else SSIM (every ffmpeg has it)."""
    filters = subprocess.run([ffmpeg, "-hide_banner", "-filters"], capture_output=True,
                             text=True, stdin=subprocess.DEVNULL, check=False).stdout
    return VMAF if re.search(r"^\s*\S+\s+libvmaf\s", filters, re.MULTILINE) else SSIM


def expected_frames(plan: EncodePlan, fps: float) -> int:
    """The frames an encode of `plan` holds (plan.frames_in)."""
    return frames_in(plan.duration_s, fps)


def scorer(metric: str, log_path: Path | str) -> str:
    if metric == VMAF:
        return f"libvmaf=n_threads={VMAF_THREADS}:log_fmt=json:log_path={log_path}"
    return f"ssim=stats_file={log_path}"


def by_sample(fps: float) -> str:
    """Timestamps by sample number, in one time base on both sides (the Matroska's is 1 ms,
    the MP4's 1/15360 s), so sample i gets the same timestamp on each and the metric pairs
    them."""
    return f"settb=AVTB,setpts=N/({fps}*TB)"


def compared(reference: str, fps: float, metric: str, log_path: Path | str,
             every: int = SAMPLE_EVERY, glimpse: Glimpse | None = None) -> list[str]:
    """The graph and outputs of a check, given `reference` (a graph feeding [ref] the sampled
    reference frames): the output (input 0) decoded whole and counted (the first null
    output), one frame in `every` of it scored against [ref], sample i against sample i,
    and, given `glimpse` ((size, path)), every frame written small for the colour check."""
    branches = ["[count]", "[decoded]", *(["[small]"] if glimpse else [])]
    graph = (f"{reference};[0:v:0]split={len(branches)}{''.join(branches)};"
             f"[decoded]{sample_frames(every)},{by_sample(fps)}[dist];"
             f"[dist][ref]{scorer(metric, log_path)}:eof_action=pass[scored]")
    outputs = ["-map", "[count]", "-f", "null", "-"]
    if glimpse:
        size, path = glimpse
        graph += f";[small]{glimpse_filter(size, 8, LIMITED)}[glimpse]"
        outputs += ["-map", "[glimpse]", *GLIMPSE_CODEC, "-y", str(path)]
    return ["-filter_complex", graph, *outputs, "-map", "[scored]"]


def samples_argv(ffmpeg: str, output: Path | str, samples: Path | str, spec: Spec,
                 metric: str, log_path: Path | str, glimpse: Glimpse | None = None) -> list[str]:
    """One pass scoring the output against the frames the encode kept of its own picture
    chain (input 1)."""
    fps = spec.video["fps"]
    return [ffmpeg, *QUIET, "-protocol_whitelist", "file", "-i", str(output),
            "-f", "matroska", "-i", str(samples),
            *compared(f"[1:v:0]{by_sample(fps)}[ref]", fps, metric, log_path,
                      glimpse=glimpse),
            "-f", "null", "-"]


def score_argv(ffmpeg: str, output: Path | str, source: Path | str, spec: Spec,
               plan: EncodePlan, metric: str, log_path: Path | str,
               every: int = SAMPLE_EVERY, glimpse: Glimpse | None = None) -> list[str]:
    """One pass scoring the output against the same frames of the source (input 1) made by
    the encode's own picture chain, trimmed to the frames the plan expects. The
    frames are sampled before the fit, so the source's expensive part (scaling, blur) runs
    on the sampled frames only; both sides are timed by sample number, so sample i is
    compared with sample i. The source's audio is read (and dropped) when the encode read
    it, so the source's frames carry the encode's timestamps (EncodePlan.reads_source_audio)."""
    fps = spec.video["fps"]
    frames = expected_frames(plan, fps)
    pad_s = (plan.duration_s - plan.padded_from_s + 1 / fps
             if plan.padded_from_s is not None else 0.0)
    reference = video_graph([spec], [pad_s], source="[1:v:0]",
                            keep=f",trim=end_frame={frames},{sample_frames(every)}",
                            convert=plan.colour_filter)
    return [ffmpeg, *QUIET, "-protocol_whitelist", "file", "-i", str(output),
            "-t", f"{plan.duration_s + 1:.3f}", *untrusted_input(source),
            *compared(f"{reference};[v0]{by_sample(fps)}[ref]", fps, metric, log_path, every,
                      glimpse),
            *(["-map", "1:a:0"] if plan.reads_source_audio else []), "-f", "null", "-"]


def checked_frames(output: Path | str, gop: int, frames: int,
                   fps: float) -> Iterator[tuple[int, Any]]:
    """(frame number, frame) of every frame of the GOPs the check decodes (checked_gop):
    the packets of the others are read, not decoded. DamagedOutput when one does not."""
    av = pyav()
    with av.open(str(output), options=OPEN_OPTIONS) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = stream.start_time or 0

        def number(frame: Any) -> int:
            return round(float((frame.pts - start) * stream.time_base) * fps)

        gop_index = -1
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                gop_index += packet.is_keyframe
                if checked_gop(gop_index, gop, frames):
                    for frame in stream.codec_context.decode(packet):
                        yield number(frame), frame
            for frame in stream.codec_context.decode(None):
                yield number(frame), frame
        except av.error.FFmpegError as error:
            raise DamagedOutput(f"the video does not decode: {error} ({DAMAGED})") from error


def sampled_score(ffmpeg: str, output: Path | str, spec: Spec, plan: EncodePlan,
                  metric: str, log_path: Path,
                  glimpses: Glimpses | None) -> tuple[list[float], dict[str, Any]]:
    """The scores of an export whose encode kept x264's packets and the reference frames of
    the GOPs the check decodes: its packets proven x264's (a checksum), those GOPs decoded
    (one in CHECK_GOP_EVERY, the first and the last) and their samples scored against the
    encode's; the decoded frames kept small for the colour check. (scores, the facts)."""
    fps, gop = spec.video["fps"], plan.gop
    frames = expected_frames(plan, fps)
    count, digest = video_packets_digest(output)
    if (count, digest) != video_packets_digest(plan.packets, PACKETS_OPTIONS):
        raise DamagedOutput(f"its video packets are not the ones x264 wrote (checksums "
                            f"differ; {DAMAGED})")
    if abs(count - frames) > 1:     # one either way: the rate conversion's rounding
        raise DamagedOutput(f"{count} frames, the plan expects {frames} ({DAMAGED})")
    from av.video.reformatter import VideoReformatter
    np, width, height = numpy(), spec.video["width"], spec.video["height"]
    scored, decoded, small_frames = log_path.with_name("scored.yuv"), 0, []
    to_glimpse = VideoReformatter() if glimpses else None
    with scored.open("wb") as raw:
        for number, frame in checked_frames(output, gop, frames, fps):
            decoded += 1
            if to_glimpse is not None:
                small_frames.append((number, small(frame, OUTPUT_WIDTH, to_glimpse,
                                                   turn=False).astype(np.uint8)))
            if checked_sample(number, gop, frames):
                if frame.format.name != "yuv420p" or (frame.width, frame.height) != (
                        width, height):
                    frame = frame.reformat(width=width, height=height, format="yuv420p")
                raw.write(frame.to_ndarray().tobytes())
    if glimpses:
        glimpses.keep(output, small_frames)
    run_ffmpeg([ffmpeg, *QUIET, "-protocol_whitelist", "file",
                "-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", f"{width}x{height}",
                "-framerate", str(fps), "-i", str(scored),
                "-f", "matroska", "-i", str(plan.samples),
                # the samples said to be what they are (the export's tags): untagged,
                # ffmpeg would convert one side's range before the metric
                "-filter_complex", f"[0:v]{tag_bt709()},{by_sample(fps)}[dist];"
                                   f"[1:v:0]{by_sample(fps)}[ref];"
                                   f"[dist][ref]{scorer(metric, log_path)}[scored]",
                "-map", "[scored]", "-f", "null", "-"])
    scores = per_frame_scores(metric, log_path) if log_path.exists() else []
    wanted = sum(1 for number in range(count) if checked_sample(number, gop, frames))
    if len(scores) != wanted:
        raise DamagedOutput(f"{len(scores)} of its {wanted} samples could be scored "
                            f"against the encode's ({DAMAGED})")
    return scores, {"frames": count, "decoded": decoded, "packets_sha256": digest}


def decode_errors(ffmpeg: str, output: Path | str) -> list[str]:
    """The error lines of decoding the output's video alone (empty: it decodes)."""
    stderr = run_ffmpeg([ffmpeg, *QUIET, "-protocol_whitelist", "file", "-i", str(output),
                         "-map", "0:v:0", "-f", "null", "-"])
    return [line for line in stderr.splitlines() if line.strip()]


def per_frame_scores(metric: str, log_path: Path) -> list[float]:
    """The scores of each frame scored, from the metric's log."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if metric == VMAF:
        return [float(frame["metrics"]["vmaf"]) for frame in json.loads(text)["frames"]]
    return [float(match) for match in re.findall(r"\bAll:([\d.]+)", text)]


def percentile(values: list[float], share: float) -> float:
    """The `share` percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summarise(metric: str, scores: list[float], decoded: int, seconds: float,
              every: int = SAMPLE_EVERY, reference: str = ENCODE_SAMPLES) -> dict[str, Any]:
    digits = 2 if metric == VMAF else 4
    return {"metric": metric, "mean": round(sum(scores) / len(scores), digits),
            "median": round(percentile(scores, 0.5), digits),
            "p5": round(percentile(scores, 0.05), digits), "worst": round(min(scores), digits),
            "frames": decoded, "scored": len(scores),
            "sampled_every": every, "reference": reference,
            "seconds": round(seconds, 3)}


def score_output(ffmpeg: str, output: Path | str, source: Path | str, spec: Spec,
                 plan: EncodePlan, every: int = SAMPLE_EVERY,
                 glimpses: Glimpses | None = None) -> dict[str, Any]:
    """The quality record of an output: when the encode kept x264's packets and its
    reference frames (plan.packets, plan.samples), its packets proven x264's and one GOP in
    CHECK_GOP_EVERY decoded and scored (sampled_score); else decoded whole and one frame in
    `every` scored (one ffmpeg pass) against the encode's frames (plan.samples) or the
    source. DamagedOutput when a frame does not decode, the packets are not x264's or the
    count is not the plan's (the output is then not kept). Given `glimpses`, the frames
    decoded are kept there, small, for the colour check."""
    metric, started = metric_of(ffmpeg), time.monotonic()
    frames = expected_frames(plan, spec.video["fps"])
    workdir = Path(tempfile.mkdtemp(prefix="reelexport-quality-"))
    try:
        log_path = workdir / f"{metric}.log"
        if (every == SAMPLE_EVERY and plan.gop and plan.packets and plan.samples
                and Path(plan.packets).is_file() and Path(plan.samples).is_file()):
            scores, facts = sampled_score(ffmpeg, output, spec, plan, metric, log_path,
                                          glimpses)
            return {**summarise(metric, scores, facts["frames"], time.monotonic() - started,
                                every, ENCODE_SAMPLES),
                    "decoded": facts["decoded"], "packets_sha256": facts["packets_sha256"]}
        target = glimpses.export_path(output) if glimpses else None
        glimpse = ((export_glimpse_size((spec.video["width"], spec.video["height"])), target)
                   if target else None)
        if plan.samples and every == SAMPLE_EVERY and Path(plan.samples).is_file():
            reference = ENCODE_SAMPLES
            argv = samples_argv(ffmpeg, output, plan.samples, spec, metric, log_path,
                                glimpse)
        else:
            reference = SOURCE
            argv = score_argv(ffmpeg, output, source, spec, plan, metric, log_path, every,
                              glimpse)
        decoded = []
        stderr = run_ffmpeg(argv, progress=lambda update: decoded.append(update.frame))
        if stderr.strip():          # the source's own glitches are not the output's
            errors = decode_errors(ffmpeg, output)
            if errors:
                raise DamagedOutput(f"the video does not decode: {unaddressed(errors[0])} "
                                       f"({len(errors)} error lines; {DAMAGED})")
        count = next((frame for frame in reversed(decoded) if frame is not None), 0)
        # one frame either way is the rate conversion's rounding at the end (3 s at 29.97
        # fps is 3.003 s: 90 frames at 30 fps, where ceil(90.09) says 91); frames lost in
        # the middle of a damaged file are many more, or fail to decode
        if abs(count - frames) > 1:
            raise DamagedOutput(f"{count} frames decode, the plan expects {frames} "
                                   f"({DAMAGED})")
        scores = per_frame_scores(metric, log_path) if log_path.exists() else []
        if not scores:
            raise DamagedOutput(f"no frame could be scored against the source ({DAMAGED})")
        return summarise(metric, scores, count, time.monotonic() - started, every, reference)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def content_score(ffmpeg: str, output: Path | str, source: Path | str, source_probe: Probe,
                  spec: Spec, plan: EncodePlan,
                  glimpses: Glimpses | None = None) -> dict[str, Any]:
    """The quality record of an encode: the score against the frames x264 was given
    (score_output), with the colour check against the render itself beside it
    (colour_check.py), which does not trust the chain that made those frames."""
    record = score_output(ffmpeg, output, source, spec, plan, glimpses=glimpses)
    record[COLOUR] = check_colour(output, source, source_colour(source_probe), source_probe,
                                  spec.fit, spec.video["fps"], glimpses)
    return record


# ---- a remux: the source's packets, proven by checksum ---------------------------------

# SPS, PPS and access unit delimiters: moved to the MP4's header (or dropped) by the muxer.
H264_PARAMETER_NALS = {7, 8, 9}


def nal_units(data: bytes, length_size: int | None) -> list[bytes]:
    """The NAL units of one H.264 packet: length-prefixed (MP4, Matroska) or Annex B."""
    if length_size:
        units, position = [], 0
        while position + length_size <= len(data):
            size = int.from_bytes(data[position:position + length_size], "big")
            units.append(data[position + length_size:position + length_size + size])
            position += length_size + size
        return units
    return [part.rstrip(b"\x00") for part in re.split(b"\x00\x00\x01", data) if part]


# The encode's own packets file (mp4_with_packets): opened as NUT only.
PACKETS_OPTIONS = {"format_whitelist": "nut", "protocol_whitelist": "file"}


def video_packets_digest(path: Path | str,
                         options: dict[str, str] = OPEN_OPTIONS) -> tuple[int, str]:
    """(packets, sha256) of a file's video packets in decode order, by their picture NAL
    units (parameter sets and delimiters left out: the muxer moves them), read without
    decoding."""
    av, digest, count = pyav(), hashlib.sha256(), 0
    with av.open(str(path), options=options) as container:
        video = container.streams.video[0]
        extradata = video.codec_context.extradata or b""
        length_size = (extradata[4] & 3) + 1 if extradata[:1] == b"\x01" else None
        h264 = video.codec_context.name == "h264"
        for packet in container.demux(video):
            if packet.size == 0:
                continue
            count += 1
            data = bytes(packet)
            if not h264:
                digest.update(data)
                continue
            for unit in nal_units(data, length_size):
                if unit and unit[0] & 0x1F not in H264_PARAMETER_NALS:
                    digest.update(len(unit).to_bytes(4, "big") + unit)
    return count, digest.hexdigest()


def remux_proof(output: Path | str, source: Path | str) -> dict[str, Any]:
    """The quality record of a remux: its video packets are the source's, checked;
    DamagedOutput when they are not (the output is then not kept)."""
    started = time.monotonic()
    (packets, digest), (source_packets, source_digest) = (video_packets_digest(output),
                                                          video_packets_digest(source))
    if (packets, digest) != (source_packets, source_digest):
        raise DamagedOutput(f"the remux's video packets are not the source's ({packets} "
                               f"packets against {source_packets}, checksums differ; "
                               f"{DAMAGED})")
    return {"metric": PACKETS, "identical": True, "frames": packets, "sha256": digest,
            "seconds": round(time.monotonic() - started, 3)}


# ---- the gate ------------------------------------------------------------------------------

GATE_FIELDS = ("mean", "p5", "worst")
GATE_NAMES = {"mean": "mean", "p5": "5th percentile", "worst": "worst frame"}
# Under these, the mean or the median frame is not a hard clip but a broken encode: against
# the encode's own frames, a correct encode of full-frame noise at 1080x1920 scores VMAF
# 24 to 32 and SSIM 0.78 (docs/quality.md); negated or replaced pictures score 0.
BROKEN = {VMAF: 10.0, SSIM: 0.3}


def gate_problems(record: dict[str, Any] | None, floors: dict[str, Any]) -> list[str]:
    """Why a score is under the platform's `quality:` floors for its metric (empty: it
    passes, or there is no score or no floor for that metric), each with what to do."""
    if not record or record.get("metric") not in (VMAF, SSIM):
        return []
    metric = record["metric"]
    problems = colour_problems(record.get(COLOUR), floors.get(COLOUR) or {})
    broken = [f"{name} {record[name]:g}" for name in ("mean", "median")
              if record.get(name) is not None and record[name] < BROKEN[metric]]
    if broken:
        problems.append(f"{metric.upper()} {' and '.join(broken)} against the frames x264 "
                        f"was given is under {BROKEN[metric]:g}: a broken encode, not a hard "
                        "clip (try another ffmpeg, ffmpeg=PATH)")
    limits = floors.get(metric) or {}
    under = [f"{GATE_NAMES[name]} {record[name]:g} < {limits[name]:g}"
             for name in GATE_FIELDS if name in limits and record.get(name) is not None
             and record[name] < limits[name]]
    drop = (record.get("median") or 0) - record["worst"]
    if "max_drop" in limits and drop > limits["max_drop"]:
        under.append(f"worst frame {drop:.{4 if metric == SSIM else 2}g} under the median "
                     f"{record['median']:g}, more than {limits['max_drop']:g}: a broken frame")
    if under:
        problems.append(f"{metric.upper()} {describe(record)} is under the platform's floor "
                        f"({', '.join(under)}; quality.{metric}): raise video.bitrate, use a "
                        "slower preset, or check the render for damage")
    return problems


COLOUR_NAMES = {"mean": "mean", "worst": "worst frame"}


def colour_problems(record: dict[str, Any] | None, ceilings: dict[str, Any]) -> list[str]:
    """Why the colour check's ΔE is over the platform's `quality.colour` (empty: it is not,
    or the export has no colour record, as one made before the check)."""
    if not record or not record.get("frames"):
        return []
    over = [f"{COLOUR_NAMES[name]} {record[name]:g} > {ceilings[name]:g}"
            for name in ("mean", "worst") if name in ceilings and record[name] > ceilings[name]]
    if not over:
        return []
    return [f"the picture is not the render's: ΔE {record['mean']:g} mean, {record['worst']:g} "
            f"worst (frame {record['worst_frame']}) against the render as its tags "
            f"({record['source']}) say it looks ({', '.join(over)}; quality.colour): "
            "check the colour tags of the render, or try another ffmpeg (ffmpeg=PATH)"]


def describe(record: dict[str, Any] | None) -> str:
    """'mean 93.1, p5 88.0, worst 85.2' (a score), 'packets identical' (a remux), or ''."""
    if not record:
        return ""
    if record.get("metric") == PACKETS:
        return "packets identical"
    return f"mean {record['mean']:g}, p5 {record['p5']:g}, worst {record['worst']:g}"


def colour_label(record: dict[str, Any] | None) -> str:
    """'ΔE 1.2/3.4' (the colour check's mean/worst), or '' without one."""
    colour = (record or {}).get(COLOUR) or {}
    if not colour.get("frames"):
        return ""
    return f"ΔE {colour['mean']:g}/{colour['worst']:g}"


def label(record: dict[str, Any] | None) -> str:
    """'VMAF 93.1/88.0/85.2' (mean/p5/worst), 'remux: packets identical', or ''."""
    if not record:
        return ""
    if record.get("metric") == PACKETS:
        return "remux: packets identical"
    text = f"{record['metric'].upper()} {record['mean']:g}/{record['p5']:g}/{record['worst']:g}"
    return f"{text}, {colour_label(record)}" if colour_label(record) else text


def unaddressed(line: str) -> str:
    """An ffmpeg message without its context's memory address ('[h264 @ 0x55...]')."""
    return re.sub(r" @ 0x[0-9a-f]+\]", "]", line)
