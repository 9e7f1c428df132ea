"""Shared fixtures: generated clips, a `doit` runner that calls it as a user does, and an
independent probe (MediaInfo via pymediainfo: not libav, which the tool itself probes with)."""

import contextlib
import copy
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pymediainfo import MediaInfo

from exporter.media.ffmpeg_binary import bundled_ffmpeg, check_ffmpeg
from exporter.media.samples import make_clip, make_title

REPO = Path(__file__).resolve().parent.parent
SHIPPED_PLATFORMS = REPO / "platforms"
# superfast is the fastest x264 preset that still produces High profile (ultrafast is
# Constrained Baseline). Tests choose it through the setting, never by editing a spec.
TEST_PRESET = "superfast"
# The ffmpeg under test, named, never found on PATH: REELEXPORT_FFMPEG when the run sets it
# (CI runs the suite once with Debian's), else the one bundled in imageio-ffmpeg. Clips
# are generated with the bundled one either way (exporter.samples), so both runs see the
# same sources.
TEST_FFMPEG = os.environ.get("REELEXPORT_FFMPEG") or bundled_ffmpeg()


def pytest_collection_modifyitems(items):
    """Kill and cluster tests test the tool's process handling, not ffmpeg: run once."""
    for item in items:
        if item.get_closest_marker("faults") or item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.once)


def pytest_report_header(config):
    return f"ffmpeg under test: {TEST_FFMPEG} ({check_ffmpeg(TEST_FFMPEG).version})"


def doit_env(**extra):
    """Environment for a doit subprocess: the venv's bin first, the ffmpeg under test named."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELEXPORT_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    env["REELEXPORT_X264_PRESET"] = TEST_PRESET
    env["REELEXPORT_FFMPEG"] = TEST_FFMPEG
    env.update(extra)
    return env


DOIT = Path(sys.executable).parent / "doit"     # the venv's, whatever PATH says


def run_doit(*args, env=None, check=None, cwd=REPO):
    """Run `doit ARGS` from the repository root (or `cwd`), exactly as a user would type it."""
    result = subprocess.run([str(DOIT), *map(str, args)], cwd=cwd, capture_output=True,
                            text=True, env=env or doit_env(), timeout=600)
    if check is not None:
        assert result.returncode == check, (
            f"doit {' '.join(map(str, args))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    return result


def made_once(tmp_path_factory, name, make):
    """(directory, what `make(directory)` returned): made once per session, by whichever
    xdist worker asks first, the others waiting for it and then sharing it (read only: a
    test that changes a shared tree works on its own copy). A module's exported library
    then costs one run of `doit -n 2`, not one per worker on a core each. `make` returns
    JSON, or a doit run (subprocess.CompletedProcess), or a tuple of them."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if base.name.startswith("popen-gw") else base
    directory = shared / name
    done = directory / ".made.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            done.write_text(json.dumps(as_json(make(directory))))
    return directory, from_json(json.loads(done.read_text()))


