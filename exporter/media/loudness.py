"""Loudness per platform: ffmpeg's two-pass loudnorm, and an independent check of the result.

Platforms play audio at a normalised loudness (YouTube about -14 LUFS), so a render mixed
louder is turned down and a quieter one sounds weak next to others. The first pass measures
the source (once per source and target: the measurement is kept in the shared cache); the
second pass is a filter inside the one encode. The output is measured again with ebur128,
a different filter, so the check does not trust the filter it checks.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from exporter.media.ffmpeg import QUIET, run_ffmpeg
from exporter.model.files import read_json, write_json_atomic
from exporter.model.spec import Spec, digest

# Below this integrated loudness a source is taken as silence: nothing to normalise.
SILENCE_LUFS = -70.0
# How far from the target an output may land (issue: one loudness unit).
TOLERANCE_LU = 1.0
# loudnorm works at 192 kHz; the encode's sample rate is set by -ar after it.
MEASURED_FIELDS = ("input_i", "input_tp", "input_lra", "input_thresh", "target_offset")


def target_of(spec: Spec) -> dict[str, float] | None:
    """The spec's loudness target ({integrated, true_peak, range}) or None when off."""
    return spec.audio.get("loudness") or None


def loudnorm_target(target: dict[str, float]) -> str:
    return (f"loudnorm=I={target['integrated']}:TP={target['true_peak']}"
            f":LRA={target['range']}")


# The audio of the shipped specs: what a measurement is made on when none is named.
STEREO_48K = {"channels": 2, "sample_rate": 48000}


def output_format(audio: dict[str, Any]) -> str:
    """The filter that gives the source's audio the export's channels and sample rate (the
    same downmix and resampling as the encoder's -ac/-ar): both passes measure and normalise
    what is output, not the source's layout (a 5.1 mix measured as 5.1 lands ~3 dB hot in
    stereo, a mono one ~3 dB low)."""
    layout = "stereo" if audio["channels"] == 2 else "mono"
    return f"aformat=channel_layouts={layout}:sample_rates={audio['sample_rate']}"


def measure_argv(ffmpeg: str, source: Path | str, target: dict[str, float],
                 duration_s: float, audio: dict[str, Any] = STEREO_48K,
                 padded: bool = False) -> list[str]:
    """The first pass: loudnorm prints its measurement of the source's first `duration_s`
    (what the export keeps of it: a trimmed source is measured as trimmed), downmixed and
    resampled as the export's `audio` will be, as JSON. `padded`: the export is held to
    `duration_s` with silence, which is measured too (it lowers the integrated loudness of
    a short clip)."""
    pad = f"apad=whole_dur={duration_s:.3f}," if padded else ""
    return [ffmpeg, *QUIET, "-loglevel", "info", "-i", str(source), "-map", "0:a:0", "-vn",
            "-t", f"{duration_s:.3f}",
            "-af", f"{output_format(audio)},{pad}{loudnorm_target(target)}:print_format=json",
            "-f", "null", "-"]


def parse_measurement(stderr: str) -> dict[str, float]:
    """loudnorm's JSON block (the last {...} on stderr) as numbers (-inf for silence)."""
    start, end = stderr.rfind("{"), stderr.rfind("}")
    if start < 0 or end < start:
        raise ValueError("loudnorm printed no measurement")
    block = json.loads(stderr[start:end + 1])
    return {field: float(block[field]) for field in MEASURED_FIELDS}


def is_silent(measured: dict[str, float]) -> bool:
    integrated = measured["input_i"]
    return math.isinf(integrated) or math.isnan(integrated) or integrated < SILENCE_LUFS


def second_pass_filter(target: dict[str, float], measured: dict[str, float],
                       audio: dict[str, Any] = STEREO_48K) -> str:
    """The filter of the encode: the export's channels and rate first (as measured), then
    linear gain to the target when the true peak allows it, else loudnorm's dynamic mode;
    then back to the export's rate (loudnorm works at 192 kHz)."""
    return (f"{output_format(audio)},{loudnorm_target(target)}:measured_I={measured['input_i']}"
            f":measured_TP={measured['input_tp']}:measured_LRA={measured['input_lra']}"
            f":measured_thresh={measured['input_thresh']}"
            f":offset={measured['target_offset']}:linear=true,"
            f"aresample={audio['sample_rate']}")


def measure_source(ffmpeg: str, source: Path, source_sha256: str, target: dict[str, float],
                   duration_s: float, cache_dir: Path, ffmpeg_version: str,
                   audio: dict[str, Any] = STEREO_48K, padded: bool = False) -> dict[str, float]:
    """The first pass for (source, target, duration kept, output channels and rate), made
    once: kept as JSON in `cache_dir`."""
    layout = {"channels": audio["channels"], "sample_rate": audio["sample_rate"]}
    key = digest({"source": source_sha256, "target": target, "ffmpeg": ffmpeg_version,
                  "duration_s": round(duration_s, 3), "output": layout, "padded": padded})
    path = Path(cache_dir) / f"loudness-{key}.json"
    cached = read_json(path)
    if isinstance(cached, dict) and set(MEASURED_FIELDS) <= set(cached):
        return {field: float(cached[field]) for field in MEASURED_FIELDS}
    measured = parse_measurement(run_ffmpeg(measure_argv(ffmpeg, source, target, duration_s,
                                                         layout, padded)))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {field: str(value) for field, value in measured.items()})
    return measured


EBUR128_I = re.compile(r"^\s*I:\s+(-?[\d.]+|-inf) LUFS", re.MULTILINE)
EBUR128_PEAK = re.compile(r"^\s*Peak:\s+(-?[\d.]+|-inf) dBFS", re.MULTILINE)


def measure_output(ffmpeg: str, path: Path | str) -> dict[str, float]:
    """Integrated loudness and true peak of a file's audio, by ebur128 (not loudnorm)."""
    stderr = run_ffmpeg([ffmpeg, *QUIET, "-loglevel", "info", "-nostats", "-i", str(path),
                         "-map", "0:a:0", "-vn", "-af", "ebur128=peak=true", "-f", "null", "-"])
    integrated, peak = EBUR128_I.findall(stderr), EBUR128_PEAK.findall(stderr)
    if not integrated:
        raise ValueError("ebur128 printed no summary")
    return {"integrated": float(integrated[-1]),
            "true_peak": float(peak[-1]) if peak else float("-inf")}


def loudness_problems(achieved: dict[str, float], target: dict[str, float]) -> list[str]:
    """Why the output's loudness misses the target (empty: it does not)."""
    off = achieved["integrated"] - target["integrated"]
    if math.isfinite(off) and abs(off) <= TOLERANCE_LU:
        return []
    return [f"loudness {achieved['integrated']:.1f} LUFS, the platform's target is "
            f"{target['integrated']:g} LUFS ± {TOLERANCE_LU:g} LU"]


def sidecar_record(target: dict[str, float] | None, measured: dict[str, float] | None,
                   achieved: dict[str, float] | None, skipped: str | None) -> dict[str, Any] | None:
    """What the sidecar says of loudness: off (None), skipped with why, or done."""
    if target is None:
        return None
    if skipped:
        return {"target": target, "skipped": skipped}
    return {"target": target, "measured": measured, "achieved": achieved}
