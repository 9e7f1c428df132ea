"""An export made on a cluster worker when the renders or the exports are in a bucket: what is
in a bucket, the worker reads and writes there itself; no filesystem is shared for it.

The coordinator sends the job with a WorkOrder. The worker fetches the render (the version
listed, a conditional GET) and, with exports in a bucket, makes the export in a tree of its
own, then publishes it (sidecar last) as a local run does. The coordinator keeps its local
tree (doit's targets, the registry's facts) by downloading each file the worker published
that it does not hold, checked against the sha256 the worker verified: what it records is
what the bucket holds. A run that changes nothing sends no work and downloads nothing.
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
from exporter.pipeline.remote_renders import listed_source_sha256, with_fetched_render

if TYPE_CHECKING:
    from collections.abc import Callable

# The files an export made from the same inputs keeps: fetched by the worker, not made again.
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


def listed_inputs(job: ExportJob, inputs: Record) -> Record:
    """The coordinator's inputs when a worker fetches the render: its sha256 as recorded
    with the ETag listed, else `etag:ETAG` (the worker hashes what it fetches)."""
    return {**inputs, "source_sha256": listed_source_sha256(job, read_record(job.path("sidecar")))}


def work_order(job: ExportJob, inputs: Record) -> WorkOrder:
    title_files = {}
    if job.renders_in_bucket and job.exports_url:
        title_files = {name: (job.title.directory / name).read_bytes() for name in INPUT_NAMES
                       if (job.title.directory / name).is_file()}
    if not job.exports_url:
        return WorkOrder(title_files)
    sidecar = read_record(job.path("sidecar"))
    if not video_inputs_match(sidecar, inputs):
        return WorkOrder(title_files)     # to be encoded: nothing of the old one helps
    listed = LISTED.get(job.exports_url) or {}
    start_from = {name: listed[key][1] for name in (job.file_names[k] for k in KEPT_KINDS)
                  if (key := f"{job.title.key}/{name}") in listed}
    return WorkOrder(title_files, job.path("sidecar").read_bytes(), start_from)


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
    with tempfile.TemporaryDirectory(prefix="reelexport-work-") as scratch:
        started = {}
        if job.exports_url:
            job = replace(job, exports_root=Path(scratch, "exports"), siblings=(), cluster=None)
            job.out_dir.mkdir(parents=True)
            if order.title_files:
                directory = Path(scratch, "render")
                directory.mkdir()
                for name, data in order.title_files.items():
                    (directory / name).write_bytes(data)
                job = replace(job, title=replace(job.title, directory=directory))
            started = start_from(job, order)
        if job.renders_in_bucket:
            states = None       # the mirror is not rewritten during a run; the end of the
            #                     export asks the bucket whether the render was replaced
            if reads_render(job, inputs):
                job = with_fetched_render(job)
                inputs = {**inputs, "source_sha256": sha256_or_none(job.title.source)}
        video = make(job, inputs, attempt, states)
        if not job.exports_url:
            return {"video": video}
        sha256 = {name: sha256_file(job.out_dir / name) for name in file_names(job)}
        unchanged = {name: [size, etag] for name, (size, etag, digest) in started.items()
                     if sha256[name] == digest}
        return {"video": video, "sha256": sha256,
                "published": publish_export(job.exports_url, job, unchanged)}


def reads_render(job: ExportJob, inputs: Record) -> bool:
    """False when the export made from these inputs is in the worker's tree and its cover
    is kept or taken from thumbnail.jpg: new metadata does not download the render."""
    sidecar = read_record(job.path("sidecar"))
    return not video_is_current(job, inputs, sidecar) or cover_reads_source(job, inputs,
                                                                            sidecar)


def start_from(job: ExportJob, order: WorkOrder) -> dict[str, tuple[int, str, str]]:
    """The export made from these inputs, fetched into the worker's tree so `make` keeps
    it (each file is checked as on disk: one changed in the bucket is made again). File
    name -> (size, etag, sha256) of what was fetched."""
    if order.sidecar is None:
        return {}
    job.path("sidecar").write_bytes(order.sidecar)
    names = list(order.start_from)
    answers = ask("get", job.exports_url, [[f"{job.title.key}/{name}", str(job.out_dir / name),
                                            order.start_from[name]] for name in names]
                  ) if names else []
    return {name: ((job.out_dir / name).stat().st_size, answer["etag"], answer["sha256"])
            for name, answer in zip(names, answers, strict=True) if "error" not in answer}


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
