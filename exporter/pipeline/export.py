"""One (title, platform) export: the doit action behind `{platform}:{title_id}`.

probe -> plan -> ffmpeg into a temporary file -> probe the result -> conformance check ->
rename into place -> metadata and sidecar. Any ExportError becomes an error sidecar and a
one-line failure; nothing half-made is left under a target's name. Transient failures
(ffmpeg killed by a signal, I/O errors) are retried with exponential backoff.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from doit.exceptions import TaskFailed

from exporter import __version__
from exporter.media.ffmpeg import run_ffmpeg
from exporter.media.loudness import (
    is_silent,
    loudness_problems,
    measure_output,
    measure_source,
    target_of,
)
from exporter.media.loudness import sidecar_record as loudness_record
from exporter.media.plan import EncodePlan, build_encodes, build_plan, output_duration
from exporter.media.probe import Probe, moov_before_mdat, probe
from exporter.media.shared import SharedCache, share_key
from exporter.media.verify import conformance_problems, rate_over
from exporter.metadata import format_metadata, load_source_metadata
from exporter.model.errors import (
    ConformanceError,
    EncodeError,
    ExportError,
    RateOvershoot,
    SourceChanged,
    SourceError,
)
from exporter.model.files import (
    file_state,
    publish,
    remove_stale_temps,
    sha256_file,
    temporary,
    write_json_atomic,
)
from exporter.model.history import append_events, event
from exporter.model.layout import task_name
from exporter.model.records import (
    FILE_NAMES,
    Record,
    error_document,
    export_facts,
    now_utc,
    output_sha256,
    read_record,
    recorded_inputs,
    remake_causes,
    sidecar_document,
    video_inputs_match,
    with_outputs,
)
from exporter.model.sources import INPUT_NAMES, Title
from exporter.model.spec import Spec
from exporter.pipeline.cluster import ClusterError, current_worker, run_on_cluster
from exporter.pipeline.covers import make_cover, make_poster
from exporter.pipeline.job import (
    ExportJob,
    current_inputs,
    ffmpeg_version,
    sha256_or_none,
)
from exporter.pipeline.progress_files import ProgressFile

LOG = logging.getLogger(__name__)

# Stands for the output file in a plan's argv until the cache decides where it goes.
PLAN_OUTPUT = "{output}"


def video_is_current(job: ExportJob, inputs: Record, sidecar: Record | None) -> bool:
    """True when the video exists, is intact, and was encoded from exactly these inputs.

    doit forgets tasks finished in a run that was SIGKILLed (its DB is written at the
    end), so the action itself must recognise finished work instead of encoding again.
    """
    if not video_inputs_match(sidecar, inputs) or not job.path("video").exists():
        return False
    return sha256_file(job.path("video")) == output_sha256(sidecar)


def build_sidecar(job: ExportJob, inputs: Record, source_probe: Probe, output_probe: Probe,
                  output_sha256: str, plan: EncodePlan, started_at: str, attempt: int,
                  mode: str, shared_key: str, cache_record: Record,
                  loudness: Record | None = None) -> Record:
    """The sidecar of the video just made: what, from what, how, and its probe."""
    return sidecar_document(
        names=job.identity,
        output={"path": job.path("video").name, "size_bytes": output_probe.size_bytes,
                "sha256": output_sha256, "duration_s": output_probe.duration_s,
                "width": output_probe.width, "height": output_probe.height,
                "video_codec": output_probe.video_codec,
                "audio_codec": output_probe.audio_codec,
                "video_bitrate": output_probe.video_bitrate,
                "probe": output_probe.summary()},
        metadata_file=job.path("metadata").name,
        source={"path": str(job.title.source), "sha256": inputs["source_sha256"],
                "probe": source_probe.summary()},
        spec={"file": str(job.spec.path), "sha256": sha256_file(job.spec.path)},
        encode={"mode": mode, "key": inputs["encode_key"], "shared_key": shared_key,
                "made_by": cache_record["made_by"], "settings": job.encode_settings(),
                "trimmed": plan.trimmed, "ffmpeg": job.ffmpeg,
                "ffmpeg_version": ffmpeg_version(job.ffmpeg), "argv": cache_record["argv"],
                "tool_version": __version__, "loudness": loudness,
                "worker": current_worker()},
        inputs=inputs, started_at=started_at, finished_at=now_utc(), attempts=attempt)


def build_error_record(job: ExportJob, error: Exception, inputs: Record, attempts: int,
                       started_at: str) -> Record:
    return error_document(
        names=job.identity, cause=str(error), error_type=type(error).__name__,
        transient=is_transient(error), stderr_tail=getattr(error, "stderr_tail", ""),
        source=str(job.title.source), inputs=inputs, attempts=attempts,
        started_at=started_at, failed_at=now_utc())


def is_transient(error: Exception) -> bool:
    """Worth another try: ffmpeg killed by a signal or hitting an I/O error, or our own I/O.

    A corrupt source, an over-long one or a non-conforming output fails the same way
    every time, so those are not retried.
    """
    if isinstance(error, EncodeError):
        return error.transient
    return isinstance(error, OSError)


def verified_probe(ffmpeg: str, spec: Spec, path: Path,
                   plan: EncodePlan) -> tuple[Probe, dict | None]:
    """Probe `path` and check it against `spec` (its loudness too, measured again when the
    plan normalised it); ConformanceError if it misses. Returns the probe and the loudness
    achieved (None when not normalised)."""
    result = probe(path)
    problems = conformance_problems(result, spec, plan.duration_s, moov_before_mdat(path),
                                    encoded=plan.mode != "remux")
    achieved = measure_output(ffmpeg, path) if plan.loudness and result.has_audio else None
    if achieved is not None:
        problems += loudness_problems(achieved, target_of(spec))
    if problems:
        message = "output does not conform: " + "; ".join(problems)
        if plan.mode != "remux" and rate_over(result.video_bitrate, spec.video):
            raise RateOvershoot(message, result.video_bitrate)
        raise ConformanceError(message)
    return result, achieved


def loudness_of(job: ExportJob, spec: Spec, source_probe: Probe,
                inputs: Record) -> tuple[dict | None, str | None]:
    """(the first-pass measurement, None) when `spec` normalises this source's loudness;
    (None, why not) when the source has no audio or is silent; (None, None) when off."""
    target = target_of(spec)
    if target is None:
        return None, None
    if not source_probe.has_audio:
        return None, "the source has no audio"
    kept_s, _ = output_duration(source_probe, spec)
    measured = measure_source(job.ffmpeg, job.title.source, inputs["source_sha256"], target,
                              kept_s, job.shared_cache.root / "loudness",
                              ffmpeg_version(job.ffmpeg))
    if is_silent(measured):
        return None, "the source is silent (or too short to measure): left as it is"
    return measured, None


def sibling_encodes(job: ExportJob, source_probe: Probe, inputs: Record, own_key: str,
                    cache: SharedCache) -> list[tuple[Spec, str]]:
    """(spec, key) of the other selected platforms' encodes of this source still to make.

    They ride along in this export's ffmpeg process (one decode, several encoders); a
    sibling that must remux, would be rejected, or is already cached is left to its task.
    """
    wanted = {}
    for spec in job.siblings:
        try:
            plan = build_plan(job.ffmpeg, job.title.source, source_probe, spec, PLAN_OUTPUT,
                              job.preset, loudness_of(job, spec, source_probe, inputs)[0])
        except SourceError:
            continue
        key = share_key(inputs["source_sha256"], plan, job.encode_settings(spec))
        if plan.mode == "encode" and key != own_key and not cache.has(key):
            wanted.setdefault(key, spec)
    return [(spec, key) for key, spec in wanted.items()]


def encode_into_cache(job: ExportJob, source_probe: Probe, inputs: Record,
                      targets: list[tuple[Spec, str]], cache: SharedCache) -> None:
    """Encode `targets` [(spec, key), ...] in one ffmpeg process into the shared cache.

    The first target is this export's own: if it misses its spec, that is this export's
    failure. A sibling that misses its own is not stored; its task will try by itself.
    """
    for _, key in targets:          # we hold these keys: what is there is a killed run's
        remove_stale_temps(cache.video(key))
    with ExitStack() as stack:
        temps = [stack.enter_context(temporary(cache.video(key))) for _, key in targets]
        loudness = {spec.name: loudness_of(job, spec, source_probe, inputs)[0]
                    for spec, _ in targets}
        plans = build_encodes(job.ffmpeg, job.title.source, source_probe,
                              [(spec, temp) for (spec, _), temp in zip(targets, temps)],
                              job.preset, loudness)
        argv = plans[0].argv
        with ProgressFile(job.exports_root, job.task_name, job.title.key, plans[0].duration_s,
                          job.spec.video["fps"]) as progress:
            run_ffmpeg(argv, progress=progress)
        for index, ((spec, key), temp, plan) in enumerate(zip(targets, temps, plans)):
            if not temp.exists():
                raise EncodeError("ffmpeg exited without writing an output")
            made_by = argv
            try:
                verified_probe(job.ffmpeg, spec, temp, plan)
            except RateOvershoot as over:
                if index != 0:
                    continue
                made_by = corrected_encode(job, source_probe, temp, plan, over)
            except ConformanceError:
                if index == 0:
                    raise
                continue
            cache.store(key, temp, {"argv": made_by, "mode": "encode",
                                    "made_by": job.task_name,
                                    # kept by prune until this export links it
                                    "wanted_by": task_name(spec.name, job.title.title_id),
                                    "source_sha256": inputs["source_sha256"]})


# A corrected encode aims this far under the spec's bitrate, scaled by how far over the
# last one landed; after MAX_CORRECTIONS the export fails with the last measurement.
CORRECTION_AIM = 0.97
MAX_CORRECTIONS = 2


def corrected_encode(job: ExportJob, source_probe: Probe, temp: Path, plan: EncodePlan,
                     over: RateOvershoot) -> list[str]:
    """Encode this export again into `temp`, aiming lower, after it landed `over` its rate.

    The sized VBV buffer keeps a constant-rate spec within its promise; a spec that lets
    the rate vary (maxrate above bitrate) can overshoot on a short clip, where x264's
    average-rate control has too few frames to settle. Returns the argv that made it.
    """
    spec, scale = job.spec, 1.0
    for _ in range(MAX_CORRECTIONS):
        scale *= spec.video["bitrate"] / over.bitrate * CORRECTION_AIM
        aimed = replace(spec, video={**spec.video, **{
            name: max(1, int(spec.video[name] * scale))
            for name in ("bitrate", "maxrate", "bufsize")}})
        argv = build_encodes(job.ffmpeg, job.title.source, source_probe, [(aimed, temp)],
                             job.preset, {aimed.name: plan.loudness})[0].argv
        temp.unlink(missing_ok=True)
        with ProgressFile(job.exports_root, job.task_name, job.title.key, plan.duration_s,
                          spec.video["fps"]) as progress:
            run_ffmpeg(argv, progress=progress)
        try:
            verified_probe(job.ffmpeg, spec, temp, plan)
            return argv
        except RateOvershoot as again:
            over = again
    raise over


def remux_into_cache(job: ExportJob, plan: EncodePlan, cache: SharedCache,
                     key: str) -> None:
    """Copy the conforming source's streams into the cache under `key`, verified."""
    remove_stale_temps(cache.video(key))
    with temporary(cache.video(key)) as temp:
        argv = [str(temp) if arg == PLAN_OUTPUT else arg for arg in plan.argv]
        with ProgressFile(job.exports_root, job.task_name, job.title.key, plan.duration_s,
                          job.spec.video["fps"]) as progress:
            run_ffmpeg(argv, progress=progress)
        verified_probe(job.ffmpeg, job.spec, temp, plan)
        cache.store(key, temp, {"argv": argv, "mode": "remux", "made_by": job.task_name})


