"""Generate small synthetic renders: the bundled sample library and the tests' fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exporter.media.ffmpeg import QUIET, run_ffmpeg
from exporter.media.ffmpeg_binary import bundled_ffmpeg

# (segment, age, title_id, clip options, metadata)
SAMPLE_LIBRARY = [
    ("women", "18-23", "sunset-vertical",
     dict(width=720, height=1280, seconds=3, fps=30, audio=True),
     {"title": "Sunset, vertical", "description": "A vertical render with sound.",
      "hashtags": ["sunset", "#Golden Hour"], "language": "en"}),
    ("women", "24-30", "city-landscape",
     dict(width=1280, height=720, seconds=3, fps=25, audio=True),
     {"title": "City, landscape", "description": "A 16:9 render at 25 fps.",
      "hashtags": ["city"], "language": "en"}),
    ("men", "18-23", "silent-square",
     dict(width=720, height=720, seconds=3, fps=30, audio=False),
     {"title": "Square without sound", "hashtags": ["quiet"], "language": "en"}),
    ("men", "24-30", "phone-rotated",
     dict(width=1280, height=720, seconds=3, fps=30, audio=True, rotation=90),
     {"title": "Phone clip stored sideways", "description": "Rotation in the display matrix.",
      "hashtags": ["phone"], "language": "en"}),
]


# Full-frame noise, new every frame: the hardest content for a rate control.
NOISE = "noise"


def clip_argv(ffmpeg: str, path: Path | str, width: int, height: int, seconds: float,
              fps: float = 30, audio: bool = True, rotation: int = 0,
              pattern: str = "testsrc2", crf: int = 32, pix_fmt: str = "yuv420p",
              codec: str = "libx264", volume_db: float = 0.0,
              silence: bool = False) -> list[str]:
    """argv for a synthetic clip; `rotation` is stored as display-matrix side data.

    `pattern` is a lavfi source ('testsrc2', 'color=c=white') or NOISE. The audio is a
    440 Hz tone (about -22 LUFS) turned by `volume_db`, or digital silence (`silence`).
    """
    source, video_filter = pattern, []
    if pattern == NOISE:
        source, video_filter = "color=c=gray", ["-vf", "noise=alls=100:allf=t+u"]
    separator = ":" if "=" in source else "="
    argv = [ffmpeg, *QUIET, "-f", "lavfi",
            "-i", f"{source}{separator}size={width}x{height}:rate={fps}:duration={seconds}"]
    if audio:
        tone = (f"anullsrc=channel_layout=stereo:sample_rate=44100:duration={seconds}"
                if silence else f"sine=frequency=440:sample_rate=44100:duration={seconds}"
                + (f",volume={volume_db}dB" if volume_db else ""))
        argv += ["-f", "lavfi", "-i", tone]
    argv += [*video_filter, "-c:v", codec]
    if codec.startswith("libx26"):
        argv += ["-preset", "veryfast", "-crf", str(crf)]
    argv += ["-pix_fmt", pix_fmt]
    if audio:
        argv += ["-c:a", "aac", "-b:a", "64k"]
    if rotation:
        argv += ["-metadata:s:v:0", f"rotate={rotation}"]
    return argv + ["-t", str(seconds), str(path)]


def make_clip(path: Path | str, width: int, height: int, seconds: float, fps: float = 30,
              audio: bool = True, rotation: int = 0, **options: Any) -> Path:
    """Write a synthetic clip to `path` (rotation via a stream-copy pass that sets it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg = bundled_ffmpeg()
    if not rotation:
        run_ffmpeg(clip_argv(ffmpeg, path, width, height, seconds, fps, audio, **options))
        return path
    plain = path.with_name(f".{path.name}.plain.mp4")
    run_ffmpeg(clip_argv(ffmpeg, plain, width, height, seconds, fps, audio, **options))
    run_ffmpeg([ffmpeg, *QUIET,
                "-display_rotation", str(rotation), "-i", str(plain), "-c", "copy", str(path)])
    plain.unlink()
    return path


def make_title(renders_root: Path | str, segment: str, age: str, title_id: str,
               clip: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """One render directory with final.mp4 and metadata.json."""
    directory = Path(renders_root) / segment / age / title_id
    make_clip(directory / "final.mp4", **clip)
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n",
                                             encoding="utf-8")
    return directory


def make_sample_library(renders_root: Path | str) -> None:
    for segment, age, title_id, clip, metadata in SAMPLE_LIBRARY:
        make_title(renders_root, segment, age, title_id, clip, metadata)


def make_audio_only(path: Path | str, seconds: float = 1) -> Path:
    """An .mp4 with a sine tone and no video stream (a bad source for tests)."""
    run_ffmpeg([bundled_ffmpeg(), *QUIET,
                "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                "-c:a", "aac", str(path)])
    return Path(path)
