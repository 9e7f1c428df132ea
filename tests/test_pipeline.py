"""The pipeline as a user drives it: real doit, real ffmpeg, small generated clips.

Platforms here are copies of the shipped specs at 270x480 (a user-added platform folder),
so each encode takes well under a second.
"""

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import av
import jsonschema
import pytest
from conftest import (
    TEST_FFMPEG,
    assert_conforms,
    doit_env,
    executable,
    executed_tasks,
    exported_videos,
    image_facts,
    leftovers,
    load_yaml,
    logging_ffmpeg,
    media_facts,
    read_json,
    run_doit,
    small_platforms,
)

from exporter.media.ffmpeg import run_ffmpeg
from exporter.media.plan import build_still, build_stills
from exporter.media.samples import NOISE, make_audio_only, make_clip
from exporter.model.spec import load_schema


@pytest.fixture
def platforms(tmp_path):
    return small_platforms(tmp_path / "platforms")


def args_for(library, platforms, *extra):
    return library.args(f"platforms_dir={platforms}", *extra)


def mtimes(exports):
    return {str(p.relative_to(exports)): p.stat().st_mtime_ns
            for p in exported_videos(exports)}


def covers(exports):
    return {str(p.relative_to(exports)): p.stat().st_mtime_ns for p in exports.rglob("*.jpg")}


@pytest.mark.once        # which tasks a change reruns: doit's bookkeeping
def test_changes_redo_exactly_the_affected_exports(library, platforms):
    library.add("women", "18-23", "alpha")
    library.add("men", "24-30", "beta", shape="landscape")
    first = run_doit("-n", "2", *args_for(library, platforms), check=0)
    assert executed_tasks(first.stdout) == ["tiktok:alpha", "tiktok:beta",
                                            "youtube:alpha", "youtube:beta"]

    # new bytes in one source: both platforms of that title, nothing else
    shutil.copy(library.root / "men/24-30/beta/final.mp4",
                library.root / "women/18-23/alpha/final.mp4")
    second = run_doit(*args_for(library, platforms), check=0)
    assert executed_tasks(second.stdout) == ["tiktok:alpha", "youtube:alpha"]

    # an edited metadata.json
    (library.root / "men/24-30/beta/metadata.json").write_text('{"title": "Beta, renamed"}')
    third = run_doit(*args_for(library, platforms), check=0)
    assert executed_tasks(third.stdout) == ["tiktok:beta", "youtube:beta"]
    assert read_json(library.exports / "men/24-30/beta/metadata_tiktok.json")["title"] == \
        "Beta, renamed"

    # an edited platform spec: only that platform
    small_platforms(platforms, names=("tiktok",), tiktok={"video.gop": 30})
    fourth = run_doit(*args_for(library, platforms), check=0)
    assert executed_tasks(fourth.stdout) == ["tiktok:alpha", "tiktok:beta"]

    # an encode-relevant setting (the x264 preset)
    from conftest import doit_env
    fifth = run_doit(*args_for(library, platforms), env=doit_env(REELEXPORT_X264_PRESET="faster"),
                     check=0)
    assert len(executed_tasks(fifth.stdout)) == 4


@pytest.mark.once        # which tasks a change reruns: doit's bookkeeping
def test_metadata_rule_change_rewrites_metadata_without_reencoding(library, platforms):
    library.add("women", "18-23", "alpha")
    run_doit(*args_for(library, platforms, "platforms=youtube"), check=0)
    before, covers_before = mtimes(library.exports), covers(library.exports)
    small_platforms(platforms, names=("youtube",),
                    youtube={"metadata.required_hashtags": ["Shorts", "Extra"]})
    rerun = run_doit(*args_for(library, platforms, "platforms=youtube"), check=0)
    assert executed_tasks(rerun.stdout) == ["youtube:alpha"]
    assert mtimes(library.exports) == before, "the video must not be encoded again"
    assert covers(library.exports) == covers_before
    assert "Extra" in read_json(library.exports /
                                "women/18-23/alpha/metadata_youtube.json")["hashtags"]


