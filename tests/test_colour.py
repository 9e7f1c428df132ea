"""Colour right, and checked against the render as a viewer sees it (issue 33).

Every export is SDR BT.709, limited range, 8-bit 4:2:0, all four tags written; a render of
any kind (BT.601 525 and 625, BT.709, BT.2020 SDR, full or limited range, 8 to 12 bits,
untagged, PQ and HLG) shows on an SDR screen as the render does. Patch renders are made by
tests/colour_support.py from computed samples (no ffmpeg colour conversion), exported by
`doit` with the ffmpeg under test, and read back two ways the tool does not use: MediaInfo
for the tags, PyAV + this suite's own arithmetic for each patch's colour (CIE76 ΔE).

The colour check itself must refuse what the content score cannot see: an ffmpeg wrapper
damages only the pictures x264 is given (negated, half negated, every frame the score does
not sample negated, a black render made grey), and none of those exports is kept.
"""

import json
import sys
from dataclasses import replace

import av
import numpy as np
import pytest
from colour_support import KINDS, PATCHES, make_patch_render, patch_delta_e
from conftest import (
    TEST_FFMPEG,
    doit_env,
    executable,
    exported_videos,
    leftovers,
    load_yaml,
    made_once,
    probe_of,
    read_json,
    run_doit,
    small_platforms,
)
from pymediainfo import MediaInfo

from exporter.media.colour import (
    BT601_525,
    BT601_625,
    BT709,
    BT2020,
    FULL,
    HLG,
    LIMITED,
    PQ,
    source_colour,
    to_bt709,
)
from exporter.media.colour_check import Glimpses, check_colour, region
from exporter.media.ffmpeg import run_ffmpeg
from exporter.media.plan import build_encodes, build_plan, remux_problems
from exporter.media.probe import probe
from exporter.media.quality import BROKEN, VMAF, gate_problems, score_output
from exporter.model.errors import SourceError
from exporter.model.spec import load_specs

SECONDS_EACH = 0.4
PLATFORMS = ("youtube", "tiktok")
# The most a patch may be off on an SDR screen, measured from the export (CIE76 ΔE; 2.3 is
# a just-noticeable difference). Measured on both ffmpegs: 0.1 to 1.1 (docs/quality.md).
PATCH_TOLERANCE = 3.0
SIZES = {"untagged-hd": (360, 640)}     # the rule reads an untagged 320x240 as BT.601
UNTAGGED = dict(color_primaries=None, color_trc=None, colorspace=None, color_range=None)


def untagged(**changes):
    """A probe of a render without colour tags, with `changes`."""
    return probe_of(**{**UNTAGGED, **changes})


# ---- the rule for what a render is (pure) ----------------------------------------------

def test_an_untagged_render_is_read_as_players_read_it():
    assert source_colour(untagged(width=1920, height=1080)).primaries == BT709
    assert source_colour(untagged(width=360, height=640)).matrix == BT709
    assert source_colour(untagged(width=640, height=480)).primaries == BT601_525
    assert source_colour(untagged(width=720, height=576)).primaries == BT601_625
    assert source_colour(untagged(pix_fmt="yuvj420p")).range == FULL
    assert source_colour(untagged()).range == LIMITED
    plain = source_colour(untagged())
    assert plain.transfer == "sdr" and not plain.tagged and plain.is_output


def test_a_render_is_read_by_its_tags_and_a_missing_one_by_the_others():
    pq = source_colour(untagged(color_trc="smpte2084", pix_fmt="yuv420p10le"))
    assert (pq.primaries, pq.transfer, pq.bits) == (BT2020, PQ, 10), "HDR is BT.2020"
    hlg = source_colour(untagged(color_trc="arib-std-b67", colorspace="bt2020nc"))
    assert (hlg.primaries, hlg.matrix, hlg.transfer) == (BT2020, BT2020, HLG)
    sd = source_colour(untagged(width=1920, height=1080, colorspace="smpte170m"))
    assert (sd.primaries, sd.matrix) == (BT601_525, BT601_525), "the tag beats the size"
    full = source_colour(untagged(color_range="pc", color_primaries="bt709",
                                  color_trc="bt709", colorspace="bt709"))
    assert full.range == FULL and full.tagged and not full.is_output
    with pytest.raises(SourceError, match="transfer characteristic is linear"):
        source_colour(untagged(color_trc="linear"))


