"""One (title, platform) export: the doit action behind `{platform}:{title_id}`.

probe -> plan -> ffmpeg into a temporary file -> probe the result -> conformance check ->
rename into place -> metadata and sidecar. Any ExportError becomes an error sidecar and a
one-line failure; nothing half-made is left under a target's name. Transient failures
(ffmpeg killed by a signal, I/O errors) are retried with exponential backoff.
"""

import logging
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from doit.exceptions import TaskFailed

from exporter import __version__
from exporter.build.progress_files import ProgressFile
from exporter.media.ffmpeg import run_ffmpeg
from exporter.media.ffmpeg_binary import check_ffmpeg
from exporter.media.plan import (
    COVER_QUALITIES,
    build_encodes,
    build_plan,
    build_still,
    cover_inputs,
    poster_size,
)
from exporter.media.probe import image_size, moov_before_mdat, probe
from exporter.media.shared import SharedCache, share_key
from exporter.media.verify import conformance_problems, rate_over
from exporter.metadata import FORMAT_VERSION as METADATA_FORMAT_VERSION
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
    read_json,
    remove_stale_temps,
    sha256_file,
    temporary,
    write_json_atomic,
)
from exporter.model.layout import task_name
from exporter.model.sources import INPUT_NAMES, Title
from exporter.model.spec import Spec, digest

LOG = logging.getLogger(__name__)

SIDECAR_VERSION = 1
# The files an export's doit task declares as its targets (its error record is not one).
TARGET_KINDS = ("video", "metadata", "sidecar", "cover", "poster")
# Stands for the output file in a plan's argv until the cache decides where it goes.
PLAN_OUTPUT = "{output}"
# Covers and posters show the frame at this fraction of the duration (past fade-ins).
FRAME_AT = 0.25
# Bump when a code change alters the cover or poster images.
IMAGES_VERSION = 1


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3           # tries per run when failures are transient
    backoff_s: float = 2.0      # wait before the second try, doubled for each further one
    retry_failed: bool = False  # try again an export that already failed on these inputs

    def delay_before(self, attempt):
        """Seconds to wait before try number `attempt` (2, 3, ...)."""
        return self.backoff_s * 2 ** (attempt - 2)


@dataclass(frozen=True)
class ExportJob:
    """Everything one export needs; picklable, so `doit -n N` workers can run it."""

    title: Title
    spec: Spec
    exports_root: Path
    ffmpeg: str
    preset: str | None = None
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())
    siblings: tuple[Spec, ...] = ()  # the other platforms selected, encoded alongside

    @cached_property
    def task_name(self):
        return task_name(self.spec.name, self.title.title_id)

    @cached_property
    def out_dir(self):
        return self.title.export_dir(self.exports_root)

    @cached_property
    def file_names(self):
        """The name of each file this export writes, by kind; the targets come first."""
        name = self.spec.name
        return {"video": f"{name}.mp4", "metadata": f"metadata_{name}.json",
                "sidecar": f"{name}.export.json", "cover": f"{name}.cover.jpg",
                "poster": f"{name}.poster.jpg", "error": f"{name}.error.json"}

    def path(self, kind: str) -> Path:
        """The file of `kind` this export writes: video, metadata, sidecar, cover, poster,
        error (the names in `file_names`)."""
        return self.out_dir / self.file_names[kind]

    @cached_property
    def target_names(self):
        """The targets as strings: built for 40,000 tasks on every run, so without Paths."""
        out_dir = os.path.join(str(self.exports_root), self.title.key)   # Title.export_dir
        return [os.path.join(out_dir, self.file_names[kind]) for kind in TARGET_KINDS]

    @property
    def targets(self):
        return [Path(name) for name in self.target_names]

    def encode_settings(self, spec=None):
        """What the encoded bytes depend on (besides the source): doit's config_changed value."""
        return {**(spec or self.spec).encode_settings(self.preset),
                "ffmpeg_version": ffmpeg_version(self.ffmpeg)}

    @property
    def up_to_date_key(self):
        """Digest of the settings whose change makes this export stale (not its files)."""
        return up_to_date_key(self.spec, self.preset, self.ffmpeg)


def ffmpeg_version(ffmpeg):
    """First line of `ffmpeg -version`: part of every export's up-to-date and shared keys."""
    return check_ffmpeg(ffmpeg).version


