"""Colour-patch renders and the tests' own reading of a patch's colour.

A patch is a BT.709 SDR colour (non-linear R'G'B', 0..1, what a BT.709 screen is sent).
A render of a kind holds the same light as that patch on its own terms: the patch's light
on an SDR screen (BT.1886, gamma 2.4), in the kind's primaries, under the kind's transfer
(the SDR curve by gamma 2.4; PQ and HLG with SDR white at 203 cd/m², ITU-R BT.2408), matrix,
range and bit depth. Samples are computed here with NumPy and written as raw video, so no
ffmpeg colour conversion makes the render; ffmpeg only encodes them and writes the tags.

So an export of any kind, shown on an SDR BT.709 screen, must show the patch itself:
`patch_delta_e` measures that from the export's decoded samples.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporter.media.ffmpeg import QUIET
from exporter.media.ffmpeg_binary import bundled_ffmpeg

PATCHES = {
    "red": (0.85, 0.15, 0.12),
    "green": (0.2, 0.75, 0.25),
    "blue": (0.15, 0.2, 0.8),
    "skin": (0.87, 0.68, 0.57),
    "grey": (0.5, 0.5, 0.5),
}

XY = {
    "bt709": ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060)),
    "smpte170m": ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070)),
    "bt470bg": ((0.640, 0.330), (0.290, 0.600), (0.150, 0.060)),
    "bt2020": ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)),
}
KR_KB = {"bt709": (0.2126, 0.0722), "smpte170m": (0.299, 0.114), "bt470bg": (0.299, 0.114),
         "bt2020nc": (0.2627, 0.0593)}


@dataclass(frozen=True)
class Kind:
    primaries: str          # ffmpeg's names, as tagged (None: left untagged)
    matrix: str
    transfer: str           # 'sdr', 'pq', 'hlg'
    full_range: bool
    bits: int
    tagged: bool = True
    codec: str = "libx264"
    container: str = "mp4"

    @property
    def trc_tag(self) -> str:
        return {"sdr": {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470bg",
                        "bt2020": "bt2020-10"}[self.primaries],
                "pq": "smpte2084", "hlg": "arib-std-b67"}[self.transfer]


KINDS = {
    "bt709": Kind("bt709", "bt709", "sdr", False, 8),
    "bt709-full": Kind("bt709", "bt709", "sdr", True, 8),
    "bt601-525": Kind("smpte170m", "smpte170m", "sdr", False, 8),
    "bt601-625": Kind("bt470bg", "bt470bg", "sdr", False, 8),
    "bt2020-sdr-10bit": Kind("bt2020", "bt2020nc", "sdr", False, 10),
    "pq-10bit": Kind("bt2020", "bt2020nc", "pq", False, 10),
    "hlg-10bit": Kind("bt2020", "bt2020nc", "hlg", False, 10),
    "pq-12bit-ffv1": Kind("bt2020", "bt2020nc", "pq", False, 12, codec="ffv1",
                          container="mkv"),
    "untagged-hd": Kind("bt709", "bt709", "sdr", False, 8, tagged=False),
    "untagged-sd": Kind("smpte170m", "smpte170m", "sdr", False, 8, tagged=False),
}


def to_xyz(primaries: str) -> np.ndarray:
    xy = np.array(XY[primaries])
    columns = np.stack([xy[:, 0] / xy[:, 1], np.ones(3), (1 - xy[:, 0] - xy[:, 1]) / xy[:, 1]])
    white = np.array([0.3127 / 0.3290, 1.0, (1 - 0.3127 - 0.3290) / 0.3290])
    return columns * np.linalg.solve(columns, white)


def pq_signal(nits: np.ndarray) -> np.ndarray:
    m1, m2 = 0.1593017578125, 78.84375
    c1, c2, c3 = 0.8359375, 18.8515625, 18.6875
    y = (np.clip(nits, 0, 10000) / 10000) ** m1
    return ((c1 + c2 * y) / (1 + c3 * y)) ** m2


def hlg_signal(nits: np.ndarray) -> np.ndarray:
    """HLG: the inverse of a 1,000 cd/m² display's OOTF (gamma 1.2, on each of R, G, B as
    zimg applies it), then BT.2100's OETF."""
    scene = np.clip(nits / 1000, 0, 1) ** (1 / 1.2)
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    return np.where(scene <= 1 / 12, np.sqrt(3 * scene),
                    a * np.log(np.maximum(12 * scene - b, 1e-12)) + c)