def test_thumbnail_makes_the_cover_and_only_covers_follow_it(library, platforms, tmp_path):
    title = library.add("women", "18-23", "alpha")
    make_clip(tmp_path / "frame.mp4", width=640, height=360, seconds=1, pattern="color=c=red")
    from exporter.media.ffmpeg import run_ffmpeg
    run_ffmpeg([TEST_FFMPEG, "-loglevel", "error", "-i", str(tmp_path / "frame.mp4"),
                "-frames:v", "1", "-update", "1", str(title / "thumbnail.jpg")])
    args = args_for(library, platforms, "platforms=youtube")
    run_doit(*args, check=0)
    out = library.exports / "women/18-23/alpha"
    sidecar = read_json(out / "youtube.export.json")
    assert sidecar["cover"]["from"] == "thumbnail.jpg"
    cover = image_facts(out / "youtube.cover.jpg")
    assert (cover["format"], cover["width"], cover["height"]) == ("JPEG", 1280, 720)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    # a new thumbnail: the cover is made again, the video and poster are not
    run_ffmpeg([TEST_FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                "color=c=blue:s=320x180", "-frames:v", "1", "-update", "1",
                str(title / "thumbnail.jpg")])
    rerun = run_doit(*args, check=0)
    assert executed_tasks(rerun.stdout) == ["youtube:alpha"]
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    changed = sorted(name for name in after if after[name] != before.get(name))
    assert changed == ["youtube.cover.jpg", "youtube.export.json"]

    # no thumbnail: a frame of the source
    (title / "thumbnail.jpg").unlink()
    run_doit(*args, check=0)
    assert read_json(out / "youtube.export.json")["cover"]["from"] == "final.mp4 at 0.25 s"


def test_covers_of_every_platform_come_from_one_decoded_frame(library, tmp_path):
    """YouTube's 1280x720 cover and TikTok's 1080x1920 one are made by one ffmpeg run (one
    seek and decode of the source), each at its platform's size."""
    library.add("women", "18-23", "alpha")
    platforms = small_platforms(tmp_path / "platforms")
    wrapper, runs = logging_ffmpeg(tmp_path)
    run_doit("-n", "2", *args_for(library, platforms),
             env=doit_env(REELEXPORT_FFMPEG=str(wrapper)), check=0)
    source = str(library.root / "women/18-23/alpha/final.mp4")
    covers_made = [argv for argv in runs() if source in argv and "mjpeg" in argv]
    assert len(covers_made) == 1, covers_made
    assert covers_made[0].count("mjpeg") == 2
    out = library.exports / "women/18-23/alpha"
    for platform, size in (("youtube", (1280, 720)), ("tiktok", (1080, 1920))):
        facts = image_facts(out / f"{platform}.cover.jpg")
        assert (facts["format"], facts["width"], facts["height"]) == ("JPEG", *size)
        assert read_json(out / f"{platform}.export.json")["cover"]["from"] == (
            "final.mp4 at 0.25 s")


# x86 SIMD levels an x86-64 machine may have, most to least: each removes the ones above it
CPU_LEVELS = ("", "-avx512", "-avx512-avx2", "-avx512-avx2-avx-sse4.2-sse4.1-ssse3")


def test_a_still_is_the_same_bytes_on_every_cpu(tmp_path):
    """A cover's sha256 is a fact of its inputs: ffmpeg told to use less of the CPU's SIMD
    (as an older machine would) writes the same JPEG bytes, resized and range-converted."""
    source = make_clip(tmp_path / "clip.mp4", 270, 480, 1.0)
    made = {}
    for level in CPU_LEVELS:
        one, two = tmp_path / f"one{level}.jpg", tmp_path / f"two{level}.jpg"
        cpu = ["-cpuflags", level] if level else []
        for argv in (build_still(TEST_FFMPEG, ["-i", str(source)], "crop", 200, 400, one, 2, ""),
                     build_stills(TEST_FFMPEG, ["-i", str(source)],
                                  [("blur", 202, 360, two), ("pad", 200, 400, tmp_path / "x.jpg")],
                                  2, "")):
            run_ffmpeg([argv[0], *cpu, *argv[1:]])
        made[level] = (one.read_bytes(), two.read_bytes())
    assert len(set(made.values())) == 1, {level: [len(b) for b in pair]
                                          for level, pair in made.items()}