def test_only_sdr_bt709_is_left_alone_and_hdr_is_tone_mapped():
    assert to_bt709(source_colour(untagged())) == ""
    bt601 = to_bt709(source_colour(untagged(width=640, height=480)))
    # to BT.709 RGB, clipped there (as a screen clips), then to limited-range YUV
    assert bt601.startswith("zscale=pin=170m:min=170m:tin=709:rin=limited:p=709:t=709,"
                            "format=gbrp16le,zscale=m=709:r=limited,format=yuv420p"), bt601
    full = to_bt709(source_colour(untagged(pix_fmt="yuvj420p", width=1920, height=1080)))
    assert full == ("zscale=pin=709:min=709:tin=709:rin=full:p=709:m=709:t=709:r=limited,"
                    "format=yuv420p"), "one gamut: no RGB step"
    hdr = to_bt709(source_colour(untagged(color_trc="smpte2084")))
    assert "tonemap=mobius" in hdr and "npl=203" in hdr and "tin=smpte2084" in hdr


def shipped(name):
    return load_specs("platforms")[name]


def test_a_conforming_render_is_remuxed_only_when_it_is_sdr_bt709():
    spec = shipped("youtube")
    conforming = dict(keyframes=3, keyframe_intervals=(60,), first_keyframe_frame=0,
                      closed_gop=True, video_start_s=0.0, audio_start_s=0.0,
                      audio_profile="LC", edit_lists=(), fps=30.0)
    assert remux_problems(probe_of(**conforming), spec) == []
    plan = build_plan("ffmpeg", "in.mp4", probe_of(**conforming), spec, "out.mp4")
    assert plan.mode == "remux"
    assert "h264_metadata=colour_primaries=1:transfer_characteristics=1" \
           ":matrix_coefficients=1:video_full_range_flag=0" in plan.argv, plan.argv
    for tagged in (dict(colorspace="smpte170m"), dict(color_trc="smpte2084"),
                   dict(color_range="pc")):
        problems = remux_problems(probe_of(**conforming, **tagged), spec)
        assert any(problem.startswith("colour:") for problem in problems), tagged
        encode = build_plan("ffmpeg", "in.mp4", probe_of(**conforming, **tagged), spec,
                            "out.mp4")
        assert encode.mode == "encode"
        assert "-color_primaries" in encode.argv and "setparams=range=tv" in " ".join(
            encode.argv)


def test_colour_hdr_reject_refuses_an_hdr_render_in_one_line():
    spec = replace(shipped("youtube"), colour={"hdr": "reject"})
    with pytest.raises(SourceError, match=r"the render is HDR \(bt2020/pq"):
        build_plan("ffmpeg", "in.mp4", untagged(color_trc="smpte2084"), spec, "out.mp4")


def test_the_compared_region_is_where_the_render_is_shown():
    assert region("pad", (1920, 1080), (1080, 1920)) == (
        (0.0, 0.0, 1.0, 1.0), (0.0, pytest.approx(0.341, abs=1e-3), 1.0,
                               pytest.approx(0.316, abs=1e-3)))
    source, output = region("crop", (1920, 1080), (1080, 1920))
    assert output == (0.0, 0.0, 1.0, 1.0)
    assert source[2] == pytest.approx(1080 * 1080 / 1920 / 1920) and source[3] == 1.0


# ---- the gate (pure) -----------------------------------------------------------------------

SCORE = {"metric": VMAF, "mean": 95.0, "median": 95.5, "p5": 92.0, "worst": 90.0,
         "colour": {"metric": "colour", "mean": 0.8, "worst": 2.1, "worst_frame": 3,
                    "frames": 30, "source": "bt709/sdr"}}


def test_the_colour_ceilings_and_the_broken_encode_floor_gate_the_score():
    floors = shipped("youtube").quality
    assert gate_problems(SCORE, floors) == []
    shifted = {**SCORE, "colour": {**SCORE["colour"], "mean": 30.0, "worst": 55.0}}
    problems = gate_problems(shifted, floors)
    assert len(problems) == 1 and "ΔE 30 mean, 55 worst (frame 3)" in problems[0]
    negated = {**SCORE, "mean": 0.4, "median": 0.0, "p5": 0.0, "worst": 0.0}
    problems = gate_problems(negated, floors)
    assert any("a broken encode" in problem for problem in problems), problems
    assert BROKEN[VMAF] > 0