def up_to_date_key(spec, preset, ffmpeg):
    """The same for every title of a platform: computed once per (spec file, preset, ffmpeg)."""
    cache_key = (str(spec.path), preset, ffmpeg)
    if cache_key not in _UP_TO_DATE_KEYS:
        _UP_TO_DATE_KEYS[cache_key] = digest({
            "encode": {**spec.encode_settings(preset), "ffmpeg_version": ffmpeg_version(ffmpeg)},
            "metadata_rules": metadata_rules_key(spec)})
    return _UP_TO_DATE_KEYS[cache_key]


_UP_TO_DATE_KEYS = {}


def now_utc():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def metadata_rules_key(spec):
    """What the metadata files depend on besides metadata.json: the rules and the formatter."""
    return digest({"rules": spec.metadata, "format_version": METADATA_FORMAT_VERSION})


def sha256_or_none(path):
    """sha256 of a regular file; None when it is absent or anything else (a FIFO, a device:
    reading one would never end), which `export` then refuses with its cause."""
    return sha256_file(path) if path.is_file() else None


def current_inputs(job):
    """Content fingerprint of everything the targets are made from (None: file missing)."""
    return {
        "source_sha256": sha256_or_none(job.title.source),
        "metadata_sha256": sha256_or_none(job.title.metadata),
        "encode_key": digest(job.encode_settings()),
        "metadata_rules_key": metadata_rules_key(job.spec),
    }


# The encoded video depends on these inputs only; metadata changes never re-encode it.
VIDEO_INPUTS = ("source_sha256", "encode_key")


def video_is_current(job, inputs, sidecar):
    """True when the video exists, is intact, and was encoded from exactly these inputs.

    doit forgets tasks finished in a run that was SIGKILLed (its DB is written at the
    end), so the action itself must recognise finished work instead of encoding again.
    """
    if not sidecar or not job.path("video").exists():
        return False
    recorded = sidecar.get("inputs", {})
    if any(recorded.get(key) != inputs[key] for key in VIDEO_INPUTS):
        return False
    return sha256_file(job.path("video")) == sidecar["output"]["sha256"]


def identity(job):
    title = job.title
    return {"title_id": title.title_id, "segment": title.segment, "age": title.age,
            "platform": job.spec.name}


def build_sidecar(job, inputs, source_probe, output_probe, output_sha256, plan,
                  started_at, finished_at, attempt, metadata_warnings, mode, shared_key,
                  cache_record):
    """The sidecar document: what was made, from what, how, and the probe of the result."""
    return {
        "schema_version": SIDECAR_VERSION,
        **identity(job),
        "output": {
            "path": job.path("video").name,
            "size_bytes": output_probe.size_bytes,
            "sha256": output_sha256,
            "duration_s": output_probe.duration_s,
            "width": output_probe.width,
            "height": output_probe.height,
            "video_codec": output_probe.video_codec,
            "audio_codec": output_probe.audio_codec,
            "video_bitrate": output_probe.video_bitrate,
            "probe": output_probe.summary(),
        },
        "metadata_file": job.path("metadata").name,
        "metadata_warnings": metadata_warnings,
        "source": {
            "path": str(job.title.source),
            "sha256": inputs["source_sha256"],
            "probe": source_probe.summary(),
        },
        "spec": {"file": str(job.spec.path), "sha256": sha256_file(job.spec.path)},
        "encode": {
            "mode": mode,
            "key": inputs["encode_key"],
            "shared_key": shared_key,
            "made_by": cache_record["made_by"],
            "settings": job.encode_settings(),
            "trimmed": plan.trimmed,
            "ffmpeg": job.ffmpeg,
            "ffmpeg_version": ffmpeg_version(job.ffmpeg),
            "argv": cache_record["argv"],
            "tool_version": __version__,
        },
        "inputs": inputs,
        "started_at": started_at,
        "finished_at": finished_at,
        "attempts": attempt,
    }


def build_error_record(job, error, inputs, attempts, started_at):
    return {
        "schema_version": SIDECAR_VERSION,
        **identity(job),
        "cause": str(error),
        "error_type": type(error).__name__,
        "transient": is_transient(error),
        "stderr_tail": getattr(error, "stderr_tail", ""),
        "source": str(job.title.source),
        "inputs": inputs,
        "attempts": attempts,
        "started_at": started_at,
        "failed_at": now_utc(),
    }


def is_transient(error):
    """Worth another try: ffmpeg killed by a signal or hitting an I/O error, or our own I/O.

    A corrupt source, an over-long one or a non-conforming output fails the same way
    every time, so those are not retried.
    """
    if isinstance(error, EncodeError):
        return error.transient
    return isinstance(error, OSError)