@pytest.mark.once        # which tasks are chosen: doit's bookkeeping
def test_selection_vars_choose_the_generated_tasks(library, platforms):
    library.add("women", "18-23", "alpha")
    library.add("women", "24-30", "beta")
    library.add("men", "18-23", "gamma")

    def listed(*extra):
        result = run_doit("list", "--all", *args_for(library, platforms, *extra), check=0)
        return sorted(line.split()[0] for line in result.stdout.splitlines()
                      if line.startswith(("youtube:", "tiktok:")))

    assert len(listed()) == 6
    assert listed("segment=women", "age=18-23") == ["tiktok:alpha", "youtube:alpha"]
    assert listed("segment=women", "platforms=youtube") == ["youtube:alpha", "youtube:beta"]
    assert listed("age=18-23,24-30", "segment=men") == ["tiktok:gamma", "youtube:gamma"]

    one_title = run_doit("export:beta", *args_for(library, platforms), check=0)
    assert executed_tasks(one_title.stdout) == ["tiktok:beta", "youtube:beta"]
    one_platform = run_doit("youtube", *args_for(library, platforms), check=0)
    assert executed_tasks(one_platform.stdout) == ["youtube:alpha", "youtube:gamma"]
    registry = read_json(library.exports / "registry.json")
    statuses = {(r["title_id"], r["platform"]): r["status"] for r in registry["exports"]}
    assert statuses == {("alpha", "youtube"): "exported", ("alpha", "tiktok"): "pending",
                        ("beta", "youtube"): "exported", ("beta", "tiktok"): "exported",
                        ("gamma", "youtube"): "exported", ("gamma", "tiktok"): "pending"}


@pytest.mark.once        # refused before any ffmpeg runs
def test_a_filter_matching_nothing_says_what_exists(library, platforms):
    library.add("women", "18-23", "alpha")
    result = run_doit(*args_for(library, platforms, "segment=kids"))
    assert result.returncode != 0
    assert "segment=kids matches no title" in result.stderr
    assert "women/18-23 (1 title)" in result.stderr
    unknown = run_doit(*args_for(library, platforms, "platforms=vimeo"))
    assert unknown.returncode != 0 and "unknown platform vimeo" in unknown.stderr


@pytest.mark.once        # refused before any ffmpeg runs
def test_an_invalid_platform_spec_stops_before_any_encode(library, platforms):
    library.add("women", "18-23", "alpha")
    small_platforms(platforms, names=("tiktok",), tiktok={"video.bitrate": "fast"})
    result = run_doit(*args_for(library, platforms))
    assert result.returncode != 0
    assert "tiktok.yaml: video.bitrate: 'fast' is not of type 'integer'" in result.stderr
    assert not list(exported_videos(library.exports))


@pytest.mark.parametrize("ffmpeg, cause", [("/nonexistent/ffmpeg", "No such file or directory"),
                                           ("/bin/false", "exit status 1")])
def test_an_ffmpeg_that_does_not_run_is_one_clear_line(library, platforms, ffmpeg, cause):
    from conftest import doit_env
    library.add("women", "18-23", "alpha")
    result = run_doit(*args_for(library, platforms), env=doit_env(REELEXPORT_FFMPEG=ffmpeg))
    assert result.returncode != 0
    assert result.stderr.strip() == f"ERROR: ffmpeg {ffmpeg} does not run: {cause}"


