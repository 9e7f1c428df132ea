"""Where things are and what is selected: doit command-line vars, then environment, then defaults."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from exporter.model import layout

DEFAULTS = {
    "renders": "data/renders",
    "exports": "data/exports",
    "platforms_dir": "platforms",
    "attempts": "3",
    "backoff": "2",
}
# Every doit var the settings read (`doit renders=... segment=...`): a command that starts
# runs of its own (doit watch) passes them on.
VAR_NAMES = ("renders", "exports", "platforms_dir", "segment", "age", "platforms", "preset",
             "ffmpeg", "attempts", "backoff", "retry", "cluster")
ENV_NAMES = {
    "renders": "REELEXPORT_RENDERS",
    "exports": "REELEXPORT_EXPORTS",
    "platforms_dir": "REELEXPORT_PLATFORMS",
    "preset": "REELEXPORT_X264_PRESET",
    "ffmpeg": "REELEXPORT_FFMPEG",
    "attempts": "REELEXPORT_ATTEMPTS",
    "backoff": "REELEXPORT_BACKOFF_S",
    "cluster": "REELEXPORT_CLUSTER",
}


@dataclass(frozen=True)
class Settings:
    renders: Path
    exports: Path
    platforms_dir: Path
    segments: tuple = ()
    ages: tuple = ()
    platforms: tuple = ()
    preset: str | None = None   # overrides every spec's x264 preset (tests use superfast)
    ffmpeg: str | None = None   # the ffmpeg binary; None: the one bundled in imageio-ffmpeg
    attempts: int = 3           # tries per export when failures are transient
    backoff_s: float = 2.0      # wait before the 2nd try; doubles for each further try
    retry_failed: bool = False  # retry=failed: try again exports that failed on these inputs
    cluster: str | None = None  # cluster=tcp://HOST:8786: the media work runs on Dask workers

    @property
    def dep_file(self) -> Path:
        """doit's dependency DB lives in the exports root, not the current directory."""
        return self.exports / layout.DEP_DB

    @property
    def registry_file(self) -> Path:
        return self.exports / layout.REGISTRY


def split_list(value: str | None) -> tuple[str, ...]:
    """'youtube, tiktok' -> ('youtube', 'tiktok'); empty or None -> ()."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def resolve_settings(get_var: Callable[[str, str | None], str | None],
                     environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from doit vars (`get_var(name, default)`) and the environment."""
    environ = os.environ if environ is None else environ

    def pick(name: str) -> str | None:
        value = get_var(name, None)
        if value is None and name in ENV_NAMES:
            value = environ.get(ENV_NAMES[name])
        return value if value is not None else DEFAULTS.get(name)

    return Settings(
        renders=Path(pick("renders")),
        exports=Path(pick("exports")),
        platforms_dir=Path(pick("platforms_dir")),
        segments=split_list(pick("segment")),
        ages=split_list(pick("age")),
        platforms=split_list(pick("platforms")),
        preset=pick("preset") or None,
        ffmpeg=pick("ffmpeg") or None,
        attempts=max(1, int(pick("attempts"))),
        backoff_s=max(0.0, float(pick("backoff"))),
        retry_failed=pick("retry") == "failed",
        cluster=pick("cluster") or None,
    )