def verified_probe(spec, path, plan):
    """Probe `path` and check it against `spec`; ConformanceError if it misses."""
    result = probe(path)
    problems = conformance_problems(result, spec, plan.duration_s, moov_before_mdat(path),
                                    encoded=plan.mode != "remux")
    if problems:
        message = "output does not conform: " + "; ".join(problems)
        if plan.mode != "remux" and rate_over(result.video_bitrate, spec.video):
            raise RateOvershoot(message, result.video_bitrate)
        raise ConformanceError(message)
    return result


def sibling_encodes(job, source_probe, inputs, own_key, cache):
    """(spec, key) of the other selected platforms' encodes of this source still to make.

    They ride along in this export's ffmpeg process (one decode, several encoders); a
    sibling that must remux, would be rejected, or is already cached is left to its task.
    """
    wanted = {}
    for spec in job.siblings:
        try:
            plan = build_plan(job.ffmpeg, job.title.source, source_probe, spec, PLAN_OUTPUT,
                              job.preset)
        except SourceError:
            continue
        key = share_key(inputs["source_sha256"], plan, job.encode_settings(spec))
        if plan.mode == "encode" and key != own_key and not cache.has(key):
            wanted.setdefault(key, spec)
    return [(spec, key) for key, spec in wanted.items()]


def encode_into_cache(job, source_probe, source_sha256, targets, cache):
    """Encode `targets` [(spec, key), ...] in one ffmpeg process into the shared cache.

    The first target is this export's own: if it misses its spec, that is this export's
    failure. A sibling that misses its own is not stored; its task will try by itself.
    """
    for _, key in targets:          # we hold these keys: what is there is a killed run's
        remove_stale_temps(cache.video(key))
    with ExitStack() as stack:
        temps = [stack.enter_context(temporary(cache.video(key))) for _, key in targets]
        plans = build_encodes(job.ffmpeg, job.title.source, source_probe,
                              [(spec, temp) for (spec, _), temp in zip(targets, temps)],
                              job.preset)
        argv = plans[0].argv
        with ProgressFile(job.exports_root, job.task_name, job.title.key, plans[0].duration_s,
                          job.spec.video["fps"]) as progress:
            run_ffmpeg(argv, progress=progress)
        for index, ((spec, key), temp, plan) in enumerate(zip(targets, temps, plans)):
            if not temp.exists():
                raise EncodeError("ffmpeg exited without writing an output")
            made_by = argv
            try:
                verified_probe(spec, temp, plan)
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
                                    "source_sha256": source_sha256})


# A corrected encode aims this far under the spec's bitrate, scaled by how far over the
# last one landed; after MAX_CORRECTIONS the export fails with the last measurement.
CORRECTION_AIM = 0.97
MAX_CORRECTIONS = 2


def corrected_encode(job, source_probe, temp, plan, over):
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
                             job.preset)[0].argv
        temp.unlink(missing_ok=True)
        with ProgressFile(job.exports_root, job.task_name, job.title.key, plan.duration_s,
                          spec.video["fps"]) as progress:
            run_ffmpeg(argv, progress=progress)
        try:
            verified_probe(spec, temp, plan)
            return argv
        except RateOvershoot as again:
            over = again
    raise over


def remux_into_cache(job, plan, cache, key):
    """Copy the conforming source's streams into the cache under `key`, verified."""
    remove_stale_temps(cache.video(key))
    with temporary(cache.video(key)) as temp:
        argv = [str(temp) if arg == PLAN_OUTPUT else arg for arg in plan.argv]
        with ProgressFile(job.exports_root, job.task_name, job.title.key, plan.duration_s,
                          job.spec.video["fps"]) as progress:
            run_ffmpeg(argv, progress=progress)
        verified_probe(job.spec, temp, plan)
        cache.store(key, temp, {"argv": argv, "mode": "remux", "made_by": job.task_name})


def input_states(title):
    """The state of each input file (None: absent), taken before the inputs are hashed
    and compared when the export is done."""
    return tuple(file_state(title.directory / name) for name in INPUT_NAMES)


