"""Probe a media file in-process with PyAV (no ffprobe binary, no shell)."""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from exporter.model.errors import SourceError
from exporter.model.files import file_identity

if TYPE_CHECKING:
    import av


def pyav():
    """PyAV, imported at its first use: a lazy import, measured at ~80 ms of start-up that
    a run with no export to make (the no-op, a few changed titles) never needs."""
    import av
    return av

# Demuxers of real media containers. Anything else (HLS or concat playlists saved as .mp4,
# images, raw text) is never opened: those demuxers read other files, which untrusted
# media must not reach. Given to libav as format_whitelist, for the probe and for ffmpeg.
ALLOWED_FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts")
DEMUXER_WHITELIST = ",".join(ALLOWED_FORMATS)
MAX_DIMENSION = 8192
OPEN_OPTIONS = {"format_whitelist": DEMUXER_WHITELIST, "protocol_whitelist": "file"}


@dataclass(frozen=True)
class Probe:
    """What the encode plan and the conformance check need to know about a file."""

    format_name: str
    size_bytes: int
    duration_s: float
    video_codec: str
    profile: str | None
    pix_fmt: str | None
    width: int            # as stored
    height: int
    rotation: int         # degrees of the display matrix; ffmpeg applies it on decode
    fps: float
    video_bitrate: int | None
    has_audio: bool
    audio_codec: str | None = None
    audio_channels: int | None = None
    audio_sample_rate: int | None = None
    audio_bitrate: int | None = None
    # Read from the packets and boxes (None: not read, as in a hand-made probe).
    edit_lists: tuple[str, ...] | None = None     # tracks with an MP4 edit list ('vide', 'soun')
    keyframes: int | None = None                  # video keyframes
    keyframe_intervals: tuple[int, ...] | None = None   # distinct gaps between them, frames
    first_keyframe_frame: int | None = None       # where the first keyframe is shown (0)
    closed_gop: bool | None = None                # every keyframe an IDR picture (H.264)
    video_frames: int | None = None               # video packets (frames) in the file
    last_gop_frames: int | None = None            # frames from the last keyframe to the end
    video_start_s: float | None = None            # presentation time of the first frame
    audio_start_s: float | None = None            # and of the first audio sample
    audio_profile: str | None = None              # 'LC' for AAC-LC
    audio_packet_bitrate: int | None = None       # the audio's packets over its duration
    # The colour the stream says it has, in ffmpeg's names (None: untagged); media/colour.py
    # reads an untagged render by one rule.
    color_primaries: str | None = None
    color_trc: str | None = None
    colorspace: str | None = None
    color_range: str | None = None                # 'tv' (limited) or 'pc' (full)

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown to a viewer, after rotation."""
        if abs(self.rotation) % 180 == 90:
            return self.height, self.width
        return self.width, self.height

    def summary(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> Probe:
        """The probe a sidecar recorded (fields it lacks take their defaults)."""
        known = {field.name for field in fields(cls)}
        return cls(**{name: value for name, value in summary.items() if name in known})


def check_dimensions(width: int, height: int) -> None:
    """Refuse absurd frame sizes before decoding a frame of them."""
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise SourceError(f"video is {width}x{height}; at most "
                          f"{MAX_DIMENSION}x{MAX_DIMENSION} is accepted")


def stream_duration(stream: av.stream.Stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def first_frame_rotation(container: av.container.InputContainer,
                         stream: av.video.stream.VideoStream) -> int:
    """Rotation of the first decoded frame; also proves the stream has a decodable frame."""
    av = pyav()
    try:
        for frame in container.decode(stream):
            return int(round(getattr(frame, "rotation", 0) or 0))
    except av.error.FFmpegError as exc:
        raise SourceError(f"video cannot be decoded: {exc.strerror or exc}") from None
    raise SourceError("video stream has no frames")


def probe(path: Path | str) -> Probe:
    """Probe `path`; SourceError with a one-line cause when it is not a usable video.

    Remembered per process while the file is unchanged: the platforms of a title probe the
    same source.
    """
    try:
        identity = file_identity(path)
    except OSError:
        return probe_file(Path(path))       # reports the missing / unreadable file
    return _probe_cached(str(path), identity)


@functools.lru_cache(maxsize=256)
def _probe_cached(path, identity):
    return probe_file(Path(path))


def probe_file(path: Path) -> Probe:
    """Open and probe `path` with PyAV (no cache)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise SourceError(f"{path.name} is missing") from None
    except OSError as exc:
        raise SourceError(f"{path.name} is unreadable: {exc.strerror}") from None
    if size == 0:
        raise SourceError(f"{path.name} is empty (0 bytes)")
    av = pyav()
    try:
        container = av.open(str(path), options=OPEN_OPTIONS)
    except av.error.FFmpegError as exc:
        raise SourceError(f"{path.name} is not a readable video (MP4/MOV, Matroska/WebM, AVI "
                          f"or MPEG-TS): {exc.strerror or exc}") from None
    with container:
        if container.format.name not in ALLOWED_FORMATS:
            raise SourceError(f"{path.name} is a '{container.format.name}' file, "
                              "not a video container")
        if not container.streams.video:
            kind = "audio-only" if container.streams.audio else "no streams"
            raise SourceError(f"{path.name} has no video stream ({kind})")
        video = container.streams.video[0]
        check_dimensions(video.codec_context.width, video.codec_context.height)
        rate = video.average_rate or video.guessed_rate or video.base_rate
        fps = float(Fraction(rate)) if rate else 0.0
        duration = stream_duration(video)
        own_duration = duration is not None
        if duration is None and container.duration is not None:
            duration = container.duration / av.time_base
        audio = container.streams.audio[0] if container.streams.audio else None
        codec = video.codec_context
        facts = dict(
            format_name=container.format.name,
            size_bytes=size,
            duration_s=round(duration or 0.0, 3),
            video_codec=codec.name,
            profile=codec.profile,
            pix_fmt=codec.format.name if codec.format else None,
            width=codec.width,
            height=codec.height,
            fps=round(fps, 3),
            video_bitrate=video.bit_rate or None,
            has_audio=audio is not None,
            **colour_tags(codec),
        )
        if audio is not None:
            facts.update(
                audio_codec=audio.codec_context.name,
                audio_channels=audio.codec_context.channels,
                audio_sample_rate=audio.codec_context.sample_rate,
                audio_bitrate=audio.bit_rate or None,
            )
            facts["audio_profile"] = audio.codec_context.profile
        facts["rotation"] = first_frame_rotation(container, video)
    facts.update(packet_facts(path, fps))
    video_end = facts.pop("video_end_s")
    if not own_duration and video_end is not None:
        # no duration of its own (Matroska, MPEG-TS): the container's is the longest
        # stream's, often the audio's; the pictures end where the last frame does
        facts["duration_s"] = round(video_end - facts["video_start_s"], 3)
    facts["edit_lists"] = edit_lists(path) if facts["format_name"] == ALLOWED_FORMATS[0] else ()
    return Probe(**facts)