# ---- patch renders of every kind, exported by doit -------------------------------------

def independent_tags(path):
    track = MediaInfo.parse(str(path)).video_tracks[0]
    return (track.color_primaries, track.transfer_characteristics, track.matrix_coefficients,
            track.color_range, track.bit_depth, track.chroma_subsampling)


@pytest.fixture(scope="module")
def patch_library(tmp_path_factory):
    """Every kind of render as a title, exported once for YouTube and TikTok."""
    def make(root):
        renders = root / "renders"
        for name, kind in KINDS.items():
            directory = renders / "patches" / "all" / name
            make_patch_render(directory / "final.mp4", kind, size=SIZES.get(name, (320, 240)),
                              seconds_each=SECONDS_EACH)
            (directory / "metadata.json").write_text(
                json.dumps({"title": f"Patches {name}", "hashtags": ["colour"]}),
                encoding="utf-8")
        platforms = small_platforms(root / "platforms", names=PLATFORMS)
        return run_doit(f"renders={renders}", f"exports={root / 'exports'}",
                        f"platforms_dir={platforms}", "-n", "2")
    root, result = made_once(tmp_path_factory, "colour", make)
    return root / "exports", result


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_kind_of_render_exports_as_sdr_bt709_showing_its_colours(
        patch_library, kind, platform):
    exports, result = patch_library
    assert result.returncode == 0, result.stderr
    video = exports / "patches/all" / kind / f"{platform}.mp4"
    assert independent_tags(video) == ("BT.709", "BT.709", "BT.709", "Limited", 8, "4:2:0")
    deltas = patch_delta_e(video, seconds_each=SECONDS_EACH)
    assert set(deltas) == set(PATCHES)
    assert max(deltas.values()) <= PATCH_TOLERANCE, deltas
    sidecar = read_json(exports / "patches/all" / kind / f"{platform}.export.json")
    colour = sidecar["encode"]["colour"]
    if KINDS[kind].transfer != "sdr":
        assert colour["source"].startswith(f"bt2020/{KINDS[kind].transfer}")
        assert "tone-mapped" in colour["converted"]
    checked = sidecar["encode"]["quality"]["colour"]
    assert checked["delta_e"] == "CIE76" and checked["frames"] == 60
    assert checked["worst"] <= PATCH_TOLERANCE, checked
    row = next(row for row in read_json(exports / "registry.json")["exports"]
               if row["title_id"] == kind and row["platform"] == platform)
    assert row["quality"]["colour"] == checked


@pytest.mark.slow
def test_hdr_highlights_are_compressed_not_clipped(tmp_path):
    """A PQ render with patches from SDR white up to 1,000 cd/m² exports with each brighter
    than the last and none above SDR white: rolled off, not cut flat."""
    steps = {"white": (1.0,) * 3, "400": ((400 / 203) ** (1 / 2.4),) * 3,
             "700": ((700 / 203) ** (1 / 2.4),) * 3, "1000": ((1000 / 203) ** (1 / 2.4),) * 3}
    render = make_patch_render(tmp_path / "renders/a/b/hdr/final.mp4", KINDS["pq-10bit"],
                               patches=steps, seconds_each=SECONDS_EACH)
    (render.parent / "metadata.json").write_text('{"title": "HDR", "hashtags": ["hdr"]}')
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    run_doit(f"renders={tmp_path / 'renders'}", f"exports={tmp_path / 'exports'}",
             f"platforms_dir={platforms}", check=0)
    lumas = []
    with av.open(str(tmp_path / "exports/a/b/hdr/youtube.mp4")) as container:
        for frame in container.decode(video=0):
            index = int(frame.time / SECONDS_EACH + 1e-6)
            if index < len(lumas):
                continue
            if frame.time >= (index + 0.5) * SECONDS_EACH:
                plane = frame.reformat(format="yuv444p16le").to_ndarray()[..., 0] / 256
                lumas.append(float(plane[200:280, 100:170].mean()))
    assert len(lumas) == 4, lumas
    # measured 226.0, 233.0, 234.5, 235.0 on both ffmpegs: white at 90 % of SDR light (the
    # knee), everything up to 1,000 cd/m² in the 10 % above it, each level still its own
    assert all(later > earlier + 0.25 for earlier, later in zip(lumas, lumas[1:])), lumas
    assert lumas[-1] <= 235.5, "within SDR levels"
    assert lumas[0] > 16 + 0.9 * 219, "SDR white stays near white"