def render_rgb(patch: tuple[float, float, float], kind: Kind) -> np.ndarray:
    """The kind's non-linear R'G'B' holding the patch's SDR light."""
    light = np.array(patch) ** 2.4                              # BT.1886
    light = np.linalg.solve(to_xyz(kind.primaries), to_xyz("bt709") @ light)
    if kind.transfer == "pq":
        return pq_signal(light * 203)
    if kind.transfer == "hlg":
        return hlg_signal(light * 203)
    return np.clip(light, 0, 1) ** (1 / 2.4)


def yuv_codes(rgb: np.ndarray, kind: Kind) -> np.ndarray:
    kr, kb = KR_KB[kind.matrix]
    y = kr * rgb[0] + (1 - kr - kb) * rgb[1] + kb * rgb[2]
    u, v = (rgb[2] - y) / (2 * (1 - kb)), (rgb[0] - y) / (2 * (1 - kr))
    scale = 2 ** (kind.bits - 8)
    if kind.full_range:
        top = 2 ** kind.bits - 1
        return np.array([y * top, u * top + 128 * scale, v * top + 128 * scale])
    return np.array([(16 + 219 * y) * scale, (128 + 224 * u) * scale, (128 + 224 * v) * scale])


def make_patch_render(path: Path | str, kind: Kind, patches: dict = PATCHES,
                      size: tuple[int, int] = (320, 240), fps: int = 25,
                      seconds_each: float = 0.4, ffmpeg: str | None = None) -> Path:
    """A render showing each patch full-frame for `seconds_each`, in the order given."""
    width, height = size
    frames_each = max(1, round(seconds_each * fps))
    dtype = np.uint8 if kind.bits == 8 else np.dtype("<u2")
    raw = bytearray()
    for patch in patches.values():
        codes = np.round(yuv_codes(render_rgb(patch, kind), kind)).astype(dtype)
        planes = [np.full((height, width), codes[0], dtype),
                  np.full((height // 2, width // 2), codes[1], dtype),
                  np.full((height // 2, width // 2), codes[2], dtype)]
        raw += b"".join(plane.tobytes() for plane in planes) * frames_each
    pix_fmt = "yuv420p" if kind.bits == 8 else f"yuv420p{kind.bits}le"
    tags = ["-colorspace", kind.matrix, "-color_primaries", kind.primaries,
            "-color_trc", kind.trc_tag, "-color_range", "pc" if kind.full_range else "tv"]
    codec = (["-c:v", "libx264", "-preset", "veryfast", "-crf", "12"]
             if kind.codec == "libx264" else ["-c:v", kind.codec])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg or bundled_ffmpeg(), *QUIET, "-f", "rawvideo", "-pix_fmt", pix_fmt,
                    "-s", f"{width}x{height}", "-r", str(fps), *(tags if kind.tagged else []),
                    "-i", "-", *codec, "-pix_fmt", pix_fmt,
                    *(tags if kind.tagged else []), "-f",
                    "matroska" if kind.container == "mkv" else "mp4", str(path)],
                   input=bytes(raw), check=True, capture_output=True)
    return path


def lab_of_bt709(rgb: np.ndarray) -> np.ndarray:
    """CIELAB of BT.709 R'G'B' as an SDR screen shows it (gamma 2.4, D65)."""
    xyz = to_xyz("bt709") @ (np.clip(rgb, 0, 1) ** 2.4)
    white = to_xyz("bt709").sum(axis=1)
    t = xyz / white
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def patch_delta_e(export: Path | str, patches: dict = PATCHES,
                  seconds_each: float = 0.4) -> dict[str, float]:
    """CIE76 ΔE of each patch in an export (8-bit BT.709 limited, as its tags must say),
    read from the middle of the picture in the middle of the patch's time."""
    import av
    wanted = {name: (index + 0.5) * seconds_each for index, name in enumerate(patches)}
    found = {}
    with av.open(str(export)) as container:
        for frame in container.decode(video=0):
            for name, moment in wanted.items():
                if name not in found and frame.time >= moment:
                    planes = frame.reformat(format="yuv444p16le").to_ndarray() / 256
                    h, w = planes.shape[:2]
                    middle = planes[h * 2 // 5:h * 3 // 5, w * 2 // 5:w * 3 // 5]
                    found[name] = middle.reshape(-1, 3).mean(axis=0)
    deltas = {}
    for name, (y, u, v) in found.items():
        y, u, v = (y - 16) / 219, (u - 128) / 224, (v - 128) / 224
        rgb = np.array([y + 1.5748 * v, y - 0.1873 * u - 0.4681 * v, y + 1.8556 * u])
        deltas[name] = float(np.linalg.norm(lab_of_bt709(rgb) - lab_of_bt709(
            np.array(patches[name]))))
    return deltas
