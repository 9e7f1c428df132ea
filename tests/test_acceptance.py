"""What the upload APIs document, read back from real exports (issue 21): a minimum duration
refused or padded, no edit lists with audio and video starting together, keyframes on a
fixed grid of IDR pictures. Every fact is read here, not by the tool's own probe: the MP4
boxes by a walker of this file, the packets and samples by PyAV, loudness by the ffmpeg
under test's ebur128; MediaInfo for the rest (conftest.assert_conforms).

Sources are 270x480 exports of tiny clips: the whole module is a handful of 3 s encodes.
"""

import shutil
import struct
import subprocess
from array import array

import av
import pytest
from conftest import (
    TEST_FFMPEG,
    assert_conforms,
    load_yaml,
    made_once,
    read_json,
    run_doit,
    small_platforms,
)

from exporter.media.ffmpeg import QUIET
from exporter.media.ffmpeg_binary import bundled_ffmpeg

ALL_FOUR = ("youtube", "tiktok", "instagram", "facebook")
META = ("instagram", "facebook")          # 3 s minimum: Reels Publishing API, IG User Media


# ---- independent readers -----------------------------------------------------------------

def tracks_with_edit_lists(path):
    """Handler types ('vide', 'soun') of the tracks holding an elst box, by walking the file."""
    found = []

    def walk(handle, start, end, track):
        handle.seek(start)
        while handle.tell() + 8 <= end:
            at = handle.tell()
            size, name = struct.unpack(">I4s", handle.read(8))
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", handle.read(8))[0], 16
            elif size == 0:
                size = end - at
            if name == b"trak":
                inner = {}
                walk(handle, at + header, at + size, inner)
                if inner.get("elst"):
                    found.append(inner.get("hdlr"))
            elif name in (b"moov", b"mdia", b"edts"):
                walk(handle, at + header, at + size, track)
            elif name == b"elst":
                track["elst"] = True
            elif name == b"hdlr":
                handle.seek(at + header + 8)
                track["hdlr"] = handle.read(4).decode()
            handle.seek(at + size)

    with open(path, "rb") as handle:
        walk(handle, 0, handle.seek(0, 2), {})
    return found


def keyframes(path):
    """(frame number of each keyframe in display order, every keyframe an IDR picture)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        extradata = stream.codec_context.extradata
        length = (extradata[4] & 3) + 1
        shown, keys, idr = [], [], True
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            shown.append(packet.pts * packet.time_base)
            if packet.is_keyframe:
                keys.append(packet.pts * packet.time_base)
                data, types, at = bytes(packet), [], 0
                while at + length < len(data):
                    types.append(data[at + length] & 0x1F)
                    at += length + int.from_bytes(data[at:at + length], "big")
                idr = idr and 5 in types
    start = min(shown)
    return [round(float(k - start) * fps) for k in sorted(keys)], idr


def assert_keyframe_grid(path, spec):
    """Keyframes from the first frame on a fixed grid (no keyframe at a cut): every
    `video.gop` frames where the platform sets no bounds; where it does (Facebook's closed
    GOPs of 2-5 s), every GOP within them, the last (to the end of the file) included."""
    frames, idr = keyframes(path)
    with av.open(str(path)) as container:
        total = sum(1 for packet in container.demux(video=0) if packet.size)
    assert idr, "a closed GOP: every keyframe an IDR picture"
    gaps = {b - a for a, b in zip(frames, frames[1:])}
    assert frames[0] == 0 and len(gaps) <= 1, frames                 # the grid, no cut
    fps, bounds = spec["video"]["fps"], spec["limits"].get("keyframes", {})
    low, high = bounds.get("min_interval_s"), bounds.get("max_interval_s")
    if low is None and high is None:
        assert gaps <= {spec["video"]["gop"]}, frames
        return frames
    for length in [*gaps, total - frames[-1]] if len(frames) > 1 else []:
        assert (low or 0) <= length / fps <= (high or length / fps), (frames, total)
    return frames


def flashes_and_beeps(path):
    """Times (s) of the bright frames and of each beep's first sample, as decoded."""
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            luma = bytes(frame.planes[0])[::101]
            frames.append((float(frame.pts * frame.time_base), sum(luma) / len(luma)))
    with av.open(str(path)) as container:
        samples, first, rate = array("f"), None, None
        for frame in container.decode(audio=0):
            if first is None:
                first, rate = float(frame.pts * frame.time_base), frame.sample_rate
            assert frame.format.name == "fltp"
            samples.extend(array("f", bytes(frame.planes[0]))[:frame.samples])
    peak = max(abs(s) for s in samples)
    onsets, last = [], -rate
    for index, sample in enumerate(samples):
        if abs(sample) > peak / 4:
            if index - last > rate / 2:
                onsets.append(first + index / rate)
            last = index
    return [t for t, luma in frames if luma > 100], onsets, frames