@pytest.mark.slow
def test_colour_hdr_reject_fails_the_hdr_title_alone(tmp_path):
    renders = tmp_path / "renders"
    for name in ("pq-10bit", "bt709"):
        make_patch_render(renders / "s/a" / name / "final.mp4", KINDS[name],
                          seconds_each=0.2)
        (renders / "s/a" / name / "metadata.json").write_text(
            '{"title": "Patches", "hashtags": ["x"]}')
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",),
                                youtube={"colour.hdr": "reject"})
    result = run_doit(f"renders={renders}", f"exports={tmp_path / 'exports'}",
                      f"platforms_dir={platforms}")
    assert result.returncode != 0
    failures = [line for line in result.stderr.splitlines() if "youtube:pq-10bit" in line]
    assert len(failures) == 1 and "(s/a/pq-10bit)" in failures[0], result.stderr
    assert "the render is HDR (bt2020/pq)" in failures[0]
    assert "colour.hdr is reject" in failures[0]
    assert [path.name for path in exported_videos(tmp_path / "exports")] == ["youtube.mp4"]


# ---- the glimpses: the same reading, without decoding either file again ----------------

@pytest.mark.parametrize("kind", ["bt709-full", "bt601-525", "pq-10bit", "pq-12bit-ffv1"])
def test_the_glimpses_read_what_decoding_both_files_reads(tmp_path, kind):
    """The colour check from the pictures the encode and the score's pass wrote small (the
    pipeline's way) finds what it finds decoding the render and the export itself: the
    codes are averaged, never converted, whatever the render's range and depth."""
    spec = load_specs(small_platforms(tmp_path / "platforms", ("youtube",)))["youtube"]
    render = make_patch_render(tmp_path / "render.mp4", KINDS[kind], ffmpeg=TEST_FFMPEG)
    render_probe = probe(render)
    output, glimpses = tmp_path / "export.mp4", Glimpses(tmp_path)
    plan = build_encodes(TEST_FFMPEG, render, render_probe, [(spec, output)], "superfast",
                         samples=[tmp_path / "samples.mkv"], glimpse=glimpses.render_path())[0]
    run_ffmpeg(plan.argv)
    score_output(TEST_FFMPEG, output, render, spec, plan, glimpses=glimpses)
    assert glimpses.render and glimpses.of(output)
    colour = source_colour(render_probe)
    fps = spec.video["fps"]
    read = check_colour(output, render, colour, render_probe, spec.fit, fps, glimpses)
    decoded = check_colour(output, render, colour, render_probe, spec.fit, fps)
    assert read["frames"] == decoded["frames"] == round(len(PATCHES) * SECONDS_EACH * fps)
    assert read["worst"] <= PATCH_TOLERANCE, read
    assert abs(read["mean"] - decoded["mean"]) <= 0.3, (read, decoded)
    assert abs(read["worst"] - decoded["worst"]) <= 0.5, (read, decoded)


# ---- what the content score cannot see: the colour check refuses it --------------------

# An ffmpeg that damages what x264 is given, after the encode's reference frames are split
# off (so the score against them can be fooled): FILTER is inserted before x264's input.
ATTACKING_FFMPEG = """#!{python}
import subprocess, sys
args = sys.argv[1:]
if "libx264" in args:
    graph = args.index("-filter_complex") + 1
    args[graph] = args[graph].replace("[e0][r0]", "[d0][r0];[d0]{filter}[e0]", 1)
sys.exit(subprocess.call([{real!r}, *args]))
"""
ATTACKS = {
    "negated": ("negate", "testsrc2"),
    "half-negated": ("negate=enable='mod(n\\\\,2)'", "testsrc2"),
    "unsampled-negated": ("negate=enable='mod(n\\\\,19)'", "testsrc2"),
    "black-made-grey": ("lutyuv=y=128", "color=c=black"),
}


