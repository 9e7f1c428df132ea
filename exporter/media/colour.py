"""What colour a render is, and the filters that make it SDR BT.709. Pure.

Every export is SDR BT.709, limited range, 8-bit 4:2:0, with all four colour tags written
(primaries, transfer, matrix, range): what YouTube's delivery specs name for SDR and what
every phone shows an untagged or SDR video as. A render is read by its own tags; a tag it
lacks follows one rule (`source_colour`), the one video players use:

- the matrix and primaries, when neither is tagged: BT.709 for a frame at least 1280 wide
  or over 576 lines tall, else BT.601 (625-line primaries at 576 lines, else 525-line);
  when one is tagged, the other is of the same family;
- the transfer, when untagged: the SDR curve (BT.709's, which BT.601 and BT.2020 share);
- the range, when untagged: full for the JPEG pixel formats (yuvj*), else limited.

HDR (PQ, SMPTE ST 2084; HLG, ARIB STD-B67) is tone-mapped to SDR (`hdr_to_sdr`), or
refused when the platform's `colour.hdr` says `reject`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter.model.errors import SourceError

if TYPE_CHECKING:
    from exporter.media.probe import Probe

BT709, BT601_525, BT601_625, BT2020 = "bt709", "bt601-525", "bt601-625", "bt2020"
SDR, PQ, HLG = "sdr", "pq", "hlg"
LIMITED, FULL = "limited", "full"

# ffmpeg's tag names -> the families above.
PRIMARIES_FAMILY = {"bt709": BT709, "smpte170m": BT601_525, "smpte240m": BT601_525,
                    "bt470bg": BT601_625, "bt2020": BT2020}
MATRIX_FAMILY = {"bt709": BT709, "smpte170m": BT601_525, "smpte240m": BT601_525,
                 "bt470bg": BT601_625, "fcc": BT601_525, "bt2020nc": BT2020}
# Transfers that are the SDR camera curve (BT.709's, which BT.601 and BT.2020 share) or
# close enough to be shown as it (sRGB, the old 2.2/2.8 gammas).
SDR_TRANSFERS = {"bt709", "smpte170m", "bt2020-10", "bt2020-12", "bt470m", "bt470bg",
                 "smpte240m", "iec61966-2-1", "iec61966-2-4", "bt1361e"}
HDR_TRANSFERS = {"smpte2084": PQ, "arib-std-b67": HLG}

# zscale's names for the families.
ZSCALE_PRIMARIES = {BT709: "709", BT601_525: "170m", BT601_625: "bt470bg", BT2020: "2020"}
ZSCALE_MATRIX = {BT709: "709", BT601_525: "170m", BT601_625: "470bg", BT2020: "2020_ncl"}
ZSCALE_TRANSFER = {SDR: "709", PQ: "smpte2084", HLG: "arib-std-b67"}

# HDR to SDR. SDR white is 203 cd/m² in an HDR signal (ITU-R BT.2408), so linear light is
# taken with 1.0 = 203 cd/m²: content within SDR levels keeps its SDR value. zimg (zscale)
# takes PQ by SMPTE ST 2084 and HLG by BT.2100's inverse OETF with the OOTF of a 1,000 cd/m²
# display applied to each of R, G and B (BT.2100 applies it to luminance: the two differ
# in saturation only; the colour check reads HLG as zimg does, docs/quality.md). Light is
# written back with BT.1886's inverse (what an SDR screen undoes), not the camera curve. Highlights
# above it are compressed by Möbius (a curve that is the identity up to its knee, then
# rolls off smoothly to the peak: highlights keep their gradation, nothing is clipped
# flat); the knee at 0.8 keeps skin, grey and saturated colours at SDR levels within
# ΔE 5 (docs/quality.md has the measurements). The peak is 1,000 cd/m², the mastering
# peak of most PQ content and HLG's reference display.
REFERENCE_WHITE_NITS = 203
HDR_PEAK_NITS = 1000
TONEMAP_KNEE = 0.8
TONEMAP = "mobius"

# The export's colour, in ffmpeg's option names: written by x264 in the H.264 VUI and by
# the MP4 muxer in the `colr` box.
OUTPUT_TAGS = {"color_primaries": "bt709", "color_trc": "bt709", "colorspace": "bt709",
               "color_range": "tv"}


@dataclass(frozen=True)
class Colour:
    """How a picture's samples are to be read."""

    primaries: str      # BT709, BT601_525, BT601_625, BT2020
    matrix: str         # the same families, for the YUV matrix
    transfer: str       # SDR, PQ or HLG
    range: str          # LIMITED or FULL
    bits: int           # bits per sample
    tagged: bool        # False: at least one of the four was taken by the rule

    @property
    def hdr(self) -> bool:
        return self.transfer != SDR

    @property
    def is_output(self) -> bool:
        """True for the export's own colour: SDR BT.709, limited range."""
        return (self.primaries, self.matrix, self.transfer, self.range) == (
            BT709, BT709, SDR, LIMITED)

    def label(self) -> str:
        """'bt709/sdr', 'bt2020/pq', 'bt601-525/sdr/full' (range shown when full),
        with '(untagged)' when the rule supplied a tag."""
        text = f"{self.primaries}/{self.transfer}" + ("/full" if self.range == FULL else "")
        if self.matrix != self.primaries:
            text += f" (matrix {self.matrix})"
        return text + ("" if self.tagged else " (untagged)")