# libavutil's numbers for the colour tags (pixfmt.h), by ffmpeg's option names; 2 and 0 are
# "unspecified", left out.
PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
             9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
TRANSFERS = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
             8: "linear", 9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e",
             13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084",
             17: "smpte428", 18: "arib-std-b67"}
MATRICES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
            8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 14: "ictcp"}
RANGES = {1: "tv", 2: "pc"}


def colour_tags(codec: Any) -> dict[str, str | None]:
    """The stream's colour tags by name (None where untagged or unknown)."""
    def named(table: dict[int, str], value: Any) -> str | None:
        return table.get(int(value)) if value is not None else None
    return {"color_primaries": named(PRIMARIES, getattr(codec, "color_primaries", None)),
            "color_trc": named(TRANSFERS, getattr(codec, "color_trc", None)),
            "colorspace": named(MATRICES, getattr(codec, "colorspace", None)),
            "color_range": named(RANGES, getattr(codec, "color_range", None))}


H264_IDR = 5


def nal_types(data: bytes, length_size: int | None) -> list[int]:
    """The NAL unit types of one H.264 packet: length-prefixed (MP4) or Annex B (MPEG-TS)."""
    types = []
    if length_size:
        position = 0
        while position + length_size < len(data):
            size = int.from_bytes(data[position:position + length_size], "big")
            types.append(data[position + length_size] & 0x1F)
            position += length_size + size
        return types
    for part in data.split(b"\x00\x00\x01")[1:]:
        if part:
            types.append(part[0] & 0x1F)
    return types


