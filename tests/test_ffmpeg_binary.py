"""Which ffmpeg runs: the bundled one by default, another only when named, refused at load
when it is too old or lacks libx264."""

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import TEST_FFMPEG, doit_env, executable, run_doit, small_platforms

from exporter.media.ffmpeg_binary import (
    bundled_ffmpeg,
    check_ffmpeg,
    choose_ffmpeg,
    ffmpeg_problem,
    libavcodec_version,
)
from exporter.model.settings import resolve_settings

DEBIAN_5_1 = """ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 the FFmpeg developers
configuration: --prefix=/usr --enable-gpl --enable-libx264 --enable-shared
libavutil      57. 28.100 / 57. 28.100
libavcodec     59. 37.100 / 59. 37.100
"""
UBUNTU_4_4 = DEBIAN_5_1.replace("5.1.9-0+deb12u1", "4.4.2-0ubuntu0.22.04.1").replace(
    "59. 37.100", "58.134.100")
NO_X264 = DEBIAN_5_1.replace("--enable-libx264 ", "")


def test_the_real_ffmpegs_pass():
    for path in {bundled_ffmpeg(), TEST_FFMPEG}:
        assert check_ffmpeg(path).version.startswith("ffmpeg version")


def test_version_is_read_from_libavcodec_not_the_release_name():
    assert libavcodec_version(DEBIAN_5_1) == (59, 37)
    assert libavcodec_version("ffmpeg version N-112345-gabc\nlibavcodec     61. 19.100\n") == (61, 19)
    assert ffmpeg_problem(DEBIAN_5_1) is None


@pytest.mark.parametrize("text, cause", [
    (UBUNTU_4_4, "'ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2026 the FFmpeg "
                 "developers' (libavcodec 58.134) is older than ffmpeg 5.1"),
    (NO_X264, "is built without libx264 (no --enable-libx264)"),
    ("ffmpeg version x\n", "does not say its libavcodec version"),
])
def test_an_unusable_ffmpeg_has_a_cause(text, cause):
    assert cause in ffmpeg_problem(text)


def test_the_default_is_the_bundled_ffmpeg_whatever_path_holds(tmp_path):
    assert choose_ffmpeg(None) == bundled_ffmpeg()
    settings = resolve_settings(lambda name, default: None, environ={"PATH": "/usr/bin"})
    assert settings.ffmpeg is None
    named = resolve_settings(lambda name, default: "/opt/ff" if name == "ffmpeg" else None,
                             environ={"REELEXPORT_FFMPEG": "/env/ff"})
    assert named.ffmpeg == "/opt/ff"       # the doit var wins over the environment


def fake_ffmpeg(directory, version_text):
    """A binary that only answers -version (as an old or libx264-less build would)."""
    return executable(Path(directory) / "ffmpeg",
                      f"#!{sys.executable}\nimport sys\nsys.stdout.write({version_text!r})\n")


@pytest.mark.parametrize("text, cause", [(UBUNTU_4_4, "is older than ffmpeg 5.1"),
                                         (NO_X264, "is built without libx264")])
def test_an_unusable_ffmpeg_is_refused_at_load_in_one_line(library, tmp_path, text, cause):
    library.add("women", "18-23", "alpha")
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    ffmpeg = fake_ffmpeg(tmp_path, text)
    result = run_doit(*library.args(f"platforms_dir={platforms}", f"ffmpeg={ffmpeg}"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: ffmpeg {ffmpeg} cannot be used: ")
    assert cause in lines[0] and "REELEXPORT_FFMPEG" in lines[0]
    assert not library.exports.exists() or not any(library.exports.rglob("*.mp4"))


def test_a_path_ffmpeg_is_never_picked(library, tmp_path):
    """An ffmpeg first on PATH that cannot run does not matter: the bundled one is used."""
    library.add("women", "18-23", "alpha")
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    fake_ffmpeg(tmp_path, UBUNTU_4_4)
    env = doit_env(PATH=f"{tmp_path}{os.pathsep}{doit_env()['PATH']}")
    del env["REELEXPORT_FFMPEG"]
    run_doit(*library.args(f"platforms_dir={platforms}"), env=env, check=0)
    sidecar = library.exports / "women/18-23/alpha/youtube.export.json"
    encode = json.loads(sidecar.read_text())["encode"]
    assert encode["ffmpeg"] == bundled_ffmpeg()
    assert encode["ffmpeg_version"] == check_ffmpeg(bundled_ffmpeg()).version
    status = run_doit("status", "--json", *library.args(f"platforms_dir={platforms}"),
                      env=env, check=0)
    assert json.loads(status.stdout)["made_with"] == {check_ffmpeg(bundled_ffmpeg()).version: 1}


def test_a_program_that_prints_nothing_is_not_an_ffmpeg():
    """`ffmpeg=/bin/true` exits 0 and says nothing: not "does not run: exit status 0"."""
    from exporter.model.errors import EncodeError
    with pytest.raises(EncodeError) as refused:
        check_ffmpeg("/bin/true")
    assert str(refused.value) == ("ffmpeg /bin/true is not an ffmpeg: `-version` printed "
                                  "nothing (ffmpeg= names the ffmpeg binary)")