def bits_of(pix_fmt: str | None) -> int:
    """Bits per sample of a pixel format name ('yuv420p10le' -> 10; 8 when it says none)."""
    name = (pix_fmt or "").removesuffix("le").removesuffix("be")
    digits = ""
    for char in reversed(name):
        if not char.isdigit():
            break
        digits = char + digits
    return int(digits) if digits and "p" in name and int(digits) in (9, 10, 12, 14, 16) else 8


def size_family(width: int, height: int) -> str:
    """The family players assume for an untagged picture of this stored size."""
    if width >= 1280 or height > 576:
        return BT709
    return BT601_625 if height == 576 else BT601_525


def source_colour(probe: Probe) -> Colour:
    """The render's colour: its tags, each missing one by the rule in this module's
    docstring. SourceError for a transfer no screen shows as SDR or HDR video (linear, log)."""
    trc = probe.color_trc
    if trc is not None and trc not in SDR_TRANSFERS and trc not in HDR_TRANSFERS:
        raise SourceError(f"the render's transfer characteristic is {trc}: only SDR "
                          "(BT.709, BT.601, BT.2020), PQ and HLG renders are exported")
    transfer = HDR_TRANSFERS.get(trc or "", SDR)
    primaries = PRIMARIES_FAMILY.get(probe.color_primaries or "")
    matrix = MATRIX_FAMILY.get(probe.colorspace or "")
    if primaries is None and matrix is None:
        # HDR is BT.2020 whatever else is missing; SDR goes by the size, as players do
        primaries = matrix = BT2020 if transfer != SDR else size_family(probe.width,
                                                                         probe.height)
    primaries, matrix = primaries or matrix, matrix or primaries
    if probe.color_range in ("tv", "pc"):
        colour_range = FULL if probe.color_range == "pc" else LIMITED
    else:
        colour_range = FULL if (probe.pix_fmt or "").startswith("yuvj") else LIMITED
    tagged = None not in (probe.color_primaries, probe.color_trc, probe.colorspace,
                          probe.color_range)
    return Colour(primaries=primaries, matrix=matrix, transfer=transfer, range=colour_range,
                  bits=bits_of(probe.pix_fmt), tagged=tagged)


def input_options(colour: Colour) -> str:
    """zscale's options reading a picture as `colour` says (overriding its frames' tags)."""
    return (f"pin={ZSCALE_PRIMARIES[colour.primaries]}:min={ZSCALE_MATRIX[colour.matrix]}"
            f":tin={ZSCALE_TRANSFER[colour.transfer]}:rin={colour.range}")


def to_bt709(colour: Colour) -> str:
    """The filters (comma-separated) turning pictures of `colour` into SDR BT.709, limited
    range; '' when they already are. The frames are then tagged BT.709 (`tag_bt709`)."""
    if colour.is_output:
        return ""
    if colour.hdr:
        return hdr_to_sdr(colour)
    if colour.primaries == BT709:       # the same gamut: only matrix, range, depth change
        return (f"zscale={input_options(colour)}:p=709:m=709:t=709:r=limited,"
                f"{converted_format(colour)}")
    return (f"zscale={input_options(colour)}:p=709:t=709,{CLIP_RGB},"
            f"zscale=m=709:r=limited,{converted_format(colour)}")


