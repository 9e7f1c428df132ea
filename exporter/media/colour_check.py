"""The colour check: the export as an SDR BT.709 screen shows it, against the render as
its own tags say it looks, on the frames the content score decodes, at low resolution.

The content score (quality.py) compares the export with the frames x264 was given, so a
mistake in the picture chain before x264 (a wrong matrix, HDR left as it is, a negated or
level-shifted picture) scores as perfect. This check trusts nothing of that chain: it
reads both files' decoded samples (the glimpses below: what the encode's decoder gave
before any filter, and what the score's pass decoded of the export; else decoded here with
PyAV), each by its own colour (the render's by media/colour.source_colour, the export's as
BT.709), and turns them into light by arithmetic written here (NumPy), not by ffmpeg's
filters:

- YUV to non-linear RGB by the picture's matrix and range;
- SDR to light by the BT.1886 display curve (gamma 2.4, what an SDR screen does); PQ by
  SMPTE ST 2084's EOTF and HLG by BT.2100's inverse OETF and OOTF (a 1,000 cd/m² display,
  on each of R, G, B as zimg does),
  both with SDR white at 203 cd/m² (BT.2408); what an SDR screen cannot show (above white,
  outside BT.709's gamut) is clipped on the render's side, so tone-mapped highlights
  differ from it only by how much they were compressed;
- to CIE XYZ by the picture's primaries (D65), to CIELAB, and compared by CIE76 ΔE
  (Euclidean distance in L*a*b*: about 2.3 is a just-noticeable difference).

Each frame is averaged over a grid of GRID cells of the part of the picture the render
fills (the whole export for `crop`; the letterboxed picture for `pad` and `blur`), so the
check sees colour, levels and layout, not detail: noise and fine texture average out.
Export frame i (at i/fps) is compared with the render frame shown at that moment.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.media.colour import (
    BT601_525,
    BT601_625,
    BT709,
    BT2020,
    FULL,
    HDR_PEAK_NITS,
    HLG,
    PQ,
    REFERENCE_WHITE_NITS,
    Colour,
    source_colour,
)
from exporter.media.probe import OPEN_OPTIONS, pyav

if TYPE_CHECKING:
    import numpy as np

    from exporter.media.probe import Probe

COLOUR = "colour"
OUTPUT_WIDTH = 72           # the export is read this wide (1080 / 15) before the grid
RENDER_WIDTH = 72           # and the part of the render compared with it, about as wide
DELTA_E = "CIE76"
GRID = (16, 28)             # cells across and down the compared region

# Chromaticities (x, y) of each family's red, green and blue; white is D65 for all.
CHROMATICITIES = {
    BT709: ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060)),
    BT601_525: ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070)),
    BT601_625: ((0.640, 0.330), (0.290, 0.600), (0.150, 0.060)),
    BT2020: ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)),
}
D65 = (0.3127, 0.3290)
# (Kr, Kb) of each YUV matrix.
LUMA_WEIGHTS = {BT709: (0.2126, 0.0722), BT601_525: (0.299, 0.114),
                BT601_625: (0.299, 0.114), BT2020: (0.2627, 0.0593)}
OUTPUT_COLOUR = Colour(primaries=BT709, matrix=BT709, transfer="sdr", range="limited",
                       bits=8, tagged=True)


def numpy():
    """NumPy, imported at first use (a run with nothing to export never needs it)."""
    import numpy
    return numpy


# ---- arithmetic: samples to CIELAB -----------------------------------------------------

@functools.lru_cache(maxsize=None)
def rgb_to_xyz(primaries: str) -> np.ndarray:
    """The 3x3 matrix from linear RGB of `primaries` to CIE XYZ (Y of white = 1); made once
    per family, not per frame (callers never write into it)."""
    np = numpy()
    xy = np.array(CHROMATICITIES[primaries])
    columns = np.stack([xy[:, 0] / xy[:, 1], np.ones(3), (1 - xy[:, 0] - xy[:, 1]) / xy[:, 1]])
    white = np.array([D65[0] / D65[1], 1.0, (1 - D65[0] - D65[1]) / D65[1]])
    return columns * np.linalg.solve(columns, white)


def yuv_to_rgb(yuv: np.ndarray, colour: Colour) -> np.ndarray:
    """Non-linear R'G'B' (0..1, unclipped) from YUV samples in 8-bit code units (a deeper
    sample divided by 2 ** (bits - 8)) read as `colour`."""
    np = numpy()
    if colour.range == FULL:
        y = yuv[..., 0] / 255.0
        u, v = (yuv[..., 1] - 128.0) / 255.0, (yuv[..., 2] - 128.0) / 255.0
    else:           # limited: 16-235 and 16-240 at 8 bits, the same codes shifted at more
        y = (yuv[..., 0] - 16.0) / 219.0
        u, v = (yuv[..., 1] - 128.0) / 224.0, (yuv[..., 2] - 128.0) / 224.0
    kr, kb = LUMA_WEIGHTS[colour.matrix]
    kg = 1.0 - kr - kb
    r = y + 2 * (1 - kr) * v
    b = y + 2 * (1 - kb) * u
    g = (y - kr * r - kb * b) / kg
    return np.stack([r, g, b], axis=-1)


def pq_to_nits(signal: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084's EOTF: PQ signal (0..1) to cd/m²."""
    np = numpy()
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    power = np.clip(signal, 0, 1) ** (1 / m2)
    return 10000 * (np.maximum(power - c1, 0) / (c2 - c3 * power)) ** (1 / m1)


