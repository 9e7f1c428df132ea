"""Exports in a bucket made where no local tree holds them: on a cluster worker, and on a
coordinator whose local tree is new.

On a cluster, what is in a bucket the worker reads and writes itself; no filesystem is
shared for it. The coordinator sends the job with a WorkOrder; the worker fetches the render
(the version listed, a conditional GET) and, with exports in a bucket, makes the export in
a tree of its own and publishes it (sidecar last) as a local run does. The coordinator keeps
its local tree (doit's targets, the registry's facts) by downloading each file the worker
published that it does not hold, checked against the sha256 the worker verified: what it
records is what the bucket holds. A run that changes nothing sends no work and downloads
nothing.

A local tree made anew (another machine, a lost state directory) takes each export's
sidecar from the bucket, and the video and images it records as made from the same inputs:
fetched and kept, not encoded and uploaded again.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.media.objects import ask
from exporter.model.files import sha256_file
from exporter.model.locations import ObjectStoreError
from exporter.model.records import Record, read_record, video_inputs_match
from exporter.model.sources import INPUT_NAMES
from exporter.pipeline.cluster import run_on_cluster
from exporter.pipeline.covers import cover_reads_source
from exporter.pipeline.job import ExportJob, sha256_or_none
from exporter.pipeline.outputs import video_is_current
from exporter.pipeline.remote_exports import LISTED, done, file_names, publish_export
from exporter.pipeline.remote_renders import with_fetched_render

if TYPE_CHECKING:
    from collections.abc import Callable

# The files an export made from the same inputs keeps: fetched from the bucket, not made again.
KEPT_KINDS = ("video", "cover", "poster")


@dataclass(frozen=True)
class WorkOrder:
    """What the worker cannot read from a shared tree: with renders and exports in buckets,
    the title's files of the mirror (the note naming the render, metadata.json,
    thumbnail.jpg); with exports in a bucket, the export made from these inputs already
    (its sidecar, and the ETags listed of its video and images) for the worker to start from."""

    title_files: dict[str, bytes] = field(default_factory=dict)
    sidecar: bytes | None = None
    start_from: dict[str, str] = field(default_factory=dict)    # file name -> ETag listed


def on_worker_with_buckets(job: ExportJob) -> bool:
    return job.cluster is not None and (job.renders_in_bucket or job.exports_url is not None)


def work_order(job: ExportJob, inputs: Record) -> WorkOrder:
    title_files = {}
    if job.renders_in_bucket and job.exports_url:
        title_files = {name: (job.title.directory / name).read_bytes() for name in INPUT_NAMES
                       if (job.title.directory / name).is_file()}
    start_from = kept_in_bucket(job, inputs, missing_only=False) if job.exports_url else {}
    return WorkOrder(title_files, job.path("sidecar").read_bytes() if start_from else None,
                     start_from)


def kept_in_bucket(job: ExportJob, inputs: Record, missing_only: bool) -> dict[str, str]:
    """The export's video and images in the bucket (file name -> ETag listed), when its
    sidecar says they were made from these inputs: fetched, not made again (each is then
    checked as on disk: one changed in the bucket is made again). `missing_only`: those
    the local tree lacks."""
    if not video_inputs_match(read_record(job.path("sidecar")), inputs):
        return {}
    listed = LISTED.get(job.exports_url) or {}
    return {name: listed[key][1] for name in (job.file_names[k] for k in KEPT_KINDS)
            if (key := f"{job.title.key}/{name}") in listed
            and not (missing_only and (job.out_dir / name).exists())}


def restore_sidecar(job: ExportJob) -> None:
    """A local tree made anew (another machine, a lost state directory): the export's
    sidecar as the bucket holds it, so the export is judged by what it records, and what
    it records as made from these inputs is fetched (kept_in_bucket), not encoded again."""
    name = job.file_names["sidecar"]
    listed = (LISTED.get(job.exports_url) or {}).get(f"{job.title.key}/{name}")
    if listed is not None and not job.path("sidecar").exists():
        # not there, or replaced since the listing: the export is then made anew
        ask("get", job.exports_url, [[f"{job.title.key}/{name}", str(job.path("sidecar")),
                                      listed[1]]])


def fetch_files(job: ExportJob, etags: dict[str, str]) -> dict[str, tuple[int, str, str]]:
    """Each file (name -> ETag listed) into the job's tree; name -> (size, etag, sha256) of
    those fetched (one that changed since the listing is not)."""
    names = list(etags)
    answers = ask("get", job.exports_url, [[f"{job.title.key}/{name}", str(job.out_dir / name),
                                            etags[name]] for name in names]) if names else []
    return {name: ((job.out_dir / name).stat().st_size, answer["etag"], answer["sha256"])
            for name, answer in zip(names, answers, strict=True) if "error" not in answer}


def unchanged_files(job: ExportJob, fetched: dict[str, tuple[int, str, str]]
                    ) -> dict[str, list]:
    """The fetched files the export kept as they were: not uploaded again."""
    return {name: [size, etag] for name, (size, etag, digest) in fetched.items()
            if sha256_or_none(job.out_dir / name) == digest}


def export_through_worker(make: Callable[..., str], job: ExportJob, inputs: Record,
                          attempt: int, states: tuple | None) -> tuple[str, dict | None]:
    """`make` (export.export) on a worker; "made" or "kept", and what the uploads of the
    export returned (exports in a bucket: then in the local tree too), else None."""
    answer = run_on_cluster(job.cluster, f"export-{job.task_name}", export_on_worker, make,
                            job, inputs, attempt, states, work_order(job, inputs))
    if job.exports_url:
        take_home(job, answer["published"], answer["sha256"])
    return answer["video"], answer.get("published")


def export_on_worker(make: Callable[..., str], job: ExportJob, inputs: Record, attempt: int,
                     states: tuple | None, order: WorkOrder) -> dict[str, Any]:
    """Runs on the worker. With exports in a bucket the export is made in a temporary tree
    (its shared cache too: encodes are not shared with other workers' exports) and
    published from it."""
    with tempfile.TemporaryDirectory(prefix="reelexport-work-", dir=worker_directory()
                                     ) as scratch:
        fetched = {}
        if job.exports_url:
            job = replace(job, exports_root=Path(scratch, "exports"), siblings=(), cluster=None)
            job.out_dir.mkdir(parents=True)
            if order.title_files:
                directory = Path(scratch, "render")
                directory.mkdir()
                for name, data in order.title_files.items():
                    (directory / name).write_bytes(data)
                job = replace(job, title=replace(job.title, directory=directory))
            if order.sidecar is not None:
                job.path("sidecar").write_bytes(order.sidecar)
            fetched = fetch_files(job, order.start_from)
        if job.renders_in_bucket:
            states = None       # the mirror is not rewritten during a run; the end of the
            #                     export asks the bucket whether the render was replaced
            if reads_render(job, inputs):
                job = with_fetched_render(job)
                inputs = {**inputs, "source_sha256": sha256_or_none(job.title.source)}
        video = make(job, inputs, attempt, states)
        if not job.exports_url:
            return {"video": video}
        return {"video": video,
                "sha256": {name: sha256_file(job.out_dir / name) for name in file_names(job)},
                "published": publish_export(job.exports_url, job,
                                            unchanged_files(job, fetched))}


def worker_directory() -> str | None:
    """The Dask worker's own directory (`dask worker --local-directory`, where its machine
    has room; Dask removes a killed worker's when the next one starts), else the system's
    temporary directory."""
    try:
        from distributed import get_worker  # noqa: PLC0415  loaded on a worker already
        return get_worker().local_directory
    except (ImportError, ValueError):
        return None


def reads_render(job: ExportJob, inputs: Record) -> bool:
    """False when the export made from these inputs is in the worker's tree and its cover
    is kept or taken from thumbnail.jpg: new metadata does not download the render."""
    sidecar = read_record(job.path("sidecar"))
    return not video_is_current(job, inputs, sidecar) or cover_reads_source(job, inputs,
                                                                            sidecar)


def take_home(job: ExportJob, published: dict[str, list], sha256: dict[str, str]) -> None:
    """The export as the worker published it, into the local tree: each file whose bytes
    the local one is not, fetched by the ETag its upload returned (the sidecar last) and
    checked against the sha256 the worker verified. ObjectStoreError when the bucket holds
    other bytes: the local export is then removed, so nothing certifies them."""
    wanted = [name for name in file_names(job) if sha256_or_none(job.out_dir / name)
              != sha256[name]]
    if not wanted:
        return
    got = done("get", job.exports_url, [[f"{job.title.key}/{name}", str(job.out_dir / name),
                                         published[name][1]] for name in wanted])
    for name, answer in zip(wanted, got, strict=True):
        if answer["sha256"] != sha256[name]:
            for target in job.targets:
                target.unlink(missing_ok=True)
            raise ObjectStoreError(f"{job.exports_url}/{job.title.key}/{name}: the bucket "
                                   "holds other bytes than the worker uploaded")