def ebur128(path):
    """Integrated loudness (LUFS) measured by the ffmpeg under test."""
    stderr = subprocess.run([TEST_FFMPEG, "-hide_banner", "-nostats", "-i", str(path),
                             "-map", "0:a:0", "-af", "ebur128", "-f", "null", "-"],
                            capture_output=True, text=True, check=True).stderr
    summary = stderr[stderr.rfind("Summary:"):]
    return float(summary.split("I:")[1].split("LUFS")[0])


# ---- sources ----------------------------------------------------------------------------

def flash_and_beep(path, seconds=3.0, rate="30"):
    """Black with a white frame at 0 s and 1.5 s (each a hard cut, where x264 would put a
    keyframe of its own), a 1 kHz beep starting with each flash; made by the bundled ffmpeg."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flash = "if(lt(mod(N\\,45)\\,1)\\,235\\,16)"
    picture = f"color=c=black:size=360x640:rate={rate},geq=lum='{flash}':cb=128:cr=128"
    beep = "aevalsrc='if(lt(mod(t\\,1.5)\\,0.05)\\,0.5*sin(1000*2*PI*t)\\,0)':s=48000:c=stereo"
    subprocess.run([bundled_ffmpeg(), *QUIET, "-f", "lavfi", "-i", picture,
                    "-f", "lavfi", "-i", beep,
                    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-t", f"{seconds}", str(path)], check=True)
    (path.parent / "metadata.json").write_text('{"title": "t", "hashtags": ["x"]}')
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One run: a 3 s flash-and-beep render, a 2.9 s one, and exactly-3 s ones at 30 and
    29.97 fps, for the four platforms; then the youtube export of the first as a render of
    its own (it conforms: remuxed)."""
    def make(root):
        renders, exports = root / "renders", root / "exports"
        titles = renders / "a" / "b"
        flash_and_beep(titles / "sync" / "final.mp4")
        flash_and_beep(titles / "short" / "final.mp4", seconds=2.9)
        flash_and_beep(titles / "exact-30" / "final.mp4", seconds=3.0, rate="30")
        flash_and_beep(titles / "exact-2997" / "final.mp4", seconds=3.0, rate="30000/1001")
        platforms = small_platforms(root / "platforms", names=ALL_FOUR, minimum=True)
        first = run_doit(f"renders={renders}", f"exports={exports}",
                         f"platforms_dir={platforms}", "-n", "2")
        (titles / "remuxed").mkdir()
        shutil.copy(exports / "a/b/sync/youtube.mp4", titles / "remuxed" / "final.mp4")
        shutil.copy(titles / "sync" / "metadata.json", titles / "remuxed")
        second = run_doit(f"renders={renders}", f"exports={exports}",
                          f"platforms_dir={platforms}", "platforms=youtube")
        return first, second
    root, (first, second) = made_once(tmp_path_factory, "acceptance", make)
    return first, second, root / "exports" / "a" / "b", root / "platforms"


def test_a_short_render_is_refused_for_meta_in_one_line_and_exports_elsewhere(exported):
    first, _, out, _ = exported
    assert first.returncode == 2, first.stdout + first.stderr
    failed = [line for line in first.stderr.splitlines() if line.startswith("FAILED")]
    assert sorted(failed) == [
        f"FAILED {platform}:short (a/b/short): duration 2.900 s is under the {platform} minimum of 3 s "
        "(limits.on_short: reject; pad holds the last frame)" for platform in
        ("facebook", "instagram")], first.stderr
    for platform in META:
        assert not (out / "short" / f"{platform}.mp4").exists()
        assert read_json(out / "short" / f"{platform}.error.json")["cause"].startswith(
            "duration 2.900 s is under")
    for platform in ("youtube", "tiktok"):
        assert (out / "short" / f"{platform}.mp4").exists()


@pytest.mark.parametrize("title", ["exact-30", "exact-2997", "sync"])
def test_a_render_of_exactly_the_minimum_exports_everywhere(exported, title):
    _, _, out, platforms = exported
    for platform in ALL_FOUR:
        video = out / title / f"{platform}.mp4"
        facts = assert_conforms(video, load_yaml(platforms / f"{platform}.yaml"), 3.0)
        assert facts["duration_s"] >= 3.0, facts      # as MediaInfo reads it: to the ms


