"""Shared encodes: one encode per (source bytes, effective encode settings), copied into place.

Covers and posters are shared the same way, keyed by what they are made from.

YouTube, Instagram and Facebook ask for the same bytes from a source under 60 s; two titles
may have byte-identical sources. The cache lives in `{exports}/.shared/{key}.mp4`, each
entry with a record naming its sha256; each export's `{platform}.mp4` is a file of its own
with the entry's bytes (a reflink where the filesystem has them, else a copy: never a hard
link, so a write in place to one export cannot change another). An entry whose bytes are no
longer its record's is never shared: it is removed and made again. After a run, the entries
no export still waits for are pruned; `doit clean` removes the cache.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.model import layout
from exporter.model.errors import CacheChanged
from exporter.model.files import (
    clone_file,
    publish,
    read_json,
    sha256_file,
    write_json_atomic,
)
from exporter.model.spec import digest

if TYPE_CHECKING:
    from exporter.media.plan import EncodePlan

CACHE_DIR = layout.SHARED_DIR


def share_key(source_sha256: str, plan: EncodePlan, encode_settings: dict[str, Any]) -> str:
    """What the bytes of an encode depend on, and nothing else.

    The platform's limits only matter through the duration they cut to and the keyframe
    grid they choose for the clip; its name, metadata rules and cover settings do not enter.
    """
    effective = {k: v for k, v in encode_settings.items() if k != "limits"}
    padded = {"padded_from_s": plan.padded_from_s} if plan.padded_from_s is not None else {}
    if plan.gop is not None and plan.gop != effective.get("video", {}).get("gop"):
        padded["gop"] = plan.gop        # the limits chose another grid for this clip
    return digest({"source_sha256": source_sha256, "mode": plan.mode,
                   "duration_s": round(plan.duration_s, 3), **padded,
                   "settings": effective if plan.mode == "encode" else
                   {"ffmpeg_version": encode_settings["ffmpeg_version"],
                    "encoder_version": encode_settings["encoder_version"]}})


class SharedCache:
    """The shared encodes of one exports tree."""

    def __init__(self, exports_root, cluster_locks: bool = False):
        self.root = Path(exports_root) / CACHE_DIR
        # on a Dask cluster: the scheduler's locks, not file locks a network filesystem
        # may not honour
        self.cluster_locks = cluster_locks

    def path(self, key: str, suffix: str = ".mp4") -> Path:
        return self.root / f"{key}{suffix}"

    def video(self, key: str) -> Path:
        return self.path(key)

    def samples(self, key: str) -> Path:
        """Where an encode of `key` keeps its content check's reference frames (a
        temporary: never a cache entry)."""
        return self.path(key, ".samples.mkv")

    def packets(self, key: str) -> Path:
        """Where an encode of `key` writes x264's video packets beside the MP4, for the
        content check to prove the MP4 holds them (a temporary: never a cache entry)."""
        return self.path(key, ".packets.nut")

    def record(self, key: str) -> dict[str, Any] | None:
        """What made the cached file (argv, the task that encoded it), or None."""
        return read_json(self.root / f"{key}.json")

    def has(self, key: str, suffix: str = ".mp4") -> bool:
        return self.path(key, suffix).exists() and self.record(key) is not None

    @contextmanager
    def locked(self, keys: Iterable[str]) -> Iterator[None]:
        """Hold `keys` while encoding them: a parallel export of the same bytes waits, then
        shares. Taken in sorted order, so two exports wanting overlapping keys cannot deadlock."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.cluster_locks:
            with cluster_locked(keys):
                yield
            return
        fds = []
        try:
            for key in sorted(set(keys)):
                fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                fds.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            for fd in fds:
                os.close(fd)

    def store(self, key: str, temp: Path, record: dict[str, Any], suffix: str = ".mp4") -> None:
        """Publish a verified file under `key`, with its record and sha256 (written last)."""
        record = {**record, "sha256": sha256_file(temp)}
        publish(temp, self.path(key, suffix))
        write_json_atomic(self.root / f"{key}.json", record)

    def usable(self, key: str, suffix: str = ".mp4") -> bool:
        """True when the entry exists and its bytes are its record's; an entry changed since
        it was stored (a write in place, a truncation) is removed, so it is made again."""
        if not self.has(key, suffix):
            return False
        if sha256_file(self.path(key, suffix)) == (self.record(key) or {}).get("sha256"):
            return True
        self.remove(key, suffix)
        return False

    def remove(self, key: str, suffix: str = ".mp4") -> None:
        for path in (self.path(key, suffix), self.root / f"{key}.json"):
            path.unlink(missing_ok=True)

    def copy_to(self, key: str, path: Path, suffix: str = ".mp4") -> str:
        """Make `path` (a temporary name) a file of its own holding the cached bytes (a
        reflink where the filesystem has them, else a copy) and return its sha256; the
        copy is checked against the entry's record (EncodeError if it differs). The caller
        verifies it and renames it into place."""
        path.unlink(missing_ok=True)
        clone_file(self.path(key, suffix), path)
        copied = sha256_file(path)
        if copied != (self.record(key) or {}).get("sha256"):
            self.remove(key, suffix)
            raise CacheChanged(f"the shared encode {key[:12]} changed while it was copied; "
                               "it is made again")
        return copied

    def prune(self,
              still_wanted: Callable[[dict[str, Any]], bool] = lambda record: False) -> int:
        """Drop entries unless `still_wanted(record)` (an export not yet made from it), and
        temporaries of encodes a killed run left (called when no encode is running). Every
        export holds its own bytes, so an entry is only worth its space until then."""
        if not self.root.is_dir():
            return 0
        for stale in self.root.rglob(".*.tmp"):     # loudness/ measurements too
            stale.unlink(missing_ok=True)
        removed = 0
        for cached in [*self.root.glob("*.mp4"), *self.root.glob("*.jpg")]:
            if not still_wanted(self.record_of(cached)):
                for path in (cached, cached.with_suffix(".json"), cached.with_suffix(".lock")):
                    path.unlink(missing_ok=True)
                removed += 1
        return removed

    def record_of(self, cached: Path) -> dict[str, Any]:
        return read_json(cached.with_suffix(".json")) or {}

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def cluster_locked(keys: Iterable[str]) -> Iterator[None]:
    """Hold `keys` cluster-wide (distributed.Lock, held by the scheduler), sorted."""
    from distributed import Lock  # noqa: PLC0415  loaded already on a Dask worker
    locks = []
    try:
        for key in sorted(set(keys)):
            lock = Lock(f"reelexport-{key}")
            lock.acquire()
            locks.append(lock)
        yield
    finally:
        for lock in reversed(locks):
            lock.release()