def packet_facts(path: Path, fps: float) -> dict[str, Any]:
    """Keyframes (where they fall, whether each is an IDR picture), where video and audio
    start, and the audio's bitrate, read from the packets (no decoding)."""
    av = pyav()
    with av.open(str(path), options=OPEN_OPTIONS) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        extradata = video.codec_context.extradata or b""
        length_size = (extradata[4] & 3) + 1 if extradata[:1] == b"\x01" else None
        h264 = video.codec_context.name == "h264"
        shown, keys, idr, audio_bytes, audio_times, ends = [], [], True, 0, [], []
        streams = [video] + ([audio] if audio is not None else [])
        for packet in container.demux(streams):
            if packet.pts is None or packet.size == 0:
                continue
            when = float(packet.pts * packet.time_base)
            if packet.stream is video:
                shown.append(when)
                length = float((packet.duration or 0) * packet.time_base)
                ends.append(when + (length or (1 / fps if fps else 0.0)))
                if packet.is_keyframe:
                    keys.append(when)
                    if h264 and H264_IDR not in nal_types(bytes(packet), length_size):
                        idr = False
            else:
                audio_bytes += packet.size
                audio_times.append((when, float((packet.duration or 0) * packet.time_base)))
    start = min(shown) if shown else 0.0
    frames = sorted({round((when - start) * fps) for when in keys}) if fps else []
    facts = {"keyframes": len(keys), "video_start_s": round(start, 4),
             "video_end_s": round(max(ends), 4) if ends else None,
             "keyframe_intervals": tuple(sorted({b - a for a, b in pairwise(frames)})),
             "first_keyframe_frame": frames[0] if frames else None,
             "video_frames": len(shown) or None,
             "last_gop_frames": (len(shown) - frames[-1]) if frames and shown else None,
             "closed_gop": idr if h264 else None}
    if audio_times:
        first = min(when for when, _ in audio_times)
        end = max(when + length for when, length in audio_times)
        facts["audio_start_s"] = round(first, 4)
        if end > first:
            facts["audio_packet_bitrate"] = int(audio_bytes * 8 / (end - first))
    return facts


MP4_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"edts"}


def edit_lists(path: Path | str) -> tuple[str, ...]:
    """The handler type ('vide', 'soun', ...) of each MP4 track that holds an edit list."""
    found = []

    def walk(handle: Any, start: int, end: int, track: dict[str, Any]) -> None:
        handle.seek(start)
        while handle.tell() + 8 <= end:
            position = handle.tell()
            size, name = struct.unpack(">I4s", handle.read(8))
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", handle.read(8))[0], 16
            elif size == 0:
                size = end - position
            if size < header:
                return
            if name == b"trak":
                inner = {"handler": "?", "elst": False}
                walk(handle, position + header, position + size, inner)
                if inner["elst"]:
                    found.append(inner["handler"])
            elif name in MP4_CONTAINER_BOXES:
                walk(handle, position + header, position + size, track)
            elif name == b"elst":
                track["elst"] = True
            elif name == b"hdlr":
                handle.seek(position + header + 8)      # version/flags, pre_defined
                track["handler"] = handle.read(4).decode("latin-1")
            handle.seek(position + size)

    with open(path, "rb") as handle:
        handle.seek(0, 2)
        walk(handle, 0, handle.tell(), {"handler": "?", "elst": False})
    return tuple(found)


def top_level_box_headers(handle: BinaryIO) -> Iterator[tuple[bytes, int, int, int]]:
    """(name, position, header size, box size) of each top-level ISO BMFF box of an open
    file, in file order, reading headers only; the last one yielded when its size is less
    than its header (not a box structure, or damaged)."""
    end, at = os.fstat(handle.fileno()).st_size, 0
    while at + 8 <= end:
        handle.seek(at)
        size, name = struct.unpack(">I4s", handle.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", handle.read(8))[0], 16
        elif size == 0:         # to the end of the file
            size = end - at
        yield name, at, header, size
        if size < header:
            return
        at += size


def top_level_boxes(path: Path | str) -> list[str]:
    """Names of the top-level MP4 boxes in file order (enough to see where moov sits)."""
    with open(path, "rb") as handle:
        return [name.decode("latin-1") for name, *_ in top_level_box_headers(handle)]


def moov_before_mdat(path: Path | str) -> bool:
    """True when the index (moov) precedes the media data: playback can start while downloading."""
    boxes = top_level_boxes(path)
    return "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height) of an image this tool wrote (a cover or poster JPEG)."""
    with pyav().open(str(path), format="image2") as container:
        codec = container.streams.video[0].codec_context
        return codec.width, codec.height
