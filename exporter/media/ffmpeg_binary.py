"""Which ffmpeg runs the encodes, and whether it can.

The default is the binary shipped in the imageio-ffmpeg wheel, never whatever `PATH` holds:
the same inputs then give the same bytes (and the same shared-encode keys) on every
machine. `ffmpeg=PATH` or `REELEXPORT_FFMPEG` choose another; it must be ffmpeg 5.1 or
newer, built with libx264, else the run is refused at load with one line saying why.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from exporter.model.errors import EncodeError

# ffmpeg 5.1 ships libavcodec 59.37: older releases lack options the encode relies on
# (-fps_mode, x264's nal-hrd with filler as used here).
MIN_RELEASE = "5.1"
MIN_LIBAVCODEC = (59, 37)
CHOOSE_ANOTHER = "set ffmpeg=PATH or REELEXPORT_FFMPEG to another, or unset it for the bundled one"


@dataclass(frozen=True)
class FFmpeg:
    """A checked ffmpeg binary: its path and the first line of `ffmpeg -version`."""

    path: str
    version: str


@functools.cache
def bundled_ffmpeg() -> str:
    """The ffmpeg binary of the imageio-ffmpeg wheel (a dependency, so always installed).

    Found in the package's binaries/ folder without importing it: its get_ffmpeg_exe()
    imports the package and runs the binary, ~70 ms of every run, and check_ffmpeg runs it
    anyway. A wheel laid out otherwise is asked the usual way.
    """
    package = importlib.util.find_spec("imageio_ffmpeg")
    for location in (package.submodule_search_locations or []) if package else []:
        binaries = sorted(path for path in Path(location, "binaries").glob("ffmpeg-*")
                          if path.is_file() and os.access(path, os.X_OK))
        if len(binaries) == 1:
            return str(binaries[0])
    import imageio_ffmpeg  # the layout above not found: imported only then
    return imageio_ffmpeg.get_ffmpeg_exe()


def choose_ffmpeg(configured: str | None = None) -> str:
    """The ffmpeg to use: `configured` (the var or the environment), else the bundled one."""
    return configured or bundled_ffmpeg()


def libavcodec_version(version_output: str) -> tuple[int, int] | None:
    """(major, minor) of libavcodec from `ffmpeg -version`, or None if it does not say.

    The library version, not the release name: git and distribution builds name their
    release in many ways ('n9.0.2-17-g2a5', '5.1.9-0+deb12u1', 'N-112345-gabc').
    """
    match = re.search(r"^libavcodec\s+(\d+)\.\s*(\d+)\.", version_output, re.MULTILINE)
    return (int(match.group(1)), int(match.group(2))) if match else None


def ffmpeg_problem(version_output: str) -> str | None:
    """Why this ffmpeg cannot make the exports (None: it can), from its `-version` text. Pure."""
    codec = libavcodec_version(version_output)
    first = version_output.splitlines()[0] if version_output.strip() else "no version line"
    if codec is None:
        return f"'{first}' does not say its libavcodec version"
    if codec < MIN_LIBAVCODEC:
        return (f"'{first}' (libavcodec {codec[0]}.{codec[1]}) is older than ffmpeg "
                f"{MIN_RELEASE}")
    if "--enable-libx264" not in version_output:
        return f"'{first}' is built without libx264 (no --enable-libx264)"
    return None


@functools.cache
def check_ffmpeg(path: str) -> FFmpeg:
    """The checked FFmpeg at `path`; EncodeError naming the binary and the cause otherwise."""
    try:
        result = subprocess.run([path, "-hide_banner", "-version"], capture_output=True,
                                text=True, errors="replace", stdin=subprocess.DEVNULL,
                                check=False, timeout=60)
    except OSError as error:
        raise EncodeError(f"ffmpeg {path} does not run: {error.strerror}") from None
    except subprocess.TimeoutExpired:
        raise EncodeError(f"ffmpeg {path} does not run: -version took over 60 s") from None
    output = result.stdout
    if result.returncode == 0 and not output.strip():
        raise EncodeError(f"ffmpeg {path} is not an ffmpeg: `-version` printed nothing "
                          "(ffmpeg= names the ffmpeg binary)")
    if result.returncode != 0 or not output.strip():
        raise EncodeError(f"ffmpeg {path} does not run: exit status {result.returncode} "
                          f"{result.stderr.strip()[:200]}".rstrip())
    problem = ffmpeg_problem(output)
    if problem:
        raise EncodeError(f"ffmpeg {path} cannot be used: {problem}; {CHOOSE_ANOTHER}")
    return FFmpeg(path=path, version=output.splitlines()[0])