@pytest.mark.slow
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_picture_chain_damaged_before_x264_is_not_kept(library, tmp_path, clip_cache,
                                                           attack):
    damage, pattern = ATTACKS[attack]
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    directory = library.add("women", "18-23", "clip", shape="silent")
    clip = clip_cache(f"attack-{pattern}", width=360, height=640, seconds=2, fps=30,
                      audio=False, pattern=pattern)
    (directory / "final.mp4").write_bytes(clip.read_bytes())
    wrapper = executable(tmp_path / "ffmpeg-attacking", ATTACKING_FFMPEG.format(
        python=sys.executable, real=TEST_FFMPEG, filter=damage))
    result = run_doit(*library.args(f"platforms_dir={platforms}", "attempts=1"),
                      env=doit_env(REELEXPORT_FFMPEG=str(wrapper)))
    assert result.returncode != 0, result.stdout
    failures = [line for line in result.stderr.splitlines() if "youtube:clip" in line]
    assert len(failures) == 1, result.stderr
    assert "the picture is not the render's" in failures[0] or "broken encode" in failures[0]
    assert exported_videos(library.exports) == [], "a damaged picture is never kept"
    assert not leftovers(library.exports)


def test_the_shipped_platforms_gate_colour():
    for name in ("youtube", "tiktok", "instagram", "facebook"):
        document = load_yaml(f"platforms/{name}.yaml")
        assert document["quality"]["colour"]["mean"] > 0, name
        assert document.get("colour", {}).get("hdr", "tonemap") == "tonemap"
        assert np.isfinite(document["quality"]["colour"]["worst"])


def test_status_and_the_gallery_show_the_colour_check_beside_the_score():
    from exporter.report.gallery import quality_fact
    from exporter.report.status import colour_lines, highest_colour
    facts = dict(quality_fact(SCORE))
    assert facts["VMAF"] == "95 mean, 92 p5, 90 worst"
    assert facts["colour ΔE"] == "0.8 mean, 2.1 worst (from bt709/sdr)"
    rows = [{"status": "exported", "platform": "youtube", "title_id": title, "segment": "s",
             "age": "a", "quality": {**SCORE, "colour": {**SCORE["colour"], "mean": mean}}}
            for title, mean in (("a", 0.5), ("b", 2.5), ("c", 1.5), ("d", 0.1))]
    rows.append({"status": "failed", "platform": "youtube", "title_id": "e", "segment": "s",
                 "age": "a", "quality": {**SCORE, "colour": {**SCORE["colour"], "mean": 9}}})
    (line,) = colour_lines(highest_colour(rows))
    assert line == ("highest colour ΔE (mean/worst): youtube:b (s/a/b) 2.5/2.1, "
                    "youtube:c (s/a/c) 1.5/2.1, youtube:a (s/a/a) 0.5/2.1")


# ---- the colour check's arithmetic (pure), against published values ---------------------

def test_the_check_reads_light_as_the_standards_write_it():
    from colour_support import pq_signal

    from exporter.media.colour_check import (
        OUTPUT_COLOUR,
        hlg_to_nits,
        lab,
        pq_to_nits,
        rgb_to_xyz,
        yuv_to_rgb,
    )
    # BT.709's white is D65 (X 0.9505, Z 1.089); its luminance row is the matrix's Kr Kg Kb
    assert rgb_to_xyz(BT709).sum(axis=1) == pytest.approx([0.9505, 1.0, 1.089], abs=1e-3)
    assert rgb_to_xyz(BT709)[1] == pytest.approx([0.2126, 0.7152, 0.0722], abs=1e-4)
    # PQ: 0.5 is 92 cd/m², 1.0 is 10,000 (ST 2084); the tests' encoder is its inverse
    assert pq_to_nits(np.array(0.5)) == pytest.approx(92.25, abs=0.1)
    assert pq_to_nits(np.array(1.0)) == pytest.approx(10000)
    assert pq_to_nits(pq_signal(np.array(203.0))) == pytest.approx(203, rel=1e-6)
    # HLG: 75 % is reference white, 203 cd/m² on a 1,000 cd/m² display (BT.2408)
    assert hlg_to_nits(np.array([0.75] * 3)) == pytest.approx([203] * 3, rel=0.01)
    # limited-range BT.709 codes: black, white, and a 75 % red bar
    black, white = yuv_to_rgb(np.array([[16.0, 128, 128], [235, 128, 128]]), OUTPUT_COLOUR)
    assert black == pytest.approx([0, 0, 0]) and white == pytest.approx([1, 1, 1])
    red = yuv_to_rgb(np.array([51.0, 109, 212]), OUTPUT_COLOUR)   # BT.709 75 % red
    assert red == pytest.approx([0.75, 0, 0], abs=0.01)
    assert lab(np.array([1.0, 1, 1]), OUTPUT_COLOUR) == pytest.approx([100, 0, 0], abs=1e-3)
