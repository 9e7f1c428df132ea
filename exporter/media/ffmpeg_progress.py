"""ffmpeg's machine-readable `-progress` output -> ProgressUpdate values. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressUpdate:
    out_time_s: float        # output media time written so far (0 while ffmpeg says N/A)
    speed: float | None      # x realtime, as ffmpeg measures it; None until it knows
    done: bool               # the last block (progress=end)
    frame: int | None = None  # video frames written


def parse_block(fields: dict[str, str]) -> ProgressUpdate:
    """One `-progress` block ({key: value}) -> ProgressUpdate.

    out_time_us is the exact field (out_time_ms is microseconds too, a historic misnomer);
    before the first packet ffmpeg writes N/A or a negative time, read as 0.
    out_time is the furthest stream: with audio it runs ahead of the video while x264
    fills its lookahead, drops back when the audio ends, and may be N/A near the end.
    """
    out_time_us = parse_number(fields.get("out_time_us"))
    out_time_s = (out_time_us / 1e6 if out_time_us is not None
                  else parse_clock(fields.get("out_time")))
    speed = parse_number((fields.get("speed") or "").strip().removesuffix("x"))
    frame = parse_number(fields.get("frame"))
    return ProgressUpdate(out_time_s=max(0.0, out_time_s or 0.0),
                          speed=speed if speed and speed > 0 else None,
                          done=fields.get("progress") == "end",
                          frame=int(frame) if frame is not None and frame >= 0 else None)


def progress_updates(lines: Iterable[str]) -> Iterator[ProgressUpdate]:
    """Yield a ProgressUpdate for each block of `ffmpeg -progress` lines (ends at progress=)."""
    fields = {}
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if not sep:
            continue
        fields[key] = value.strip()
        if key == "progress":
            yield parse_block(fields)
            fields = {}


def parse_number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def parse_clock(text: str | None) -> float | None:
    """'00:01:02.500000' -> 62.5; None for N/A or anything else."""
    parts = (text or "").split(":")
    numbers = [parse_number(part) for part in parts]
    if len(parts) != 3 or None in numbers:
        return None
    hours, minutes, seconds = numbers
    return hours * 3600 + minutes * 60 + seconds
