"""What an export's work takes to where it runs, and brings back.

Where the work sees this machine's exports tree (here, or a cluster worker on the shared
mount), it works in it. Where it does not (a cluster worker, with exports in a bucket: the
local tree is this machine's staging tree), it works in a tree of its own (`workspace`),
started from what the `WorkOrder` carries; the export it published comes back into the
local tree afterwards (`bring_home`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from exporter.model.files import sha256_file, sha256_or_none
from exporter.model.locations import ObjectStoreError
from exporter.model.records import Record, read_record, video_inputs_match
from exporter.model.sources import INPUT_NAMES
from exporter.pipeline.export.covers import cover_reads_source
from exporter.pipeline.export.job import ExportJob
from exporter.pipeline.export.outputs import video_is_current
from exporter.pipeline.placement.places import HERE, scratch_directory
from exporter.storage.lease import current_run_id

# The files an export made from the same inputs keeps: fetched from the store, not made again.
KEPT_KINDS = ("video", "cover", "poster")


@dataclass(frozen=True)
class WorkOrder:
    """What the work cannot read where it runs. `own_tree`: it works in a tree of its own,
    started from the title's files of this machine's mirror (renders in a bucket) and the
    export's sidecar; `start_from`: the export's files the store holds as made from these
    inputs (file name -> ETag listed), fetched rather than made again."""

    own_tree: bool = False
    title_files: dict[str, bytes] = field(default_factory=dict)
    sidecar: bytes | None = None
    start_from: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None       # the lease fencing what the work publishes


def work_order(job: ExportJob, inputs: Record) -> WorkOrder:
    own_tree = job.place.away and not job.exports.tree_travels
    start_from = kept_in_store(job, inputs, missing_only=not own_tree)
    if not own_tree:
        return WorkOrder(start_from=start_from, run_id=current_run_id())
    title_files = {}
    if job.title.directory.is_relative_to(job.exports_root):    # in this machine's tree
        title_files = {name: (job.title.directory / name).read_bytes() for name in INPUT_NAMES
                       if (job.title.directory / name).is_file()}
    return WorkOrder(True, title_files,
                     job.path("sidecar").read_bytes() if start_from else None, start_from,
                     current_run_id())


def kept_in_store(job: ExportJob, inputs: Record, missing_only: bool) -> dict[str, str]:
    """The export's video and images the store holds apart from the tree (file name -> ETag
    listed), when its sidecar says they were made from these inputs: fetched, not made
    again (each is then checked as on disk: one changed in the store is made again).
    `missing_only`: those the local tree lacks."""
    names = [job.file_names[kind] for kind in KEPT_KINDS
             if not (missing_only and job.path(kind).exists())]
    listed = job.exports.listed(job.title.key, names)     # a directory store: none, at once
    if not listed or not video_inputs_match(read_record(job.path("sidecar")), inputs):
        return {}
    return listed


@contextmanager
def workspace(job: ExportJob, order: WorkOrder) -> Iterator[ExportJob]:
    """The job as the work makes it: in the tree it was given, or in one of its own (its
    shared cache too: encodes are not shared with other workers' exports); what it
    publishes fenced by the run's lease."""
    job = replace(job, exports=job.exports.fenced_by(order.run_id))
    if not order.own_tree:
        yield job
        return
    with tempfile.TemporaryDirectory(prefix="reelexport-work-", dir=scratch_directory()
                                     ) as scratch:
        job = replace(job, exports=job.exports.staged_at(Path(scratch, "exports")),
                      siblings=(), place=HERE)
        job.out_dir.mkdir(parents=True)
        if order.title_files:
            directory = Path(scratch, "render")
            directory.mkdir()
            for name, data in order.title_files.items():
                (directory / name).write_bytes(data)
            job = replace(job, title=replace(job.title, directory=directory))
        if order.sidecar is not None:
            job.path("sidecar").write_bytes(order.sidecar)
        yield job


def reads_render(job: ExportJob, inputs: Record) -> bool:
    """False when the export made from these inputs is in the tree and its cover is kept
    or taken from thumbnail.jpg: new metadata does not download a render."""
    sidecar = read_record(job.path("sidecar"))
    return not video_is_current(job, inputs, sidecar) or cover_reads_source(job, inputs,
                                                                            sidecar)


def unchanged_files(job: ExportJob, fetched: dict[str, tuple[int, str, str]]
                    ) -> dict[str, list]:
    """The fetched files the export kept as they were: not uploaded again."""
    return {name: [size, etag] for name, (size, etag, digest) in fetched.items()
            if sha256_or_none(job.out_dir / name) == digest}


def what_comes_home(job: ExportJob, order: WorkOrder) -> dict[str, dict[str, str]]:
    """From a tree of its own: the sha256 of each file the work verified and published."""
    if not order.own_tree:
        return {}
    return {"sha256": {name: sha256_file(job.out_dir / name) for name in job.file_order}}


def bring_home(job: ExportJob, answer: dict) -> None:
    """The export as the work published it from a tree of its own, into the local tree:
    each file whose bytes the local one is not, fetched by the ETag its upload returned
    and checked against the sha256 the work verified. ObjectStoreError when the store
    holds other bytes: the local export is then removed, so nothing certifies them."""
    sha256 = answer.get("sha256")
    if not sha256:
        return
    wanted = {name: answer["published"][name][1] for name in job.file_order
              if sha256_or_none(job.out_dir / name) != sha256[name]}
    got = job.exports.fetch(job.title.key, job.out_dir, wanted, strict=True)
    for name, (_, _, digest) in got.items():
        if digest != sha256[name]:
            for target in job.targets:
                target.unlink(missing_ok=True)
            raise ObjectStoreError(f"{job.exports}/{job.title.key}/{name}: the bucket "
                                   "holds other bytes than the worker uploaded")