def input_states(title: Title) -> tuple:
    """The state of each input file (None: absent), taken before the inputs are hashed
    and compared when the export is done."""
    return tuple(file_state(title.directory / name) for name in INPUT_NAMES)


def export(job: ExportJob, inputs: Record, attempt: int = 1,
           states: tuple | None = None) -> str:
    """Make (or recognise as made) one export. Raises ExportError with a one-line cause.
    Returns "made" when the video was made now, "kept" when the one in place was current.

    `states` (input_states, taken before `inputs` were hashed): if an input file is not the
    same file at the end, the export is not recorded as made from `inputs` (SourceChanged).
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
    video = "kept"
    if not video_is_current(job, inputs, sidecar):
        sidecar = encode_video(job, inputs, started_at, attempt)
        video = "made"
    try:
        images = {"cover": make_cover(job, inputs, sidecar),
                  "poster": make_poster(job, sidecar)}
    except Exception:
        # a failed export leaves no target: not a video without its sidecar and images
        for target in job.targets:
            target.unlink(missing_ok=True)
        raise
    if states is not None and input_states(job.title) != states:
        for target in job.targets:      # may be of the old bytes: never kept as current
            target.unlink(missing_ok=True)
        raise SourceChanged(f"{job.title.source.name}, metadata.json or thumbnail.jpg "
                            "changed while the export was made")
    write_json_atomic(job.path("sidecar"),
                      with_outputs(sidecar, images, inputs, metadata_warnings))
    write_json_atomic(job.path("metadata"), metadata_document)
    job.path("error").unlink(missing_ok=True)
    return video


def encode_video(job: ExportJob, inputs: Record, started_at: str, attempt: int) -> Record:
    """Make the video (encode, remux, or link a shared encode), verify and publish it.

    Returns its sidecar (not yet written).
    """
    source_probe = probe(job.title.source)
    measured, skipped = loudness_of(job, job.spec, source_probe, inputs)
    plan = build_plan(job.ffmpeg, job.title.source, source_probe, job.spec, PLAN_OUTPUT,
                      job.preset, measured)
    cache = job.shared_cache
    key = share_key(inputs["source_sha256"], plan, job.encode_settings())
    siblings = (sibling_encodes(job, source_probe, inputs, key, cache)
                if plan.mode == "encode" else [])
    with temporary(job.path("video")) as temp:
        with cache.locked([key, *(sibling_key for _, sibling_key in siblings)]):
            mode = "shared" if cache.has(key) else plan.mode
            if mode == "remux":
                remux_into_cache(job, plan, cache, key)
            elif mode == "encode":
                missing = [(spec, k) for spec, k in siblings if not cache.has(k)]
                encode_into_cache(job, source_probe, inputs, [(job.spec, key), *missing],
                                  cache)
            record = cache.record(key)
            cache.link_to(key, temp)
        output_probe, achieved = verified_probe(job.ffmpeg, job.spec, temp, plan)
        output_sha256 = sha256_file(temp)
        publish(temp, job.path("video"))
    loudness = loudness_record(target_of(job.spec), measured, achieved, skipped)
    return build_sidecar(job, inputs, source_probe, output_probe, output_sha256, plan,
                         started_at, attempt, mode=mode, shared_key=key, cache_record=record,
                         loudness=loudness)


def upload_metadata(job: ExportJob) -> tuple[Record, list[str]]:
    """The platform's metadata document and its warnings, each warning shown as it happens."""
    source = load_source_metadata(job.title.metadata)
    try:
        document, warnings = format_metadata(source, job.spec)
    except SourceError as error:
        raise SourceError(f"{job.title.metadata.name}: {error}") from None
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
    job = jobs_by_name.get(record.get("wanted_by"))
    if job is None or not job.title.source.is_file():
        return False
    if job.path("video").exists() and output_sha256(read_record(job.path("sidecar"))):
        return False        # made (from this encode or another): nothing waits for it
    return sha256_file(job.title.source) == record.get("source_sha256")


