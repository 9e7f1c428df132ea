"""One (title, platform) export: the doit action behind `{platform}:{title_id}`.

Recognise a video already made from these inputs, or make it (pipeline/export/encode.py); then the
cover, the metadata and the sidecar, written only when the inputs did not change meanwhile.
Any ExportError becomes an error record and a one-line failure; nothing half-made is left
under a target's name. Transient failures (ffmpeg killed by a signal, I/O errors) are
retried with exponential backoff; each outcome is appended to the history.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import time
from dataclasses import replace
from typing import Any

from doit.exceptions import TaskFailed

from exporter import __version__
from exporter.metadata import format_metadata, load_source_metadata
from exporter.model.errors import (
    EncodeError,
    ExportError,
    QualityBelowFloor,
    SourceChanged,
    SourceError,
)
from exporter.model.files import (
    json_text,
    remove_stale_temps,
    sha256_file,
    write_json_atomic,
    write_text_atomic,
)
from exporter.model.history import HistoryError, append_events, event
from exporter.model.locations import ObjectStoreError
from exporter.model.records import (
    FILE_NAMES,
    Record,
    error_document,
    export_facts,
    now_utc,
    output_duration_s,
    output_sha256,
    read_record,
    recorded_inputs,
    recorded_quality,
    remake_causes,
    with_outputs,
)
from exporter.model.requests import build_request, offset_problem
from exporter.pipeline.export.covers import make_cover, make_poster
from exporter.pipeline.export.encode import check_gate, encode_video
from exporter.pipeline.export.handoff import (
    WorkOrder,
    bring_home,
    reads_render,
    unchanged_files,
    what_comes_home,
    work_order,
    workspace,
)
from exporter.pipeline.export.job import (
    ExportJob,
    current_inputs,
    ffmpeg_version,
    sha256_or_none,
)
from exporter.pipeline.export.outputs import video_is_current
from exporter.pipeline.export.signing import sign_again, signed_as_wanted, statement_of
from exporter.pipeline.placement.cluster import ClusterError
from exporter.storage.exports import PUBLISHED_VALUE

LOG = logging.getLogger(__name__)


def build_error_record(job: ExportJob, error: Exception, inputs: Record, attempts: int,
                       started_at: str) -> Record:
    return error_document(
        names=job.identity, cause=str(error), error_type=type(error).__name__,
        transient=is_transient(error), stderr_tail=getattr(error, "stderr_tail", ""),
        source=job.title.origin, inputs=inputs, attempts=attempts,
        started_at=started_at, failed_at=now_utc())


def is_transient(error: Exception) -> bool:
    """Worth another try: ffmpeg killed by a signal or hitting an I/O error, or our own I/O.

    A corrupt source, an over-long one or a non-conforming output fails the same way
    every time, so those are not retried.
    """
    if isinstance(error, EncodeError):
        return error.transient
    return isinstance(error, OSError)


def export(job: ExportJob, inputs: Record, attempt: int = 1,
           states: tuple | None = None) -> str:
    """Make (or recognise as made) one export. Raises ExportError with a one-line cause.
    Returns "made" when the video was made now, "kept" when the one in place was current,
    "signed" when it was current but signed again (a new signer, a new declaration).

    `states` (the render store's, taken before `inputs` were hashed): if an input is not
    the same at the end, the export is not recorded as made from `inputs` (SourceChanged).
    """
    started_at = now_utc()
    problems = job.title.input_problems()
    if problems:
        raise SourceError("; ".join(problems))
    for kind in FILE_NAMES:         # the targets and the error record
        remove_stale_temps(job.path(kind))
    metadata_document, metadata_warnings = upload_metadata(job)
    if inputs["source_sha256"] is None:
        raise SourceError(f"{job.title.source.name} is missing")
    sidecar = read_record(job.path("sidecar"))
    # what its content credentials state of the render (None: signing is off)
    statement = statement_of(metadata_document) if job.credentials else None
    video = "kept"
    if not video_is_current(job, inputs, sidecar):
        sidecar = encode_video(job, inputs, started_at, attempt, statement)
        video = "made"
    else:
        try:        # floors edited since it was made: its recorded score judged again
            check_gate(job.spec, recorded_quality(sidecar))
        except QualityBelowFloor:
            for target in job.targets:
                target.unlink(missing_ok=True)
            raise
        if statement is not None and not signed_as_wanted(job, sidecar, statement):
            sidecar = sign_again(job, sidecar, statement)
            video = "signed"
    problem = offset_problem(metadata_document["request"], metadata_document["upload"]["api"],
                             output_duration_s(sidecar))
    if problem:     # metadata.json asks for a frame the video does not have
        for target in job.targets:
            target.unlink(missing_ok=True)
        raise SourceError(f"{job.title.metadata.name}: {problem}")
    try:
        images = {"cover": make_cover(job, inputs, sidecar),
                  "poster": make_poster(job, sidecar)}
    except Exception:
        # a failed export leaves no target: not a video without its sidecar and images
        for target in job.targets:
            target.unlink(missing_ok=True)
        raise
    changed = job.renders.changed(job.title, states)
    if changed:
        for target in job.targets:      # may be of the old bytes: never kept as current
            target.unlink(missing_ok=True)
        raise SourceChanged(changed)
    metadata_text = json_text(metadata_document)
    if job.title.remote_etag:   # the render's version in the bucket (storage/renders.py)
        sidecar = {**sidecar, "source": {**sidecar["source"], "path": job.title.origin,
                                         "etag": job.title.remote_etag}}
    write_json_atomic(job.path("sidecar"), with_outputs(
        sidecar, images, inputs, metadata_warnings,
        hashlib.sha256(metadata_text.encode("utf-8")).hexdigest(),
        metadata_document["upload"]))
    write_text_atomic(job.path("metadata"), metadata_text)
    job.path("error").unlink(missing_ok=True)
    return video


def upload_metadata(job: ExportJob) -> tuple[Record, list[str]]:
    """The platform's metadata document and its warnings, each warning shown as it happens."""
    source = load_source_metadata(job.title.metadata)
    try:
        document, warnings = format_metadata(source, job.spec)
        request, upload, more = build_request(source, document, job.spec)
    except SourceError as error:
        raise SourceError(f"{job.title.metadata.name}: {error}") from None
    document = {**document, "request": request, "upload": upload}
    warnings = [*warnings, *more]
    for warning in warnings:
        LOG.warning(f"WARNING {job.task_name} ({job.title.key}): {warning}")
    return document, warnings


def failed_before(job: ExportJob, inputs: Record) -> Record | None:
    """The error record of an earlier failure on exactly these inputs, unless retry=failed."""
    if job.retry.retry_failed:
        return None
    record = read_record(job.path("error"))
    return record if record and recorded_inputs(record) == inputs else None


def still_wanted(jobs_by_name: dict[str, ExportJob], record: Record) -> bool:
    """True when a cached encode is for an export not yet made from it, whose source is
    still the one it was made from: kept by SharedCache.prune for that export's task (an
    encode made alongside another platform's, in a run interrupted, or not selected)."""
    names = record.get("wanted_by") or []
    return any(waits_for(jobs_by_name.get(name), record)
               for name in ([names] if isinstance(names, str) else names))


def waits_for(job: ExportJob | None, record: Record) -> bool:
    if job is None or not job.title.source.is_file():
        return False
    if job.path("video").exists() and output_sha256(read_record(job.path("sidecar"))):
        return False        # made (from this encode or another): nothing waits for it
    return sha256_file(job.title.source) == record.get("source_sha256")


def preload_for_exports() -> None:
    """Import what an export imports at its first use (PyAV, NumPy, jsonschema: ~0.3 s of
    CPU): `doit -n N` calls this before it forks its workers when it has an export to run,
    so that they share one import instead of each making its own."""
    from exporter.media.colour_check import numpy
    from exporter.media.probe import pyav
    pyav()
    numpy()
    importlib.import_module("jsonschema")


def export_action(job: ExportJob) -> bool | dict[str, Any] | TaskFailed:
    """doit python-action: True on success, TaskFailed with one line naming title and cause.

    The same for every place the work runs and every store the bytes live in: those were
    chosen at load (job.place, job.renders, job.exports). An export that already failed on
    the same inputs fails again at once, without a new attempt: a bad source stays bad until
    it changes (or the user says retry=failed). Each attempt's outcome is appended to the
    distribution history (model/history).
    """
    started_at = now_utc()
    job.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        job.exports.restore_sidecar(job.title.key, job.path("sidecar"))
    except ObjectStoreError as error:
        # not the render's fault: no error record; the next run sees the bucket as it is
        return TaskFailed(f"{job.task_name} ({job.title.key}): {error}")
    previous = read_record(job.path("sidecar"))
    try:
        states, inputs = job.renders.states(job.title), current_inputs(job, previous)
    except (ExportError, OSError):
        if gone := render_gone(job):    # taken away as the export started
            return gone
        raise
    earlier = failed_before(job, inputs)
    if earlier:
        return TaskFailed(f"{job.task_name} ({job.title.key}): {earlier['cause']} "
                          f"(unchanged since {earlier['failed_at']}; retry=failed tries again)")
    previous_error = read_record(job.path("error"))
    causes = remake_causes(
        previous, inputs, spec_sha256=sha256_or_none(job.spec.path),
        ffmpeg_version=ffmpeg_version(job.ffmpeg), tool_version=__version__,
        output_missing=not all(target.exists() for target in job.targets),
        retried=previous_error is not None and recorded_inputs(previous_error) == inputs)
    attempt = 1
    while True:
        try:
            video, published = make_export(job, inputs, attempt, states)
            record_made(job, causes, video, attempt)
            # exports in a bucket: what doit's DB remembers of the bucket's copy
            return True if published is None else {PUBLISHED_VALUE: published}
        except (ClusterError, ObjectStoreError) as error:
            # not the render's fault: no error record, no event; the next run makes it
            return TaskFailed(f"{job.task_name} ({job.title.key}): {error}")
        except HistoryError as error:
            # the export is whole, but not recorded as made: the next run records it (as
            # kept), so no error record would outlive the fault
            return TaskFailed(f"{job.task_name} ({job.title.key}): made, but not recorded: "
                              f"{error}; the next run records it")
        except SourceChanged as error:
            if gone := render_gone(job):
                return gone
            # at once, from the files as they are now (a render in a bucket: as listed by
            # the next run, so this one cannot do better)
            if attempt < job.retry.attempts and job.renders.rereads_at_once:
                states = job.renders.states(job.title)
                inputs = current_inputs(job, read_record(job.path("sidecar")))
                attempt += 1
                continue
            # no error record: nothing is wrong with the files, the next run makes it
            cause = f"{error}, over {attempt} attempts; the next run makes it"
            record_failed(job, cause, error, attempt)
            return TaskFailed(f"{job.task_name} ({job.title.key}): {cause}")
        except (ExportError, OSError) as error:
            if gone := render_gone(job):
                return gone
            if is_transient(error) and attempt < job.retry.attempts:
                time.sleep(job.retry.delay_before(attempt + 1))
                attempt += 1
                continue
            write_json_atomic(job.path("error"),
                              build_error_record(job, error, inputs, attempt, started_at))
            record_failed(job, describe(error), error, attempt)
            tries = f" after {attempt} attempts" if attempt > 1 else ""
            return TaskFailed(f"{job.task_name} ({job.title.key}): {describe(error)}{tries}")


def make_export(job: ExportJob, inputs: Record, attempt: int,
                states: tuple | None) -> tuple[str, dict[str, list] | None]:
    """The export made where its work runs (job.place); "made" or "kept", and what
    publishing it returned (None: the exports tree is the store)."""
    order = work_order(job, inputs)
    answer = job.place.run(f"export-{job.task_name}", work, job, inputs, attempt, states,
                           order)
    bring_home(job, answer)
    return answer["video"], answer["published"]


def work(job: ExportJob, inputs: Record, attempt: int, states: tuple | None,
         order: WorkOrder) -> dict[str, Any]:
    """The work, where it runs: in its tree, from the files the store keeps, the render
    read from its store when the export needs it; the export made, then published."""
    with workspace(job, order) as job:
        fetched = job.exports.fetch(job.title.key, job.out_dir, order.start_from)
        title = job.renders.open(job.title, job.exports_root,
                                 needed=lambda: reads_render(job, inputs))
        if title is not job.title:      # downloaded: made from the file as it is
            job = replace(job, title=title)
            inputs = {**inputs, "source_sha256": sha256_or_none(title.source)}
        video = export(job, inputs, attempt, states)
        published = job.exports.publish(job.title.key, job.out_dir, job.file_order,
                                        unchanged_files(job, fetched))
        return {"video": video, "published": published, **what_comes_home(job, order)}


def render_gone(job: ExportJob) -> TaskFailed | None:
    """A title renamed or deleted while its export was made: whatever failed, the cause is
    that. One line, and no error record (there is no title left to hold one, and one would
    fail the title at once if it came back); the next run sees the renders as they are."""
    if job.title.directory.is_dir():
        return None
    job.path("error").unlink(missing_ok=True)
    return TaskFailed(f"{job.task_name} ({job.title.key}): its render disappeared during the "
                      "export (renamed or deleted); nothing recorded, the next run sees the "
                      "renders as they are")


def record_made(job: ExportJob, causes: list[str], video: str, attempts: int) -> None:
    """A `made` event: the export now on disk, why it was made, and whether its video was
    encoded ("made") or recognised as made from the same inputs ("kept")."""
    facts = export_facts(read_record(job.path("sidecar")))
    append_events(job.exports_root, [event(
        "made", job.task_name, title=job.title.key, sha256=facts["sha256"],
        size_bytes=facts["size_bytes"], mode=facts["mode"], causes=causes, video=video,
        attempts=attempts)])


def record_failed(job: ExportJob, cause: str, error: Exception, attempts: int) -> None:
    """A `failed` event; a history that cannot take it is a warning (the failure itself is
    said, and its error record written, all the same)."""
    try:
        append_events(job.exports_root, [event(
            "failed", job.task_name, title=job.title.key, cause=cause,
            error_type=type(error).__name__, transient=is_transient(error),
            attempts=attempts)])
    except HistoryError as history_error:
        LOG.warning(f"WARNING {job.task_name} ({job.title.key}): the failure is not in the "
                    f"history: {history_error}")


def describe(error: Exception) -> str:
    """One line for an error: ours carry their cause; an OSError gets its file and reason."""
    if isinstance(error, OSError) and not isinstance(error, ExportError):
        return f"I/O error: {error.strerror or error} ({error.filename})"
    return str(error)