# Colours of a wider gamut than BT.709's come out of the primaries' conversion with
# components under 0 or over 1. zimg carries them into YUV, where the codes' limits cut
# them in another space (another hue: ΔE 5 to 17 on a saturated BT.2020 pattern, 17 with
# ffmpeg 5.1's zimg); 16-bit integer RGB clips each component, as a BT.709 screen does.
CLIP_RGB = "format=gbrp16le"


def converted_format(colour: Colour) -> str:
    """The pixel format zscale writes (named, or it keeps a JPEG yuvj format whose samples
    the next conversion reads as full range again): 8 bits stay 8, more keep 10."""
    return "format=yuv420p" if colour.bits <= 8 else "format=yuv420p10le"


def hdr_to_sdr(colour: Colour) -> str:
    """PQ or HLG to SDR BT.709: linear light (1.0 = SDR white), BT.709 primaries, Möbius
    tone-mapping of what is above SDR white, the BT.709 curve and matrix."""
    peak = HDR_PEAK_NITS / REFERENCE_WHITE_NITS
    return (f"zscale={input_options(colour)}:t=linear:npl={REFERENCE_WHITE_NITS},"
            "format=gbrpf32le,zscale=p=709,"
            f"tonemap={TONEMAP}:param={TONEMAP_KNEE}:desat=0:peak={peak:.4f},"
            f"zscale=t=709,{CLIP_RGB},zscale=m=709:r=limited,{converted_format(colour)}")


def tag_bt709() -> str:
    """The filter tagging frames SDR BT.709 limited: ffmpeg 7 and newer write the frames'
    tags, not the encoder options, into the stream (both are given)."""
    return ("setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709")


def output_tag_args() -> list[str]:
    """Encoder options writing the four tags (the H.264 VUI and the MP4 `colr` box)."""
    return [arg for name, value in OUTPUT_TAGS.items() for arg in (f"-{name}", value)]


# A remux rewrites the tags in the H.264 parameter sets without touching a picture.
REMUX_TAGS_BSF = ("h264_metadata=colour_primaries=1:transfer_characteristics=1"
                  ":matrix_coefficients=1:video_full_range_flag=0")


def conversion_record(colour: Colour, mode: str) -> dict[str, str]:
    """The sidecar's `colour`: what the render was, what was done, what the export is."""
    if mode == "remux":
        done = "none: the render's pictures copied, tagged BT.709 (it is SDR BT.709)"
    elif colour.is_output:
        done = "none: the render is SDR BT.709, limited range"
    elif colour.hdr:
        done = (f"tone-mapped to SDR ({TONEMAP}, knee {TONEMAP_KNEE}, peak "
                f"{HDR_PEAK_NITS} cd/m², SDR white {REFERENCE_WHITE_NITS} cd/m²), BT.2020 to "
                "BT.709 primaries (zscale)")
    else:
        done = (f"converted to BT.709 (primaries {colour.primaries}, matrix {colour.matrix}, "
                f"{colour.range} range, {colour.bits} bits; zscale)")
    return {"source": colour.label(), "converted": done,
            "output": "bt709/sdr, limited range, 8-bit 4:2:0"}


def colour_problems(colour: Colour, hdr_policy: str) -> list[str]:
    """Why a render of `colour` is refused by a platform's `colour.hdr` (empty: it is not)."""
    if colour.hdr and hdr_policy == "reject":
        return [f"the render is HDR ({colour.label()}); the platform's colour.hdr is "
                "reject (tonemap makes an SDR export)"]
    return []


def output_tag_problems(probe: Probe) -> list[str]:
    """Which of the export's four colour tags are not SDR BT.709 limited."""
    found = {"color_primaries": probe.color_primaries, "color_trc": probe.color_trc,
             "colorspace": probe.colorspace, "color_range": probe.color_range}
    return [f"{name} is {found[name] or 'untagged'}, expected {wanted}"
            for name, wanted in OUTPUT_TAGS.items() if found[name] != wanted]