def export_action(job: ExportJob) -> bool | TaskFailed:
    """doit python-action: True on success, TaskFailed with one line naming title and cause.

    An export that already failed on the same inputs fails again at once, without a new
    attempt: a bad source stays bad until it changes (or the user says retry=failed).
    Each attempt's outcome is appended to the distribution history (model/history).
    """
    started_at = now_utc()
    job.out_dir.mkdir(parents=True, exist_ok=True)
    states = input_states(job.title)
    inputs = current_inputs(job)
    earlier = failed_before(job, inputs)
    if earlier:
        return TaskFailed(f"{job.task_name} ({job.title.key}): {earlier['cause']} "
                          f"(unchanged since {earlier['failed_at']}; retry=failed tries again)")
    previous = read_record(job.path("sidecar"))
    previous_error = read_record(job.path("error"))
    causes = remake_causes(
        previous, inputs, spec_sha256=sha256_or_none(job.spec.path),
        ffmpeg_version=ffmpeg_version(job.ffmpeg), tool_version=__version__,
        output_missing=not all(target.exists() for target in job.targets),
        retried=previous_error is not None and recorded_inputs(previous_error) == inputs)
    attempt = 1
    while True:
        try:
            video = (run_on_cluster(job.cluster, f"export-{job.task_name}", export, job, inputs,
                                    attempt, states)
                     if job.cluster else export(job, inputs, attempt, states))
            record_made(job, causes, video, attempt)
            return True
        except ClusterError as error:
            # not the render's fault: no error record, no event; the next run makes it
            return TaskFailed(f"{job.task_name} ({job.title.key}): {error}")
        except SourceChanged as error:
            if attempt < job.retry.attempts:    # at once, from the files as they are now
                states, inputs = input_states(job.title), current_inputs(job)
                attempt += 1
                continue
            # no error record: nothing is wrong with the files, the next run makes it
            cause = f"{error}, over {attempt} attempts; the next run makes it"
            record_failed(job, cause, error, attempt)
            return TaskFailed(f"{job.task_name} ({job.title.key}): {cause}")
        except (ExportError, OSError) as error:
            if is_transient(error) and attempt < job.retry.attempts:
                time.sleep(job.retry.delay_before(attempt + 1))
                attempt += 1
                continue
            write_json_atomic(job.path("error"),
                              build_error_record(job, error, inputs, attempt, started_at))
            record_failed(job, describe(error), error, attempt)
            tries = f" after {attempt} attempts" if attempt > 1 else ""
            return TaskFailed(f"{job.task_name} ({job.title.key}): {describe(error)}{tries}")


def record_made(job: ExportJob, causes: list[str], video: str, attempts: int) -> None:
    """A `made` event: the export now on disk, why it was made, and whether its video was
    encoded ("made") or recognised as made from the same inputs ("kept")."""
    facts = export_facts(read_record(job.path("sidecar")))
    append_events(job.exports_root, [event(
        "made", job.task_name, title=job.title.key, sha256=facts["sha256"],
        size_bytes=facts["size_bytes"], mode=facts["mode"], causes=causes, video=video,
        attempts=attempts)])


def record_failed(job: ExportJob, cause: str, error: Exception, attempts: int) -> None:
    append_events(job.exports_root, [event(
        "failed", job.task_name, title=job.title.key, cause=cause,
        error_type=type(error).__name__, transient=is_transient(error), attempts=attempts)])


def describe(error: Exception) -> str:
    """One line for an error: ours carry their cause; an OSError gets its file and reason."""
    if isinstance(error, OSError) and not isinstance(error, ExportError):
        return f"I/O error: {error.strerror or error} ({error.filename})"
    return str(error)