@contextlib.contextmanager
def sharing(directory, exclusive=False):
    """Hold a shared tree (made_once) for a test's length: many readers side by side, or
    one test alone (`exclusive`) that runs doit on it or changes it, which no reader then
    sees half done (a flock beside the tree, so across xdist workers)."""
    with open(Path(directory).parent / f"{Path(directory).name}.readers", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def as_json(value):
    if isinstance(value, subprocess.CompletedProcess):
        return {"completed": [value.args, value.returncode, value.stdout, value.stderr]}
    if isinstance(value, tuple):
        return {"tuple": [as_json(item) for item in value]}
    return {"value": value}


def from_json(value):
    if "completed" in value:
        return subprocess.CompletedProcess(*value["completed"])
    if "tuple" in value:
        return tuple(from_json(item) for item in value["tuple"])
    return value["value"]


def executed_tasks(output):
    """Task names doit ran ('.  name'), as opposed to skipped ('-- name')."""
    return sorted(line[3:].strip() for line in output.splitlines() if line.startswith(".  "))


def media_facts(path):
    """What MediaInfo says about a file, in the units the specs use."""
    info = MediaInfo.parse(str(path))
    general, video = info.general_tracks[0], info.video_tracks
    audio = info.audio_tracks
    facts = {"streamable": general.isstreamable == "Yes", "size_bytes": Path(path).stat().st_size}
    if video:
        v = video[0]
        facts.update(video_format=v.format, profile=v.format_profile, width=v.width,
                     height=v.height, frame_rate_mode=v.frame_rate_mode,
                     fps=float(v.frame_rate), video_bitrate=v.bit_rate,
                     chroma=v.chroma_subsampling, bit_depth=v.bit_depth,
                     duration_s=v.duration / 1000, rotation=float(v.rotation or 0),
                     colour=(v.color_primaries, v.transfer_characteristics,
                             v.matrix_coefficients, v.color_range))
    if audio:
        a = audio[0]
        facts.update(audio_format=a.format, channels=a.channel_s, sample_rate=a.sampling_rate)
    return facts


def image_facts(path):
    """Format and size of an image, from MediaInfo."""
    image = MediaInfo.parse(str(path)).image_tracks[0]
    return {"format": image.format, "width": image.width, "height": image.height,
            "size_bytes": Path(path).stat().st_size}


def assert_conforms(path, spec_document, expected_duration_s):
    """Check an output against its platform spec with the independent probe."""
    facts = media_facts(path)
    video, audio, limits = spec_document["video"], spec_document["audio"], spec_document["limits"]
    assert facts["video_format"] == "AVC"
    assert facts["profile"].startswith("High@"), facts["profile"]
    assert (facts["width"], facts["height"]) == (video["width"], video["height"])
    assert facts["frame_rate_mode"] == "CFR" and facts["fps"] == video["fps"]
    assert facts["chroma"] == "4:2:0" and facts["bit_depth"] == 8
    assert facts["rotation"] == 0
    # SDR BT.709, limited range, every tag written (docs/quality.md#colour)
    assert facts["colour"] == ("BT.709", "BT.709", "BT.709", "Limited"), facts["colour"]
    # never more than 5 % over; a constant-rate spec lands at its rate (filler included)
    assert facts["video_bitrate"] <= 1.05 * video["bitrate"], facts
    if video["maxrate"] == video["bitrate"]:
        assert facts["video_bitrate"] >= 0.85 * video["bitrate"], facts
    assert facts["size_bytes"] <= limits["max_size_bytes"]
    assert abs(facts["duration_s"] - expected_duration_s) <= 0.15, facts
    assert facts["audio_format"] == "AAC"
    assert facts["channels"] == audio["channels"] and facts["sample_rate"] == audio["sample_rate"]
    assert facts["streamable"], "moov must come before mdat (+faststart)"
    return facts


# Files of the exports root that are not exports: doit's DB, the one-writer lock, the
# shared-encode cache and the gallery's cache; with renders=s3://..., the bucket's mirror.
BOOKKEEPING = (".doit.db", ".lock", ".shared", ".gallery-cache.json", ".up-to-date.json",
               ".history-index.json", ".platforms-checked.json", ".renders",
               ".history-synced.json", ".view-index.json")


def exported_videos(exports):
    """The {platform}.mp4 files of the exports tree (not the shared-encode cache)."""
    return sorted(p for p in Path(exports).rglob("*.mp4")
                  if ".shared" not in p.parts and ".renders" not in p.parts)


def leftovers(exports):
    """Temporary or hidden files that a finished run should not leave behind."""
    return sorted(p for p in Path(exports).rglob("*")
                  if (p.name.startswith(".") and p.name not in BOOKKEEPING
                      and p.relative_to(exports).parts[0] != ".renders")  # the bucket's mirror
                  or p.name.endswith(".tmp"))


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_yaml(path):
    import yaml
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def set_field(document, dotted, value):
    """Set 'video.bitrate'-style fields of a spec document; None deletes the field."""
    *parents, key = dotted.split(".")
    node = document
    for parent in parents:
        node = node[parent]
    if value is None:
        del node[key]
    else:
        node[key] = value


def probe_of(**changes):
    """A Probe of a conforming 1080x1920 YouTube export, with `changes` applied."""
    from exporter.media.probe import Probe
    facts = dict(format_name="mov,mp4,m4a,3gp,3g2,mj2", size_bytes=3_100_000, duration_s=3.0,
                 video_codec="h264", profile="High", pix_fmt="yuv420p", width=1080,
                 height=1920, rotation=0, fps=30.0, video_bitrate=8_000_000, has_audio=True,
                 audio_codec="aac", audio_channels=2, audio_sample_rate=48000,
                 audio_bitrate=128_000, color_primaries="bt709", color_trc="bt709",
                 colorspace="bt709", color_range="tv")
    facts.update(changes)
    return Probe(**facts)


def executable(path, text):
    """`path` written with `text` (a script with its #! line) and made executable: the
    wrapper ffmpegs the tests give as REELEXPORT_FFMPEG or ffmpeg=."""
    path = Path(path)
    path.write_text(text)
    path.chmod(0o755)
    return path


# An ffmpeg that logs each command line (one JSON list a line) and runs the real one.
LOGGING_FFMPEG = """#!{python}
import json, subprocess, sys
with open({log!r}, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(subprocess.call([{real!r}, *sys.argv[1:]]))
"""


def logging_ffmpeg(directory):
    """(an ffmpeg to give as REELEXPORT_FFMPEG, a function returning the argv of each run)."""
    log = Path(directory, "ffmpeg.log")
    wrapper = executable(Path(directory, "ffmpeg-logging"), LOGGING_FFMPEG.format(
        python=sys.executable, log=str(log), real=TEST_FFMPEG))

    def runs():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return wrapper, runs


# An ffmpeg whose encodes read their input at `rate` times its own rate (-readrate; 1 is
# -re): an encode lasts its clip's time over the rate, on a fraction of a core, so a test
# can act mid-encode (kill, interrupt, replace the source) without the CPU a slow-to-encode
# clip would cost. The encode's output appears once x264's delay has passed (~0.5 s of
# frames): a test that waits for the output's temporary wants a rate under 1.
REALTIME_FFMPEG = """#!/bin/sh
case "$*" in *libx264*) exec {real} -readrate {rate} "$@";; esac
exec {real} "$@"
"""


def realtime_ffmpeg(directory, rate=1.0):
    """An ffmpeg (REALTIME_FFMPEG, written in `directory`) to give as REELEXPORT_FFMPEG."""
    return executable(Path(directory) / "ffmpeg-realtime",
                      REALTIME_FFMPEG.format(real=TEST_FFMPEG, rate=rate))


def small_platforms(directory, names=("youtube", "tiktok"), minimum=False, **edits):
    """Copies of shipped specs at a small frame size (fast encodes), plus `edits` per name.
    Without a minimum duration unless `minimum`: the pipeline's tests use 1 s clips; the
    minimum (Instagram's and Facebook's 3 s) is tested in test_acceptance and the matrix.

    This is what a user does to add a platform: drop a YAML file in a platforms folder.
    """
    import yaml
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        document = load_yaml(SHIPPED_PLATFORMS / f"{name}.yaml")
        document["video"].update(width=270, height=480)
        if not minimum:
            document.get("limits", {}).pop("min_duration", None)
        for dotted, value in edits.get(name, {}).items():
            set_field(document, dotted, value)
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def clip_cache(tmp_path_factory):
    """Generated clips by shape, made once per session and copied where needed."""
    root = tmp_path_factory.mktemp("clips")
    cache = {}

    def clip(name, **options):
        if name not in cache:
            cache[name] = make_clip(root / f"{name}.mp4", **options)
        return cache[name]
    return clip


def library_at(directory, clip_cache):
    """A fresh renders root in `directory`: library.add(segment, age, id, shape) adds a title."""
    renders = Path(directory) / "renders"
    shapes = {
        "vertical": dict(width=360, height=640, seconds=1, fps=30, audio=True),
        "landscape": dict(width=640, height=360, seconds=1, fps=25, audio=True),
        "silent": dict(width=360, height=360, seconds=1, fps=30, audio=False),
        "two-seconds": dict(width=360, height=640, seconds=2, fps=30, audio=True),
    }

    class Library:
        root = renders
        exports = Path(directory) / "exports"

        def add(self, segment, age, title_id, shape="vertical", metadata=None):
            directory = renders / segment / age / title_id
            directory.mkdir(parents=True, exist_ok=True)
            shutil.copy(clip_cache(shape, **shapes[shape]), directory / "final.mp4")
            document = metadata or {"title": f"Title {title_id}", "hashtags": ["test"]}
            (directory / "metadata.json").write_text(json.dumps(document), encoding="utf-8")
            return directory

        def args(self, *extra):
            return [f"renders={renders}", f"exports={self.exports}", *extra]

    return Library()


@pytest.fixture
def library(tmp_path, clip_cache):
    """A function adding titles to a fresh renders root: library.add(segment, age, id, shape)."""
    return library_at(tmp_path, clip_cache)


@pytest.fixture(scope="session")
def restored_library(tmp_path_factory, clip_cache):
    """restored_library(name, make): the library `make(library)` exports, made once per
    xdist worker at a path of its own and restored from a copy for each later test, so
    each test starts from the same files without the encodes. `make` returns the
    attributes to set on the library and leaves every export up to date. A copy has new
    inodes and ctimes, so one run proves it again before the test (no task runs; the stamp
    is written anew): a test of what doit's dependency records hold for an unchanged file
    (test_content_truth) makes its own library."""
    made = {}       # name -> the attributes `make` returned, in this worker

    def restored(name, make):
        directory = tmp_path_factory.getbasetemp() / name
        pristine = directory.with_name(f"{name}.pristine")
        copied = name in made
        if copied:
            shutil.rmtree(directory)
            shutil.copytree(pristine, directory, symlinks=True)
        else:
            directory.mkdir()
            made[name] = make(library_at(directory, clip_cache))
            shutil.copytree(directory, pristine, symlinks=True)
        library = library_at(directory, clip_cache)
        for key, value in made[name].items():
            setattr(library, key, copy.copy(value))     # a test's edit stays its own
        if copied:
            again = run_doit(*library.all_args, check=0)
            assert not executed_tasks(again.stdout), again.stdout
        return library
    return restored


__all__ = ["make_title"]


# ---- a real S3 API on localhost: moto's server --------------------------------------------

S3_BUCKET = "media"
ALLOW_S3 = ('{"Version": "2012-10-17", "Statement": '
            '[{"Effect": "Allow", "Action": ["s3:*", "iam:*"], "Resource": "*"}]}')


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]



def aws_env(moto):
    """The AWS_* variables of the `moto` fixture: what a process needs to reach its server."""
    return {k: v for k, v in moto.items() if k.startswith("AWS_")}

@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """moto's server checking credentials from its fourth request on: the first three (not
    checked) make an IAM user allowed s3:* and its access key; the bucket is made with it."""
    import boto3  # noqa: PLC0415  (only the tests of buckets pay for it)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                   "-p", str(port)], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:        # the dashboard's data: not an AWS action, not counted
                urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto's server did not start: {log.read_text()}")
                time.sleep(0.1)
        anyone = {"endpoint_url": endpoint, "region_name": "us-east-1",
                  "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **anyone)
        iam.create_user(UserName="exporter")
        iam.put_user_policy(UserName="exporter", PolicyName="s3", PolicyDocument=ALLOW_S3)
        key = iam.create_access_key(UserName="exporter")["AccessKey"]
        environ = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                   "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                   "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id=key["AccessKeyId"],
                     aws_secret_access_key=key["SecretAccessKey"]).create_bucket(Bucket=S3_BUCKET)
        environ["MOTO_LOG"] = str(log)    # its access log: one line per request
        yield environ
    finally:
        server.terminate()
        server.wait(timeout=10)