def export(job, inputs, attempt=1, states=None):
    """Make (or recognise as made) one export. Raises ExportError with a one-line cause.

    `states` (input_states, taken before `inputs` were hashed): if an input file is not the
    same file at the end, the export is not recorded as made from `inputs` (SourceChanged).
    """
    started_at = now_utc()
    problems = job.title.input_problems()
    if problems:
        raise SourceError("; ".join(problems))
    for target in job.targets:
        remove_stale_temps(target)
    metadata_document, metadata_warnings = upload_metadata(job)
    if inputs["source_sha256"] is None:
        raise SourceError(f"{job.title.source.name} is missing")
    sidecar = read_json(job.path("sidecar"))
    if not video_is_current(job, inputs, sidecar):
        sidecar = encode_video(job, inputs, started_at, attempt)
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
    write_json_atomic(job.path("sidecar"), {**sidecar, **images, "inputs": inputs,
                                         "metadata_warnings": metadata_warnings})
    write_json_atomic(job.path("metadata"), metadata_document)
    job.path("error").unlink(missing_ok=True)


def encode_video(job, inputs, started_at, attempt):
    """Make the video (encode, remux, or link a shared encode), verify and publish it.

    Returns its sidecar (not yet written).
    """
    source_probe = probe(job.title.source)
    plan = build_plan(job.ffmpeg, job.title.source, source_probe, job.spec, PLAN_OUTPUT,
                      job.preset)
    cache = SharedCache(job.exports_root)
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
                encode_into_cache(job, source_probe, inputs["source_sha256"],
                                  [(job.spec, key), *missing], cache)
            record = cache.record(key)
            cache.link_to(key, temp)
        output_probe = verified_probe(job.spec, temp, plan)
        output_sha256 = sha256_file(temp)
        publish(temp, job.path("video"))
    return build_sidecar(job, inputs, source_probe, output_probe, output_sha256, plan,
                         started_at, now_utc(), attempt, [], mode=mode, shared_key=key,
                         cache_record=record)


def image_is_current(record, key, path):
    """True when the image exists, is intact, and was made from exactly `key`."""
    return (bool(record) and record.get("key") == key and path.exists()
            and sha256_file(path) == record["sha256"])


def make_still(job, input_choices, fit, size, max_bytes, path, key, origin):
    """One JPEG of exactly `size`, at the best quality that fits `max_bytes`; its record.

    Made once per key in the shared cache (the cover of Instagram, Facebook and TikTok is
    the same image) and linked into place like a shared encode.
    """
    cache = SharedCache(job.exports_root)
    with temporary(path) as linked:
        with cache.locked([key]):
            if not cache.has(key, ".jpg"):
                remove_stale_temps(cache.path(key, ".jpg"))
                with temporary(cache.path(key, ".jpg")) as temp:
                    for input_args in input_choices:
                        run_ffmpeg(build_still(job.ffmpeg, input_args, fit, *size, temp,
                                               COVER_QUALITIES[0]))
                        if temp.exists():
                            break
                    else:
                        raise SourceError(f"{path.name}: no frame could be decoded from "
                                          f"{origin}")
                    for quality in COVER_QUALITIES:
                        if quality != COVER_QUALITIES[0]:
                            run_ffmpeg(build_still(job.ffmpeg, input_args, fit, *size, temp,
                                                   quality))
                        if max_bytes is None or temp.stat().st_size <= max_bytes:
                            break
                    else:
                        raise ConformanceError(
                            f"{path.name} cannot be made under {max_bytes} bytes")
                    if image_size(temp) != size:
                        raise ConformanceError(
                            f"{path.name} is {image_size(temp)}, expected {size}")
                    cache.store(key, temp, {"made_by": job.task_name}, ".jpg")
            cache.link_to(key, linked, ".jpg")
        record = {"path": path.name, "width": size[0], "height": size[1],
                  "size_bytes": linked.stat().st_size, "sha256": sha256_file(linked)}
        publish(linked, path)
    return record


def frame_time(duration_s, fps):
    """Where a cover or poster is taken: FRAME_AT of the way in, but never past the start
    of the last frame (a clip of one frame has its only frame at 0)."""
    return max(0.0, min(duration_s * FRAME_AT, duration_s - 1 / fps))


def make_cover(job, inputs, sidecar):
    """The platform's cover: the render's thumbnail.jpg when present, else a source frame."""
    thumbnail = job.title.thumbnail if job.title.thumbnail.exists() else None
    origin = (sha256_file(thumbnail) if thumbnail else inputs["source_sha256"])
    cover = job.spec.cover
    key = digest({"from": origin, "cover": cover, "ffmpeg": ffmpeg_version(job.ffmpeg),
                  "version": IMAGES_VERSION})
    if image_is_current(sidecar.get("cover"), key, job.path("cover")):
        return sidecar["cover"]
    source = sidecar["source"]["probe"]
    seek = frame_time(source["duration_s"], source["fps"])
    origin_text = thumbnail.name if thumbnail else f"{job.title.source.name} at {seek:.2f} s"
    try:
        record = make_still(job, cover_inputs(thumbnail, job.title.source, seek),
                            cover["fit"], (cover["width"], cover["height"]),
                            cover["max_bytes"], job.path("cover"), key, origin_text)
    except EncodeError as error:
        if thumbnail is None or error.transient:
            raise
        raise SourceError(f"{thumbnail.name} cannot be read as an image: {error}") from None
    return {**record, "key": key, "from": origin_text}