def hlg_to_nits(signal: np.ndarray) -> np.ndarray:
    """HLG to cd/m²: BT.2100's inverse OETF, then the OOTF of a 1,000 cd/m² display (gamma
    1.2) on each of R, G and B, as zimg applies it (BT.2100 applies it to luminance; the
    two differ in saturation only, and the tags do not say which the render was made for)."""
    np = numpy()
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    signal = np.clip(signal, 0, 1)
    scene = np.where(signal <= 0.5, signal ** 2 / 3,
                     (np.exp((signal - c) / a) + b) / 12)
    return HDR_PEAK_NITS * scene ** 1.2


def to_light(rgb: np.ndarray, colour: Colour) -> np.ndarray:
    """Linear light of an SDR screen (1.0 = SDR white) from R'G'B' of `colour`."""
    np = numpy()
    if colour.transfer == PQ:
        return pq_to_nits(rgb) / REFERENCE_WHITE_NITS
    if colour.transfer == HLG:
        return hlg_to_nits(rgb) / REFERENCE_WHITE_NITS
    return np.clip(rgb, 0, 1) ** 2.4          # BT.1886


def screen_light(rgb: np.ndarray, colour: Colour) -> np.ndarray:
    """Linear BT.709 light (0..1) an SDR BT.709 screen shows for R'G'B' of `colour`: what
    it cannot show (above white, outside its gamut) clipped, each component."""
    np = numpy()
    light = to_light(rgb, colour)
    if colour.primaries != BT709:
        to_709 = np.linalg.solve(rgb_to_xyz(BT709), rgb_to_xyz(colour.primaries))
        light = light @ to_709.T
    return np.clip(light, 0, 1)