def test_bad_sources_fail_alone_with_one_clear_line(library, platforms):
    good = library.add("women", "18-23", "good")
    corrupt = library.add("women", "18-23", "corrupt")
    corrupt_bytes = (good / "final.mp4").read_bytes()
    (corrupt / "final.mp4").write_bytes(corrupt_bytes[: len(corrupt_bytes) // 3])
    (library.add("women", "18-23", "empty") / "final.mp4").write_bytes(b"")
    (library.add("men", "18-23", "text") / "final.mp4").write_text("just some notes\n")
    (library.add("men", "18-23", "missing") / "final.mp4").unlink()
    (library.add("men", "18-23", "badmeta") / "metadata.json").write_text('{"title": 7}')
    make_audio_only(library.add("men", "24-30", "audio-only") / "final.mp4")

    result = run_doit("-n", "2", *args_for(library, platforms, "platforms=youtube"))
    assert result.returncode != 0
    failures = [line for line in result.stderr.splitlines() if line.startswith("FAILED ")]
    expected = {
        "corrupt": "women/18-23/corrupt",
        "empty": "final.mp4 is empty (0 bytes)",
        "text": "final.mp4 is not a readable video",
        "missing": "final.mp4 is missing",
        "badmeta": "metadata.json: title: 7 is not of type 'string'",
        "audio-only": "final.mp4 has no video stream (audio-only)",
    }
    assert len(failures) == len(expected), result.stderr
    for title, cause in expected.items():
        line = [f for f in failures if f.startswith(f"FAILED youtube:{title} ")]
        assert len(line) == 1 and cause in line[0], (title, failures)
        error = read_json(next(library.exports.rglob(f"{title}/youtube.error.json")))
        jsonschema.validate(error, load_schema("error"))
    assert (library.exports / "women/18-23/good/youtube.mp4").exists()
    videos = sorted(p.parent.name for p in exported_videos(library.exports))
    assert videos == ["good"]
    assert leftovers(library.exports) == []
    registry = read_json(library.exports / "registry.json")
    failed = {r["title_id"]: r["cause"] for r in registry["exports"] if r["status"] == "failed"}
    assert set(failed) == set(expected)

    # fixing a source makes it build; the error record goes away
    shutil.copy(good / "final.mp4", corrupt / "final.mp4")
    run_doit("export:corrupt", *args_for(library, platforms, "platforms=youtube"), check=0)
    assert not (library.exports / "women/18-23/corrupt/youtube.error.json").exists()


@pytest.mark.parametrize("on_overlong", ["reject", "trim"])
def test_overlong_sources(library, tmp_path, on_overlong):
    library.add("women", "18-23", "long", shape="two-seconds")
    platforms = small_platforms(tmp_path / "short", names=("youtube",),
                                youtube={"limits.max_duration_s": 1,
                                         "limits.on_overlong": on_overlong})
    result = run_doit(*args_for(library, platforms))
    output = library.exports / "women/18-23/long/youtube.mp4"
    if on_overlong == "reject":
        assert result.returncode != 0
        assert ("FAILED youtube:long (women/18-23/long): duration 2.00 s exceeds the youtube "
                "limit of 1 s (limits.on_overlong: reject)") in result.stderr
        assert not output.exists()
    else:
        assert result.returncode == 0, result.stderr
        assert_conforms(output, load_yaml(platforms / "youtube.yaml"), 1.0)
        sidecar = read_json(output.with_name("youtube.export.json"))
        assert sidecar["encode"]["trimmed"] is True


def top_rows_luma(path):
    """Mean luma of the top 5 % of the first frame: black bars read close to 16."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0)).reformat(format="gray")
    plane = frame.planes[0]
    data, stride, rows = bytes(plane), plane.line_size, frame.height // 20
    values = [data[row * stride + col] for row in range(rows) for col in range(frame.width)]
    return sum(values) / len(values)


def test_rotation_is_honoured_and_silent_sources_get_audio(library, tmp_path, clip_cache):
    platforms = small_platforms(tmp_path / "pad", names=("youtube",), youtube={"fit": "pad"})
    rotated = library.add("men", "18-23", "rotated")
    make_clip(rotated / "final.mp4", width=640, height=360, seconds=1, rotation=90,
              pattern="color=c=white")
    landscape = library.add("men", "18-23", "landscape")
    make_clip(landscape / "final.mp4", width=640, height=360, seconds=1, pattern="color=c=white")
    library.add("men", "18-23", "silent", shape="silent")
    run_doit("-n", "2", *args_for(library, platforms), check=0)
    out = library.exports / "men/18-23"
    # stored 640x360 turned 90 degrees: a 9:16 picture fills the frame, no bars
    assert top_rows_luma(out / "rotated/youtube.mp4") > 200
    # the same picture unrotated is letterboxed: black bars at top and bottom
    assert top_rows_luma(out / "landscape/youtube.mp4") < 30
    spec = load_yaml(platforms / "youtube.yaml")
    for title in ("rotated", "landscape", "silent"):
        assert_conforms(out / f"{title}/youtube.mp4", spec, 1.0)


@pytest.mark.once        # doit -n 2's workers: process handling
def test_parallel_runs_encodes_at_the_same_time(library, tmp_path):
    platforms = small_platforms(tmp_path / "big", names=("youtube",),
                                youtube={"video.width": 1080, "video.height": 1920})
    library.add("women", "18-23", "one", shape="two-seconds")
    library.add("women", "18-23", "two", shape="two-seconds")
    # Python's import log, from doit and from the workers it forks (they inherit it)
    run = run_doit("-n", "2", *args_for(library, platforms), check=0,
                   env=doit_env(PYTHONPROFILEIMPORTTIME="1"))
    spans = [read_json(p) for p in library.exports.rglob("youtube.export.json")]
    (a_start, a_end), (b_start, b_end) = [(s["started_at"], s["finished_at"]) for s in spans]
    assert a_start < b_end and b_start < a_end, "the two encodes did not overlap"
    # what an export imports at first use was imported once, before the workers forked,
    # not once by each of them
    imported = re.findall(r"\| (av|numpy|jsonschema)$", run.stderr, re.MULTILINE)
    assert sorted(imported) == ["av", "jsonschema", "numpy"], imported


@pytest.mark.once        # doit's DB and commands: bookkeeping
def test_clean_forget_and_resume_without_reencoding(library, platforms):
    library.add("women", "18-23", "alpha")
    run_doit(*args_for(library, platforms), check=0)
    before = mtimes(library.exports)

    # forget: doit loses its record, the action recognises the finished export
    run_doit("forget", *args_for(library, platforms), check=0)
    rerun = run_doit(*args_for(library, platforms), check=0)
    assert executed_tasks(rerun.stdout) == ["tiktok:alpha", "youtube:alpha"]
    assert mtimes(library.exports) == before, "finished exports must not be encoded again"

    # losing the whole DB costs re-hashing, not re-encoding
    (library.exports / ".doit.db").unlink()
    run_doit(*args_for(library, platforms), check=0)
    assert mtimes(library.exports) == before

    run_doit("clean", *args_for(library, platforms), check=0)
    assert not [p for p in library.exports.rglob("*") if p.is_file()
                and p.name not in (".doit.db", ".lock", "registry.json", "index.html",
                                   "history.jsonl", ".platforms-checked.json",
                                   ".view-index.json")]
    status = run_doit("list", "--all", "--status", *args_for(library, platforms), check=0)
    assert "R youtube:alpha" in status.stdout


def faulty_ffmpeg(directory):
    """The ffmpeg under test behind a wrapper that drops +faststart: a real encoder fault
    (a build whose mp4 muxer ignores the flag), which the conformance check must catch."""
    return executable(Path(directory) / "ffmpeg-without-faststart", f"""#!{sys.executable}
import os, sys
args = [a.replace("+faststart", "") if "+faststart" in a else a for a in sys.argv[1:]]
os.execv({TEST_FFMPEG!r}, [{TEST_FFMPEG!r}, *args])
""")


@pytest.mark.once        # the tool's check of a damaged output: bookkeeping
def test_output_of_a_failed_conformance_check_is_not_kept(library, platforms, tmp_path):
    library.add("women", "18-23", "alpha")
    result = run_doit(*args_for(library, platforms, "platforms=youtube",
                                f"ffmpeg={faulty_ffmpeg(tmp_path)}"))
    assert result.returncode != 0
    assert "output does not conform: moov is not before mdat" in result.stderr
    assert "try another ffmpeg (ffmpeg=PATH)" in result.stderr
    assert not list(exported_videos(library.exports))
    assert leftovers(library.exports) == []
    error = json.loads((library.exports / "women/18-23/alpha/youtube.error.json").read_text())
    assert error["error_type"] == "ConformanceError"


def test_a_variable_rate_encode_over_its_bitrate_is_encoded_again_aiming_lower(library,
                                                                                tmp_path):
    """One frame of noise: x264's average-rate control overshoots a spec whose maxrate is
    above its bitrate; the corrected encode lands within 5 %, and says how it was made."""
    platforms = small_platforms(tmp_path / "vbr", names=("youtube",),
                                youtube={"video.maxrate": 20_000_000,
                                         "video.bufsize": 20_000_000})
    title = library.add("women", "18-23", "noisy")
    make_clip(title / "final.mp4", width=270, height=480, seconds=1 / 30, pattern=NOISE,
              crf=5)
    run_doit(*args_for(library, platforms), check=0)
    video = library.exports / "women/18-23/noisy/youtube.mp4"
    facts = media_facts(video)
    assert facts["video_bitrate"] <= 1.05 * 8_000_000, facts
    argv = read_json(video.with_name("youtube.export.json"))["encode"]["argv"]
    assert int(argv[argv.index("-b:v") + 1]) < 8_000_000, "the recorded argv is the corrected one"


ALL_FOUR = ("youtube", "tiktok", "instagram", "facebook")


def modes(exports, title):
    return {p.name.split(".")[0]: read_json(p)["encode"]["mode"]
            for p in (exports / title).glob("*.export.json")}


@pytest.mark.once        # which platforms share an encode: the plan's bookkeeping
def test_four_platforms_run_exactly_two_encodes(library, tmp_path):
    platforms = small_platforms(tmp_path / "four", names=ALL_FOUR)
    library.add("women", "18-23", "alpha")
    library.add("women", "18-23", "beta")       # byte-identical source: shares too
    run_doit("-n", "2", *args_for(library, platforms), check=0)
    title = library.exports / "women/18-23/alpha"
    sidecars = [read_json(p) for p in library.exports.rglob("*.export.json")]
    encodes = {s["encode"]["shared_key"]: s["encode"]["argv"] for s in sidecars}
    assert len(encodes) == 2, "8 Mb/s (YouTube, Instagram, Facebook) and 6 Mb/s (TikTok)"
    processes = {tuple(argv) for argv in encodes.values()}
    assert len(processes) == 1 and list(processes)[0].count("libx264") == 2, \
        "both encodes come from one ffmpeg process (one decode)"
    assert sorted(s["encode"]["mode"] for s in sidecars) == ["encode"] + ["shared"] * 7
    inodes = {name: (title / f"{name}.mp4").stat().st_ino
              for name in ("youtube", "instagram", "facebook")}
    assert len(set(inodes.values())) == 3, "the three 8 Mb/s exports are files of their own"
    shared = {name: hashlib.sha256((title / f"{name}.mp4").read_bytes()).hexdigest()
              for name in ("youtube", "instagram", "facebook")}
    assert len(set(shared.values())) == 1, "with the bytes of one encode"
    for name in ALL_FOUR:
        assert_conforms(title / f"{name}.mp4", load_yaml(platforms / f"{name}.yaml"), 1.0)

    # deleting one export breaks none of the others, and it comes back shared
    (title / "instagram.mp4").unlink()
    rerun = run_doit(*args_for(library, platforms), check=0)
    assert executed_tasks(rerun.stdout) == ["instagram:alpha"]
    assert modes(library.exports, "women/18-23/alpha")["instagram"] == "shared"
    assert (hashlib.sha256((title / "instagram.mp4").read_bytes()).hexdigest()
            == shared["youtube"]), "restored from a sibling's bytes, not encoded again"

    run_doit("clean", *args_for(library, platforms), check=0)
    assert not (library.exports / ".shared").exists()


def test_a_conforming_source_is_remuxed_not_encoded(library, tmp_path):
    platforms = small_platforms(tmp_path / "four", names=ALL_FOUR)
    library.add("women", "18-23", "first")
    run_doit(*args_for(library, platforms, "platforms=youtube"), check=0)
    made = library.exports / "women/18-23/first/youtube.mp4"
    conforming = library.add("women", "18-23", "conforming")
    shutil.copy(made, conforming / "final.mp4")      # already a conforming 270x480 export
    run_doit(*args_for(library, platforms, "segment=women"), check=0)
    found = modes(library.exports, "women/18-23/conforming")
    assert sorted(found[name] for name in ("youtube", "instagram", "facebook")) == [
        "remux", "shared", "shared"]
    assert found["tiktok"] == "encode"          # 8 Mb/s is not TikTok's 6 Mb/s
    for name in ALL_FOUR:
        assert_conforms(library.exports / f"women/18-23/conforming/{name}.mp4",
                        load_yaml(platforms / f"{name}.yaml"), 1.0)


@pytest.mark.once        # the gallery's cache: bookkeeping
def test_gallery_follows_a_changed_caption_without_reading_unchanged_exports(library, platforms):
    library.add("women", "18-23", "alpha", metadata={"title": "First caption"})
    library.add("women", "18-23", "beta", metadata={"title": "Beta caption"})
    args = args_for(library, platforms, "platforms=youtube")
    run_doit(*args, check=0)
    page = library.exports / "index.html"
    assert "First caption" in page.read_text() and "Beta caption" in page.read_text()
    (library.root / "women/18-23/alpha/metadata.json").write_text('{"title": "Second caption"}')
    run_doit(*args, check=0)
    text = page.read_text()
    assert "Second caption" in text and "First caption" not in text
    assert "Beta caption" in text          # from the cache: beta's task did not run


@pytest.mark.once        # the shared-encode cache: bookkeeping
def test_an_encode_made_alongside_is_kept_for_a_platform_run_later(library, tmp_path):
    """`doit youtube` encodes TikTok's bytes in the same ffmpeg process; `doit tiktok`
    then shares them instead of encoding again (they are not pruned in between)."""
    platforms = small_platforms(tmp_path / "two")
    library.add("women", "18-23", "alpha")
    run_doit("youtube", *args_for(library, platforms), check=0)
    assert not (library.exports / "women/18-23/alpha/tiktok.mp4").exists()
    later = run_doit("tiktok", *args_for(library, platforms), check=0)
    assert executed_tasks(later.stdout) == ["tiktok:alpha"]
    sidecar = read_json(library.exports / "women/18-23/alpha/tiktok.export.json")
    assert sidecar["encode"]["mode"] == "shared"
    assert sidecar["encode"]["made_by"] == "youtube:alpha"
    assert_conforms(library.exports / "women/18-23/alpha/tiktok.mp4",
                    load_yaml(platforms / "tiktok.yaml"), 1.0)
    # once every export has its copy, the cache holds nothing more
    run_doit(*args_for(library, platforms), check=0)
    assert sorted((library.exports / ".shared").glob("*.mp4")) == []