def make_poster(job, sidecar):
    """A small frame of the export itself, for the gallery."""
    size = poster_size(job.spec.video)
    key = digest({"video": sidecar["output"]["sha256"], "size": size,
                  "version": IMAGES_VERSION, "ffmpeg": ffmpeg_version(job.ffmpeg)})
    if image_is_current(sidecar.get("poster"), key, job.path("poster")):
        return sidecar["poster"]
    seek = frame_time(sidecar["output"]["duration_s"], job.spec.video["fps"])
    video = job.path("video")
    record = make_still(job, cover_inputs(None, video, seek), "crop", size, None,
                        job.path("poster"), key, f"{video.name} at {seek:.2f} s")
    return {**record, "key": key}


def upload_metadata(job):
    """The platform's metadata document and its warnings, each warning shown as it happens."""
    source = load_source_metadata(job.title.metadata)
    try:
        document, warnings = format_metadata(source, job.spec)
    except SourceError as error:
        raise SourceError(f"{job.title.metadata.name}: {error}") from None
    for warning in warnings:
        LOG.warning(f"WARNING {job.task_name} ({job.title.key}): {warning}")
    return document, warnings


def failed_before(job, inputs):
    """The error record of an earlier failure on exactly these inputs, unless retry=failed."""
    if job.retry.retry_failed:
        return None
    record = read_json(job.path("error"))
    return record if record and record.get("inputs") == inputs else None


def still_wanted(jobs_by_name, record):
    """True when a cached encode is for an export not yet made from it, whose source is
    still the one it was made from: kept by SharedCache.prune for that export's task (an
    encode made alongside another platform's, in a run interrupted, or not selected)."""
    job = jobs_by_name.get(record.get("wanted_by"))
    if job is None or not job.title.source.is_file():
        return False
    sidecar = read_json(job.path("sidecar")) or {}
    if job.path("video").exists() and sidecar.get("output", {}).get("sha256"):
        return False        # made (from this encode or another): nothing waits for it
    return sha256_file(job.title.source) == record.get("source_sha256")


def export_action(job):
    """doit python-action: True on success, TaskFailed with one line naming title and cause.

    An export that already failed on the same inputs fails again at once, without a new
    attempt: a bad source stays bad until it changes (or the user says retry=failed).
    """
    started_at = now_utc()
    job.out_dir.mkdir(parents=True, exist_ok=True)
    states = input_states(job.title)
    inputs = current_inputs(job)
    earlier = failed_before(job, inputs)
    if earlier:
        return TaskFailed(f"{job.task_name} ({job.title.key}): {earlier['cause']} "
                          f"(unchanged since {earlier['failed_at']}; retry=failed tries again)")
    attempt = 1
    while True:
        try:
            export(job, inputs, attempt, states)
            return True
        except SourceChanged as error:
            if attempt < job.retry.attempts:    # at once, from the files as they are now
                states, inputs = input_states(job.title), current_inputs(job)
                attempt += 1
                continue
            # no error record: nothing is wrong with the files, the next run makes it
            return TaskFailed(f"{job.task_name} ({job.title.key}): {error}, over "
                              f"{attempt} attempts; the next run makes it")
        except (ExportError, OSError) as error:
            if is_transient(error) and attempt < job.retry.attempts:
                time.sleep(job.retry.delay_before(attempt + 1))
                attempt += 1
                continue
            write_json_atomic(job.path("error"),
                              build_error_record(job, error, inputs, attempt, started_at))
            tries = f" after {attempt} attempts" if attempt > 1 else ""
            return TaskFailed(f"{job.task_name} ({job.title.key}): {describe(error)}{tries}")


def describe(error):
    """One line for an error: ours carry their cause; an OSError gets its file and reason."""
    if isinstance(error, OSError) and not isinstance(error, ExportError):
        return f"I/O error: {error.strerror or error} ({error.filename})"
    return str(error)