@pytest.mark.parametrize("title, mode", [("sync", "encode"), ("remuxed", "remux")])
def test_no_edit_lists_and_sound_and_picture_start_together(exported, title, mode):
    _, second, out, _ = exported
    assert second.returncode == 0, second.stdout + second.stderr
    platforms = ("youtube",) if title == "remuxed" else ALL_FOUR
    for platform in platforms:
        video = out / title / f"{platform}.mp4"
        assert read_json(video.with_name(f"{platform}.export.json"))["encode"]["mode"] in (
            mode, "shared")
        assert tracks_with_edit_lists(video) == []
        flashes, beeps, frames = flashes_and_beeps(video)
        assert frames[0][0] == 0 and flashes[0] == 0, "the first frame is kept, shown at 0"
        assert len(frames) == 90
        assert flashes == [0, 1.5] and len(beeps) == 2, (flashes, beeps)
        for flash, beep in zip(flashes, beeps):
            assert abs(beep - flash) <= 1 / 30, (platform, flashes, beeps)


def test_keyframes_every_gop_frames_never_at_a_cut_and_each_an_idr(exported):
    _, _, out, platforms = exported
    for title in ("sync", "exact-2997", "remuxed"):
        for platform in ALL_FOUR if title != "remuxed" else ("youtube",):
            spec = load_yaml(platforms / f"{platform}.yaml")
            frames = assert_keyframe_grid(out / title / f"{platform}.mp4", spec)
            # 3 s, cuts at 0 and 1.5 s: keyframes at 0 and 60 (not at the cut, 45); on
            # Facebook one GOP of 3 s (2 s + 1 s would leave its last GOP under 2 s)
            assert frames == ([0] if platform == "facebook" else [0, 60]), (title, frames)


def test_on_short_pad_holds_the_last_frame_and_adds_silence(tmp_path):
    renders, exports = tmp_path / "renders", tmp_path / "exports"
    flash_and_beep(renders / "a" / "b" / "short" / "final.mp4", seconds=2.9)
    platforms = small_platforms(tmp_path / "platforms", names=META, minimum=True,
                                instagram={"limits.on_short": "pad"},
                                facebook={"limits.on_short": "pad"})
    run_doit(f"renders={renders}", f"exports={exports}", f"platforms_dir={platforms}",
             check=0)
    for platform in META:
        video = exports / "a/b/short" / f"{platform}.mp4"
        facts = assert_conforms(video, load_yaml(platforms / f"{platform}.yaml"), 3.0)
        assert facts["duration_s"] >= 3.0
        padded = read_json(video.with_name(f"{platform}.export.json"))["encode"]["padded"]
        assert padded == {"source_duration_s": 2.9, "padded_to_s": 3.0,
                          "how": "last frame held, silence added"}
        _, beeps, frames = flashes_and_beeps(video)
        assert len(frames) == 90 and frames[-1][1] == frames[-4][1], "the last frame held"
        assert len(beeps) == 2 and tracks_with_edit_lists(video) == []


@pytest.mark.parametrize("container", ["mp4", "matroska"])
def test_on_short_pad_measures_the_video_stream_not_the_container(tmp_path, container):
    """89 frames at 30 fps (2.967 s) under 2.99 s of audio: the pictures, not the longest
    stream (nor the millisecond the duration is rounded to), decide how much to hold."""
    render = tmp_path / "renders/a/b/short/final.mp4"
    render.parent.mkdir(parents=True)
    subprocess.run([TEST_FFMPEG, *QUIET, "-f", "lavfi", "-i", "testsrc2=s=360x640:r=30",
                    "-f", "lavfi", "-t", "2.99", "-i", "sine=f=440:r=48000",
                    "-map", "0:v", "-map", "1:a", "-frames:v", "89", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", container, str(render)],
                   check=True)
    (render.parent / "metadata.json").write_text('{"title": "Short"}', encoding="utf-8")
    platforms = small_platforms(tmp_path / "platforms", names=("facebook",), minimum=True,
                                facebook={"limits.on_short": "pad"})
    run_doit(f"renders={tmp_path / 'renders'}", f"exports={tmp_path / 'exports'}",
             f"platforms_dir={platforms}", check=0)
    video = tmp_path / "exports/a/b/short/facebook.mp4"
    facts = assert_conforms(video, load_yaml(platforms / "facebook.yaml"), 3.0)
    assert facts["duration_s"] >= 3.0
    padded = read_json(video.with_name("facebook.export.json"))["encode"]["padded"]
    assert padded["padded_to_s"] == 3.0 and 2.96 <= padded["source_duration_s"] <= 2.967
    # Facebook's closed GOPs of 2-5 s, the last included: one GOP of 3 s, not 2 s + 1 s
    with av.open(str(video)) as container:
        keys = [packet.pts for packet in container.demux(video=0)
                if packet.is_keyframe and packet.size]
    assert len(keys) == 1, keys