def lab_of_light(light: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of linear BT.709 light."""
    np = numpy()
    xyz = light @ rgb_to_xyz(BT709).T
    ratio = xyz / rgb_to_xyz(BT709).sum(axis=1)
    f = np.where(ratio > (6 / 29) ** 3, np.cbrt(ratio), ratio / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab(rgb: np.ndarray, colour: Colour) -> np.ndarray:
    """CIELAB (D65) of R'G'B' of `colour` as an SDR BT.709 screen shows it."""
    return lab_of_light(screen_light(rgb, colour))


def cells_lab(samples: np.ndarray, colour: Colour, grid: Grid) -> np.ndarray:
    """CIELAB of each grid cell of `samples` (YUV of `colour`): each sample made light first
    and the light averaged, so a colour the screen clips is clipped before it is averaged
    with its neighbours (as the eye sees the cell), not after."""
    return lab_of_light(grid(screen_light(yuv_to_rgb(samples, colour), colour)))


# ---- geometry: which part of each picture is compared --------------------------------

def region(fit: str, source_size: tuple[int, int],
           output_size: tuple[int, int]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """((x, y, w, h) in the source, (x, y, w, h) in the output) of the same picture, as
    fractions of each frame: `crop` shows the source's middle over the whole output; `pad`
    and `blur` show the whole source in the output's middle."""
    (sw, sh), (ow, oh) = source_size, output_size
    if fit == "crop":
        scale = max(ow / sw, oh / sh)
        w, h = ow / scale / sw, oh / scale / sh
        return ((1 - w) / 2, (1 - h) / 2, w, h), (0.0, 0.0, 1.0, 1.0)
    scale = min(ow / sw, oh / sh)
    w, h = sw * scale / ow, sh * scale / oh
    return (0.0, 0.0, 1.0, 1.0), ((1 - w) / 2, (1 - h) / 2, w, h)


def cell_weights(length: int, start: float, size: float, cells: int) -> np.ndarray:
    """(cells x length) weights averaging `length` pixels into `cells` equal cells over
    the fraction [start, start + size) of the axis (partly covered pixels in part)."""
    np = numpy()
    edges = (start + size * np.arange(cells + 1) / cells) * length
    pixels = np.arange(length)
    overlap = np.clip(np.minimum(edges[1:, None], pixels + 1)
                      - np.maximum(edges[:-1, None], pixels), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


class Grid:
    """The GRID cell means over one area of pictures of one size (weights made once)."""

    def __init__(self, shape: tuple[int, ...], area: tuple[float, ...]):
        height, width = shape[:2]
        x, y, w, h = area
        self.down = cell_weights(height, y, h, GRID[1])
        self.across = cell_weights(width, x, w, GRID[0])

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """(rows x columns x 3) means of `samples` (height x width x 3)."""
        np = numpy()
        return np.stack([self.down @ samples[..., k] @ self.across.T for k in range(3)],
                        axis=-1)


# ---- decoding ----------------------------------------------------------------------------

def decoded(path: Path | str) -> Iterator[tuple[float, Any]]:
    """(seconds from the first frame, the frame) of every frame of the first video stream
    (a render or an export, opened as untrusted; or a glimpse this tool wrote, as NUT)."""
    options = ({"format_whitelist": "nut", "protocol_whitelist": "file"}
               if Path(path).suffix == ".nut" else OPEN_OPTIONS)
    with pyav().open(str(path), options=options) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            start = frame.time if start is None else start
            yield frame.time - start, frame


def glimpse_size(size: tuple[int, int], width: int) -> tuple[int, int]:
    """The size a picture of `size` (as shown) is read at, about `width` across."""
    scale = min(1.0, width / size[0])
    return max(2, round(size[0] * scale)), max(2, round(size[1] * scale))


def small(frame: Any, width: int, reformatter: Any, bits: int = 8,
          turn: bool = True) -> np.ndarray:
    """The frame as shown (turned by its display matrix, unless `turn` is False: a glimpse
    is written as shown) at about `width` across, as YUV 4:4:4 samples in 8-bit code units
    (height x width x 3, float): swscale averages the area, with no colour conversion, in
    8 bits for an 8-bit picture (a third of the time of 16) and in 16 for a deeper one
    (`reformatter` keeps its context from frame to frame: a tenth of the cost of a new one)."""
    np = numpy()
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4 if turn else 0
    shown = (frame.width, frame.height) if turns % 2 == 0 else (frame.height, frame.width)
    across, down = glimpse_size(shown, width)
    size = ({"width": across, "height": down} if turns % 2 == 0
            else {"width": down, "height": across})
    if bits <= 8:       # planar: (3, height, width)
        samples = np.moveaxis(reformatter.reformat(
            frame, format="yuv444p", interpolation="AREA", **size).to_ndarray(), 0, -1)
        samples = samples.astype("float32")
    else:               # (height, width, 3), 16 bits
        samples = reformatter.reformat(frame, format="yuv444p16le", interpolation="AREA",
                                       **size).to_ndarray().astype("float32") / 256
    return np.rot90(samples, k=turns) if turns else samples


# ---- glimpses: the small pictures, written by the ffmpeg passes that decode anyway ------
#
# Decoding is most of the check's cost (a 1080x1920 frame: ~7 ms, the whole check's budget
# is ~10). The encode decodes the render and the content score decodes the export; each
# also writes every frame it decoded, before any filter of the picture chain, at the size
# this check reads it (`glimpse_filter`: swscale's area average, no colour conversion, the
# range kept), losslessly with its timestamps. The check then reads those instead of
# decoding both files again: the same decoder's samples, scaled by the same scaler.

GLIMPSE_CODEC = ["-c:v", "ffv1", "-fps_mode", "passthrough", "-f", "nut"]


def glimpse_filter(size: tuple[int, int], bits: int, colour_range: str) -> str:
    """The filters writing a decoded picture of `colour_range` at `size` as this check
    reads it: its codes averaged, never converted. The frames are then said to be limited
    range, codes unchanged: ffmpeg 9 converts full-range frames to limited before an FFV1
    encoder (and 5.1 a J format), which would change the codes the check reads by the
    render's tags."""
    return (f"scale=w={size[0]}:h={size[1]}:flags=area:in_range={colour_range}"
            f":out_range={colour_range},setrange=limited,"
            f"format={'yuv444p' if bits <= 8 else 'yuv444p16le'}")


def export_glimpse_size(output_size: tuple[int, int]) -> tuple[int, int]:
    """The size an export of `output_size` is read at."""
    return glimpse_size(output_size, OUTPUT_WIDTH)


def render_glimpse_width(fit: str, source_size: tuple[int, int],
                         output_size: tuple[int, int]) -> int:
    """How wide the render is read for an export of `output_size`: its compared part
    about as wide as the export's glimpse."""
    source_area, _ = region(fit, source_size, export_glimpse_size(output_size))
    return min(source_size[0], round(RENDER_WIDTH / source_area[2]))


def render_glimpse(source_probe: Probe, targets: list[tuple[str, tuple[int, int]]]) -> str:
    """The filters writing the render's glimpse for exports [(fit, output size), ...]: as
    wide as the widest of them needs (the others read it smaller again)."""
    size = source_probe.display_size
    width = max(render_glimpse_width(fit, size, output) for fit, output in targets)
    colour = source_colour(source_probe)
    return glimpse_filter(glimpse_size(size, width), colour.bits, colour.range)


def with_next_start(render: Iterator[tuple[float, Any]]) -> Iterator[tuple[Any, float | None]]:
    """(frame, when the next frame starts; None for the last) of each render frame."""
    current = next(render, None)
    for upcoming in render:
        yield current[1], upcoming[0]
        current = upcoming
    if current is not None:
        yield current[1], None




class Comparison:
    """One export against the render: its frames in order, each compared with the render
    frame shown at its middle (a frame-rate conversion's nearest frame: the last render
    frame to start before it; the last one held past the render's end, as when padded).
    `glimpse`: the export's frames as the content score's pass wrote them (else decoded
    here); `turn_render`: False when the render's frames come from its glimpse."""

    def __init__(self, output: Path | str, fit: str, fps: float, source_probe: Probe,
                 source_colour: Colour, glimpse: Path | str | None = None,
                 turn_render: bool = True,
                 kept: list[tuple[int, np.ndarray]] | None = None):
        from av.video.reformatter import VideoReformatter
        self.fit, self.fps, self.source_colour = fit, fps, source_colour
        self.turn_render = turn_render
        self.source_size = source_probe.display_size
        self.to_output, self.to_render = VideoReformatter(), VideoReformatter()
        # (frame number, its samples) of the export's frames compared, in order
        self.frames = (iter(kept) if kept is not None else enumerate(
            small(frame, OUTPUT_WIDTH, self.to_output, turn=glimpse is None)
            for _, frame in decoded(glimpse or output)))
        self.upcoming = next(self.frames, None)
        self.deltas: list[float] = []
        self.numbers: list[int] = []
        self.grids = None
        if self.upcoming is not None:
            height, width = self.upcoming[1].shape[:2]
            self.source_area, self.output_area = region(fit, self.source_size, (width, height))
            self.render_width = render_glimpse_width(fit, self.source_size, (width, height))

    def due(self, next_start: float | None) -> bool:
        """True when the next export frame is shown over the current render frame."""
        if self.upcoming is None:
            return False
        moment = (self.upcoming[0] + 0.5) / self.fps
        return next_start is None or next_start >= moment - 1e-6

    def compare(self, frame: Any) -> None:
        """ΔE of the next export frame against the render's `frame`."""
        np = numpy()
        reference = small(frame, self.render_width, self.to_render, self.source_colour.bits,
                          turn=self.turn_render)
        number, samples = self.upcoming
        samples = samples.astype("float32")
        if self.grids is None:
            self.grids = (Grid(samples.shape, self.output_area),
                          Grid(reference.shape, self.source_area))
        seen = cells_lab(samples, OUTPUT_COLOUR, self.grids[0])
        meant = cells_lab(reference, self.source_colour, self.grids[1])
        self.deltas.append(float(np.sqrt(((seen - meant) ** 2).sum(axis=-1)).mean()))
        self.numbers.append(number)
        self.upcoming = next(self.frames, None)

    def record(self, seconds: float) -> dict[str, Any]:
        np = numpy()
        if not self.deltas:
            return {"metric": COLOUR, "frames": 0}
        worst = int(np.argmax(self.deltas))
        return {"metric": COLOUR, "delta_e": DELTA_E,
                "mean": round(float(np.mean(self.deltas)), 2),
                "worst": round(self.deltas[worst], 2), "worst_frame": self.numbers[worst],
                "frames": len(self.deltas), "grid": f"{GRID[0]}x{GRID[1]}",
                "source": self.source_colour.label(), "seconds": round(seconds, 3)}


def check_colours(outputs: list[tuple[Path | str, str, float]], source: Path | str,
                  source_colour: Colour, source_probe: Probe,
                  glimpses: Glimpses | None = None) -> list[dict[str, Any]]:
    """The colour record of each (output, fit, fps) made from `source`: each frame compared
    with the render frame shown at the same moment, CIE76 ΔE summarised (mean, worst and
    which). The render is decoded once for all of them (the exports one encode made), or
    read from the encode's glimpse when `glimpses` has it (and each export from its own)."""
    started = time.monotonic()
    glimpses = glimpses or Glimpses()
    comparisons = [Comparison(output, fit, fps, source_probe, source_colour,
                              glimpses.of(output), turn_render=glimpses.render is None,
                              kept=glimpses.kept(output))
                   for output, fit, fps in outputs]
    for frame, next_start in with_next_start(decoded(glimpses.render or source)):
        for comparison in comparisons:
            while comparison.due(next_start):
                comparison.compare(frame)
    seconds = time.monotonic() - started
    return [comparison.record(seconds) for comparison in comparisons]


def check_colour(output: Path | str, source: Path | str, source_colour: Colour,
                 source_probe: Probe, fit: str, fps: float,
                 glimpses: Glimpses | None = None) -> dict[str, Any]:
    """The colour record of one export (check_colours)."""
    return check_colours([(output, fit, fps)], source, source_colour, source_probe,
                         glimpses)[0]


class Glimpses:
    """Where the glimpses of one encode are written: the render's (one) and each
    export's, in a directory of their own; those that exist when the check runs are read."""

    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory) if directory else None
        self.small_frames: dict[str, list[tuple[int, np.ndarray]]] = {}

    def keep(self, output: Path | str, frames: list[tuple[int, np.ndarray]]) -> None:
        """Keep the frames of `output` its check decoded [(number, samples)], small: the
        colour check compares those (the content score decodes only some GOPs)."""
        self.small_frames[str(output)] = frames

    def kept(self, output: Path | str) -> list[tuple[int, np.ndarray]] | None:
        return self.small_frames.get(str(output))

    def render_path(self) -> Path | None:
        return self.directory / "render.nut" if self.directory else None

    def export_path(self, output: Path | str) -> Path | None:
        return self.directory / f"{Path(output).name}.nut" if self.directory else None

    @property
    def render(self) -> Path | None:
        path = self.render_path()
        return path if path and path.is_file() else None

    def of(self, output: Path | str) -> Path | None:
        path = self.export_path(output)
        return path if path and path.is_file() else None
