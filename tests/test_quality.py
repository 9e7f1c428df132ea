"""Verified by content (issue 23): every export's video proven x264's packets, some of its
GOPs decoded and scored against its source (issue 39); a remux's packets proven the
source's; the platform's floors gate the score.

Real doit, real ffmpeg (the one under test), tiny clips at the small platforms' 270x480.
The independent check is PyAV decoding the kept files (not the tool's ffmpeg pass).
"""

import json
import shutil
import subprocess
import sys
from dataclasses import replace

import av
import pytest
from conftest import (
    TEST_FFMPEG,
    doit_env,
    executable,
    exported_videos,
    leftovers,
    media_facts,
    read_json,
    run_doit,
    small_platforms,
)

from exporter.media.ffmpeg import QUIET, run_ffmpeg
from exporter.media.ffmpeg_binary import bundled_ffmpeg
from exporter.media.colour import source_colour
from exporter.media.colour_check import Glimpses, check_colour
from exporter.media.plan import build_encodes, checked_sample, checked_samples
from exporter.media.probe import probe
from exporter.media.quality import gate_problems, metric_of, score_output
from exporter.model.errors import DamagedOutput
from exporter.media.samples import make_clip
from exporter.model.spec import load_specs

METRIC = metric_of(TEST_FFMPEG)

# An ffmpeg that does its work, then overwrites 64 KiB in the middle of every MP4 it wrote
# (two frames of a 1 s 270x480 clip at 8 Mb/s: most of each is filler, which no decoder reads):
# the boxes, sizes and packet table stay intact, so every probe-based check still passes.
# The MP4 is named after `-f mp4`, or in a tee muxer's list after `-f tee` ("[f=mp4:...]path|
# [f=nut...]packets", '\\' escaping): the packets x264 wrote beside it are left intact.
DAMAGING_FFMPEG = """#!{python}
import os, random, re, subprocess, sys
args = sys.argv[1:]
code = subprocess.call([{real!r}, *args])

def mp4s(muxer, target):
    if muxer == "mp4":
        return [target]
    if muxer != "tee":
        return []
    slaves = re.split(r"(?<!\\\\)\\|", target)
    return [re.sub(r"\\\\(.)", r"\\1", slave.split("]", 1)[1])
            for slave in slaves if slave.startswith("[f=mp4")]

if code == 0:
    for index, arg in enumerate(args[:-2]):
        for path in mp4s(args[index + 1], args[index + 2]) if arg == "-f" else []:
            if os.path.exists(path):
                with open(path, "r+b") as handle:
                    handle.seek(os.path.getsize(path) // 2)
                    handle.write(random.Random(23).randbytes(65536))
sys.exit(code)
"""


