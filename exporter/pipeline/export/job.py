"""One export to make: the (title, platform) job, its files, and the keys that say when
it must be made again."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from exporter.media.credentials import Credentials
from exporter.media.ffmpeg_binary import check_ffmpeg
from exporter.media.shared import SharedCache
from exporter.metadata import FORMAT_VERSION as METADATA_FORMAT_VERSION
from exporter.model.files import sha256_or_none
from exporter.model.layout import task_name
from exporter.model.records import TARGET_KINDS, export_file_names, identity
from exporter.model.requests import REQUEST_VERSION
from exporter.model.sources import Title
from exporter.model.spec import Spec, digest
from exporter.pipeline.placement.places import HERE, Here, OnDask
from exporter.storage.exports import ExportsBucket, ExportsDirectory
from exporter.storage.renders import RendersBucket, RendersDirectory

__all__ = ["ExportJob", "RetryPolicy", "current_inputs", "ffmpeg_version", "sha256_or_none",
           "up_to_date_key"]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3           # tries per run when failures are transient
    backoff_s: float = 2.0      # wait before the second try, doubled for each further one
    retry_failed: bool = False  # try again an export that already failed on these inputs

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before try number `attempt` (2, 3, ...)."""
        return self.backoff_s * 2 ** (attempt - 2)


@dataclass(frozen=True)
class ExportJob:
    """Everything one export needs; picklable, so `doit -n N` and Dask workers can run it.
    Where its bytes live (`renders`, `exports`: exporter/storage) and where its work runs
    (`place`: pipeline/placement) were chosen once, at load."""

    title: Title
    spec: Spec
    renders: RendersDirectory | RendersBucket
    exports: ExportsDirectory | ExportsBucket
    ffmpeg: str
    preset: str | None = None
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())
    siblings: tuple[Spec, ...] = ()  # the other platforms selected, encoded alongside
    place: Here | OnDask = HERE
    # the C2PA signer checked at load (media/credentials.py); None: exports are not signed
    credentials: Credentials | None = None

    @property
    def exports_root(self) -> Path:
        """The local exports tree the export is made in (the store's own, or its staging)."""
        return self.exports.root

    @cached_property
    def task_name(self) -> str:
        return task_name(self.spec.name, self.title.title_id)

    @cached_property
    def out_dir(self) -> Path:
        return self.title.export_dir(self.exports_root)

    @cached_property
    def file_names(self) -> dict[str, str]:
        return export_file_names(self.spec.name)

    def path(self, kind: str) -> Path:
        """The file of `kind` this export writes: video, metadata, sidecar, cover, poster,
        error (model/records.FILE_NAMES)."""
        return self.out_dir / self.file_names[kind]

    @cached_property
    def target_names(self) -> list[str]:
        """The targets as strings: built for 40,000 tasks on every run, so without Paths."""
        out_dir = os.path.join(str(self.exports_root), self.title.key)   # Title.export_dir
        names = self.file_names
        return [f"{out_dir}/{names[kind]}" for kind in TARGET_KINDS]

    @property
    def targets(self) -> list[Path]:
        return [Path(name) for name in self.target_names]

    @property
    def file_order(self) -> list[str]:
        """The names of its targets, the sidecar last: the order they are published in (a
        sidecar in a bucket says its export is whole there)."""
        sidecar = self.file_names["sidecar"]
        return sorted((path.name for path in self.targets), key=lambda name: name == sidecar)

    @property
    def identity(self) -> dict[str, str]:
        title = self.title
        return identity(title.title_id, title.segment, title.age, self.spec.name)

    @property
    def shared_cache(self) -> SharedCache:
        """The exports tree's shared encodes and images, locked cluster-wide on a cluster."""
        return SharedCache(self.exports_root, cluster_locks=self.place.locks_across_machines)

    def encode_settings(self, spec: Spec | None = None) -> dict[str, Any]:
        """What the encoded bytes depend on (besides the source): doit's config_changed value."""
        return {**(spec or self.spec).encode_settings(self.preset),
                "ffmpeg_version": ffmpeg_version(self.ffmpeg)}

    @property
    def up_to_date_key(self) -> str:
        """Digest of the settings whose change makes this export stale (not its files)."""
        return up_to_date_key(self.spec, self.preset, self.ffmpeg, self.credentials)


def ffmpeg_version(ffmpeg: str) -> str:
    """First line of `ffmpeg -version`: part of every export's up-to-date and shared keys."""
    return check_ffmpeg(ffmpeg).version


def up_to_date_key(spec: Spec, preset: str | None, ffmpeg: str,
                   credentials: Credentials | None = None) -> str:
    """The same for every title of a platform: computed once per (spec file, preset, ffmpeg,
    signer). The signer enters only when signing is on: without it, the key is as before."""
    cache_key = (str(spec.path), preset, ffmpeg, credentials)
    if cache_key not in _UP_TO_DATE_KEYS:
        _UP_TO_DATE_KEYS[cache_key] = digest({
            "encode": {**spec.encode_settings(preset), "ffmpeg_version": ffmpeg_version(ffmpeg)},
            "metadata_rules": metadata_rules_key(spec),
            # the floors judge a video, never change its bytes: out of the encode key
            **({"quality": spec.quality} if spec.quality else {}),
            # a new certificate (or algorithm, timestamp authority): every export re-signed
            **({"credentials": signer_key(credentials)} if credentials else {})})
    return _UP_TO_DATE_KEYS[cache_key]


_UP_TO_DATE_KEYS: dict[tuple, str] = {}


def signer_key(credentials: Credentials) -> str:
    """What identifies a signer in the up-to-date keys and an export's inputs."""
    return digest({"fingerprint": credentials.fingerprint, "alg": credentials.alg,
                   "tsa": credentials.tsa})


def metadata_rules_key(spec: Spec) -> str:
    """What the metadata files depend on besides metadata.json: the rules and the formatter."""
    return digest({"rules": spec.metadata, "format_version": METADATA_FORMAT_VERSION,
                   "upload": spec.upload, "request_version": REQUEST_VERSION})


def current_inputs(job: ExportJob, sidecar: dict[str, Any] | None = None
                   ) -> dict[str, str | None]:
    """Content fingerprint of everything the targets are made from (None: file missing).
    The render's as its store tells: a render in a bucket is not downloaded to tell, its
    sha256 is the one `sidecar` recorded while the object is the version recorded."""
    return {
        "source_sha256": job.renders.source_sha256(job.title, sidecar),
        "metadata_sha256": sha256_or_none(job.title.metadata),
        # the cover's input: a failure on a bad thumbnail clears when it is fixed or removed
        "thumbnail_sha256": sha256_or_none(job.title.thumbnail),
        "encode_key": digest(job.encode_settings()),
        "metadata_rules_key": metadata_rules_key(job.spec),
        # signing on: the signer each export's manifest is signed by (absent when off)
        **({"credentials": signer_key(job.credentials)} if job.credentials else {}),
    }