def decoded_frames(path):
    """Frames PyAV decodes from a file's video (raises on a broken stream)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def sidecar(library, title, platform):
    return read_json(library.exports / f"women/18-23/{title}/{platform}.export.json")


def test_an_output_damaged_after_its_encode_is_refused_and_a_clean_one_passes(
        library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    library.add("women", "18-23", "clip", shape="silent")   # no loudness pass: one encode
    wrapper = executable(tmp_path / "ffmpeg-damaging",
                         DAMAGING_FFMPEG.format(python=sys.executable, real=TEST_FFMPEG))

    damaged = run_doit(*library.args(f"platforms_dir={platforms}", "attempts=2", "backoff=0"),
                       env=doit_env(REELEXPORT_FFMPEG=str(wrapper)), check=2)
    failures = [line for line in damaged.stderr.splitlines() if "youtube:clip" in line]
    assert len(failures) == 1, damaged.stderr
    assert "(women/18-23/clip)" in failures[0]
    assert "its video packets are not the ones x264 wrote" in failures[0], failures[0]
    assert "after 2 attempts" in failures[0], "a damaged output is encoded again"
    assert exported_videos(library.exports) == [], "a damaged output is never kept"
    assert not list((library.exports / ".shared").glob("*.mp4")), "nor shared"
    error = read_json(library.exports / "women/18-23/clip/youtube.error.json")
    assert error["error_type"] == "DamagedOutput"

    clean = run_doit(*library.args(f"platforms_dir={platforms}", "retry=failed"), check=0)
    assert "youtube:clip" in clean.stdout
    quality = sidecar(library, "clip", "youtube")["encode"]["quality"]
    video = library.exports / "women/18-23/clip/youtube.mp4"
    assert quality["metric"] == METRIC
    assert quality["frames"] == decoded_frames(video) == 30
    assert quality["scored"] == 2           # one frame in 19: the 1st and the 20th
    assert quality["worst"] <= quality["p5"] <= quality["mean"]
    assert quality["mean"] > (80 if METRIC == "vmaf" else 0.9), quality
    assert quality["reference"] == "encode", "scored against the encode's own frames"
    assert not leftovers(library.exports)
    row = next(row for row in read_json(library.exports / "registry.json")["exports"]
               if row["platform"] == "youtube")
    assert row["quality"] == quality


def test_a_remux_is_proven_by_its_packets_and_shared_encodes_are_scored_once(
        library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube", "instagram"))
    library.add("women", "18-23", "first")
    run_doit(*library.args(f"platforms_dir={platforms}", "platforms=youtube"), check=0)
    made = library.exports / "women/18-23/first/youtube.mp4"
    conforming = library.add("women", "18-23", "conforming")
    shutil.copy(made, conforming / "final.mp4")      # already a conforming 270x480 export
    run_doit(*library.args(f"platforms_dir={platforms}"), check=0)

    remux = sidecar(library, "conforming", "youtube")["encode"]
    assert remux["mode"] in ("remux", "shared")
    assert remux["quality"]["metric"] == "packets" and remux["quality"]["identical"]
    assert remux["quality"]["frames"] == decoded_frames(made)
    # the remux is tagged SDR BT.709 like every export, by the independent probe
    remuxed = library.exports / "women/18-23/conforming/youtube.mp4"
    assert media_facts(remuxed)["colour"] == ("BT.709", "BT.709", "BT.709", "Limited")
    assert remux["colour"]["converted"].startswith("none")

    # the same render with its colour tags removed: an untagged 270x480 picture is read as
    # BT.601 (docs/quality.md#colour), so it is converted, never remuxed
    untagged = library.add("women", "18-23", "untagged")
    run_ffmpeg([TEST_FFMPEG, *QUIET, "-i", str(made), "-c", "copy", "-bsf:v",
                "h264_metadata=colour_primaries=2:transfer_characteristics=2"
                ":matrix_coefficients=2", "-color_primaries", "unknown", "-color_trc",
                "unknown", "-colorspace", "unknown", "-color_range", "unknown",
                str(untagged / "final.mp4")])
    run_doit(*library.args(f"platforms_dir={platforms}"), check=0)
    encode = sidecar(library, "untagged", "youtube")["encode"]
    assert encode["mode"] in ("encode", "shared"), encode["mode"]   # instagram's, maybe
    assert encode["quality"]["metric"] == METRIC, "encoded and scored, not remuxed"
    assert encode["colour"]["source"] == "bt601-525/sdr (untagged)"
    encoded = [sidecar(library, "first", name)["encode"] for name in ("youtube", "instagram")]
    assert encoded[0]["shared_key"] == encoded[1]["shared_key"]
    assert encoded[0]["quality"] == encoded[1]["quality"], "one encode, scored once"
    assert encoded[0]["quality"]["metric"] == METRIC


def test_full_frame_noise_scores_lower_at_tiktoks_rate_than_at_youtubes(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube", "tiktok"))
    directory = library.add("women", "18-23", "noise", shape="silent")
    make_clip(directory / "final.mp4", width=270, height=480, seconds=1, audio=False,
              pattern="noise", crf=0)
    run_doit(*library.args(f"platforms_dir={platforms}"), check=0)
    youtube = sidecar(library, "noise", "youtube")["encode"]["quality"]
    tiktok = sidecar(library, "noise", "tiktok")["encode"]["quality"]
    assert youtube["metric"] == tiktok["metric"] == METRIC
    assert tiktok["mean"] < youtube["mean"], (tiktok, youtube)


def write_late_video(path, seconds=1):
    """An MPEG-TS at 25 fps of full-frame noise whose audio starts 10 ms before its video."""
    subprocess.run([bundled_ffmpeg(), *QUIET, "-f", "lavfi",
                    "-i", "color=c=gray:size=360x640:rate=25", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=48000", "-vf",
                    "noise=alls=100:allf=t+u", "-c:v", "libx264", "-preset", "veryfast",
                    "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "mp2", "-t", str(seconds),
                    "-f", "mpegts", str(path)], check=True)
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.start_time * video.time_base > audio.start_time * audio.time_base
    return path


def test_a_source_whose_audio_starts_first_is_scored_against_the_frames_the_encode_used(
        library, tmp_path):
    """MPEG-TS at 25 fps whose audio starts 10 ms before its video: the encode (reading the
    audio) and the check must see the same video timestamps, or the 25-to-30 fps conversion
    repeats different frames and noise scores as a broken frame (the shipped gate refused
    it: VMAF worst 18.7 against a median of 70)."""
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    directory = library.add("women", "18-23", "late-video")
    write_late_video(directory / "final.mp4")
    run_doit(*library.args(f"platforms_dir={platforms}"), check=0)
    quality = sidecar(library, "late-video", "youtube")["encode"]["quality"]
    assert quality["scored"] == 2       # frames 0 and 19
    # misaligned (one frame in 20, against the source), frame 20 scored VMAF 18 or SSIM
    # 0.11; aligned, VMAF 56 and SSIM 0.85
    assert quality["worst"] > (35 if METRIC == "vmaf" else 0.5), quality


def test_a_score_under_the_platforms_floor_fails_the_export_with_the_scores(
        library, tmp_path):
    floor = {"vmaf": {"mean": 99.9}, "ssim": {"mean": 0.9999}}
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",),
                                youtube={"quality": floor})
    library.add("women", "18-23", "clip")
    result = run_doit(*library.args(f"platforms_dir={platforms}"), check=2)
    line = next(line for line in result.stderr.splitlines() if "youtube:clip" in line)
    assert f"{METRIC.upper()} mean " in line and "under the platform's floor" in line, line
    assert f"quality.{METRIC}" in line and "raise video.bitrate" in line
    assert exported_videos(library.exports) == []

    # the floor lowered: the encode kept in the cache is judged again, nothing re-encoded
    document = json.loads(json.dumps(floor))
    document[METRIC]["mean"] = 1 if METRIC == "vmaf" else 0.1
    small_platforms(tmp_path / "platforms", names=("youtube",),
                    youtube={"quality": document})
    run_doit(*library.args(f"platforms_dir={platforms}", "retry=failed"), check=0)
    assert sidecar(library, "clip", "youtube")["encode"]["mode"] == "shared"


def test_the_gate_reads_each_floor_and_a_broken_frame_among_good_ones():
    record = {"metric": "vmaf", "mean": 90.0, "median": 95.0, "p5": 40.0, "worst": 30.0}
    assert gate_problems(record, {}) == []
    assert gate_problems(record, {"ssim": {"mean": 0.99}}) == [], "another metric's floor"
    (line,) = gate_problems(record, {"vmaf": {"mean": 91, "p5": 30}})
    assert line.startswith("VMAF mean 90, p5 40, worst 30 is under the platform's floor "
                           "(mean 90 < 91; quality.vmaf)")
    (line,) = gate_problems(record, {"vmaf": {"max_drop": 50}})
    assert "worst frame 65 under the median 95, more than 50: a broken frame" in line
    assert gate_problems(record, {"vmaf": {"max_drop": 65}}) == []
    noise = {"metric": "vmaf", "mean": 27.3, "median": 27.0, "p5": 19.9, "worst": 19.9}
    assert gate_problems(noise, {"vmaf": {"max_drop": 50}}) == [], "uniformly low: not broken"
    # against the encode's own frames, near zero is not content but a broken encode
    negated = {"metric": "vmaf", "mean": 1.2, "median": 1.1, "p5": 0.0, "worst": 0.0}
    (line,) = gate_problems(negated, {"vmaf": {"max_drop": 50}})
    assert "VMAF mean 1.2 and median 1.1 against the frames x264 was given is under 10: " \
           "a broken encode" in line
    assert gate_problems({"metric": "packets", "identical": True, "frames": 3},
                         {"vmaf": {"mean": 99}}) == []


def test_the_encodes_own_reference_frames_score_as_the_source_through_the_same_graph(tmp_path):
    """The check's reference is the frames the encode gave x264 (kept, one in 19, losslessly):
    scoring against them gives the score the source decoded again through the encode's graph
    gives, so decoding the source a second time can be left out. Two outputs of one process
    (8 and 6 Mb/s), each keeping its own frames. The source is noise in an MPEG-TS whose audio
    starts first, so a reference timed otherwise than the encode (a check reading the video
    alone) compares other frames and scores far apart."""
    specs = load_specs(small_platforms(tmp_path / "platforms", names=("youtube", "tiktok")))
    source = write_late_video(tmp_path / "source.ts", seconds=2)
    targets = [(specs[name], tmp_path / f"{name}.mp4") for name in ("youtube", "tiktok")]
    samples = [tmp_path / f"{name}.samples.mkv" for name in ("youtube", "tiktok")]
    plans = build_encodes(TEST_FFMPEG, source, probe(source), targets, "superfast", None,
                          samples)
    run_ffmpeg(plans[0].argv)
    for (spec, output), plan, kept in zip(targets, plans, samples):
        assert plan.samples == str(kept)
        frames = decoded_frames(output)
        assert decoded_frames(kept) == len(range(0, frames, 19)) >= 3   # frames 0, 19, 38...
        own = score_output(TEST_FFMPEG, output, source, spec, plan)
        again = score_output(TEST_FFMPEG, output, source, spec, replace(plan, samples=None))
        assert (own["reference"], again["reference"]) == ("encode", "source")
        assert own["scored"] == again["scored"] == decoded_frames(kept)
        assert own["frames"] == again["frames"] == frames
        for field in ("mean", "p5", "worst"):
            assert own[field] == pytest.approx(again[field], abs=0.01), (own, again)


# ---- the check decodes some GOPs; the rest is proven x264's by its packets ------------------

def gop_clip(tmp_path, seconds=8, gop=30):
    """An 8 s export at 270x480 with a keyframe every second (8 GOPs), made by the tool's
    plan keeping the check's reference frames and x264's packets, in paths the tee muxer
    must escape; (spec, source, output, plan)."""
    spec = load_specs(small_platforms(tmp_path / "platforms", names=("youtube",)))["youtube"]
    spec = replace(spec, video={**spec.video, "gop": gop})
    source = make_clip(tmp_path / "render.mp4", width=480, height=270, seconds=seconds,
                       fps=30, audio=False, pattern="testsrc2", crf=18)
    output = tmp_path / "a [b]|c's" / "youtube.mp4"
    output.parent.mkdir()
    plan = build_encodes(TEST_FFMPEG, source, probe(source), [(spec, output)], "superfast",
                         samples=[tmp_path / "samples.mkv"],
                         packets=[output.parent / "x264|packets.nut"])[0]
    run_ffmpeg(plan.argv)
    return spec, source, output, plan


def test_the_check_decodes_one_gop_in_four_and_scores_as_decoding_it_all(tmp_path):
    """GOPs 0, 4 and 7 (the last) of 8 are decoded; their samples (one frame in 19) score as
    the same frames of the export decoded whole against the source; the colour check
    compares the frames decoded. The MP4 through the tee is the one ffmpeg writes alone."""
    spec, source, output, plan = gop_clip(tmp_path)
    glimpses = Glimpses()
    record = score_output(TEST_FFMPEG, output, source, spec, plan, glimpses=glimpses)
    numbers = [number for number, _ in glimpses.kept(output)]
    assert numbers == [*range(0, 30), *range(120, 150), *range(210, 240)]
    assert record["frames"] == decoded_frames(output) == 240
    assert record["decoded"] == 90
    scored = [n for n in numbers if n % 19 == 0]
    assert scored == [0, 19, 133, 228] and record["scored"] == 4
    assert record["reference"] == "encode"

    # independently: ffmpeg decodes the whole export, those frames are scored against the
    # encode's reference frames (the same sequence: VMAF's motion reads the one before)
    scores = whole_decode_scores(output, plan.samples, scored, tmp_path / "whole.log")
    assert record["worst"] == pytest.approx(min(scores), abs=0.01)
    assert record["mean"] == pytest.approx(sum(scores) / len(scores), abs=0.01)

    colour = check_colour(output, source, source_colour(probe(source)), probe(source),
                          spec.fit, 30, glimpses)
    assert colour["frames"] == 90 and colour["worst_frame"] in numbers
    assert colour["mean"] < 3, colour

    alone = tmp_path / "alone.mp4"
    single = build_encodes(TEST_FFMPEG, source, probe(source), [(spec, alone)], "superfast")[0]
    run_ffmpeg(single.argv)
    assert alone.read_bytes() == output.read_bytes(), "the tee changes nothing of the MP4"


def whole_decode_scores(output, samples, numbers, log):
    """The scores of frames `numbers` of the output decoded whole by ffmpeg, against the
    reference frames in `samples`, in order."""
    from exporter.media import quality
    chosen = "+".join(f"eq(n,{number})" for number in numbers)
    timed = "settb=AVTB,setpts=N/(30*TB)"
    run_ffmpeg([TEST_FFMPEG, *QUIET, "-i", str(output), "-i", str(samples), "-filter_complex",
                f"[0:v]select='{chosen}',{timed}[dist];[1:v]{timed}[ref];"
                f"[dist][ref]{quality.scorer(METRIC, log)}", "-f", "null", "-"])
    return quality.per_frame_scores(METRIC, log)


def test_bytes_changed_in_a_gop_the_check_does_not_decode_fail_it(tmp_path):
    """One byte of GOP 2 (never decoded by the check) flipped in the MP4: its packets are
    no longer x264's, and the export is refused as damaged."""
    spec, source, output, plan = gop_clip(tmp_path)
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        keyframes = [packet for packet in container.demux(stream)
                     if packet.size and packet.is_keyframe]
        position = keyframes[2].pos + keyframes[2].size // 2
    data = bytearray(output.read_bytes())
    data[position] ^= 0x40
    output.write_bytes(bytes(data))
    with pytest.raises(DamagedOutput, match="not the ones x264 wrote"):
        score_output(TEST_FFMPEG, output, source, spec, plan)


@pytest.mark.parametrize("gop, frames", [(30, 240), (60, 150), (60, 61), (7, 100), (60, 30)])
def test_ffmpeg_keeps_the_reference_frames_the_check_scores(tmp_path, gop, frames):
    """The encode's select expression (checked_samples) keeps exactly the frames the check
    scores (checked_sample), read back by their timestamps."""
    kept = tmp_path / "kept.nut"
    run_ffmpeg([TEST_FFMPEG, *QUIET, "-f", "lavfi", "-i", f"testsrc2=s=64x64:r=30,trim=end_frame={frames}",
                "-vf", checked_samples(gop, frames), "-fps_mode", "passthrough",
                "-c:v", "ffv1", "-f", "nut", str(kept)])
    with av.open(str(kept)) as container:
        numbers = [round(frame.time * 30) for frame in container.decode(video=0)]
    assert numbers == [n for n in range(frames) if checked_sample(n, gop, frames)]
    assert numbers, "at least the first frame"
