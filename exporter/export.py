"""One (title, platform) export: the doit action behind `{platform}:{title_id}`.

probe -> plan -> ffmpeg into a temporary file -> probe the result -> conformance check ->
rename into place -> metadata and sidecar. Any ExportError becomes an error sidecar and a
one-line failure; nothing half-made is left under a target's name.
"""

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from doit.exceptions import TaskFailed

from . import __version__
from .errors import ConformanceError, EncodeError, ExportError, SourceError
from .metadata import format_metadata, load_source_metadata
from .plan import build_encode
from .probe import moov_before_mdat, probe
from .run import (ffmpeg_version, publish, read_json, remove_stale_temps, run_ffmpeg,
                  sha256_file, temp_path_for, write_json_atomic)
from .spec import digest
from .sources import Title
from .verify import conformance_problems

SIDECAR_VERSION = 1


@dataclass(frozen=True)
class ExportJob:
    """Everything one export needs; picklable, so `doit -n N` workers can run it."""

    title: Title
    spec: object          # exporter.spec.Spec
    exports_root: Path
    ffmpeg: str
    preset: str | None = None

    @property
    def task_name(self):
        return f"{self.spec.name}:{self.title.title_id}"

    @property
    def out_dir(self):
        return self.title.export_dir(self.exports_root)

    @property
    def video_path(self):
        return self.out_dir / f"{self.spec.name}.mp4"

    @property
    def metadata_path(self):
        return self.out_dir / f"metadata_{self.spec.name}.json"

    @property
    def sidecar_path(self):
        return self.out_dir / f"{self.spec.name}.export.json"

    @property
    def error_path(self):
        return self.out_dir / f"{self.spec.name}.error.json"

    @property
    def targets(self):
        return [self.video_path, self.metadata_path, self.sidecar_path]

    def encode_settings(self):
        """What the encoded bytes depend on (besides the source): doit's config_changed value."""
        return {**self.spec.encode_settings(self.preset),
                "ffmpeg_version": ffmpeg_version(self.ffmpeg)}


def now_utc():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def current_inputs(job):
    """Content fingerprint of everything the targets are made from."""
    metadata = job.title.metadata
    return {
        "source_sha256": sha256_file(job.title.source),
        "metadata_sha256": sha256_file(metadata) if metadata.exists() else None,
        "encode_key": digest(job.encode_settings()),
        "metadata_rules_key": digest(job.spec.metadata),
    }


# The encoded video depends on these inputs only; metadata changes never re-encode it.
VIDEO_INPUTS = ("source_sha256", "encode_key")


def video_is_current(job, inputs, sidecar):
    """True when the video exists, is intact, and was encoded from exactly these inputs.

    doit forgets tasks finished in a run that was SIGKILLed (its DB is written at the
    end), so the action itself must recognise finished work instead of encoding again.
    """
    if not sidecar or not job.video_path.exists():
        return False
    recorded = sidecar.get("inputs", {})
    if any(recorded.get(key) != inputs[key] for key in VIDEO_INPUTS):
        return False
    return sha256_file(job.video_path) == sidecar["output"]["sha256"]


def identity(job):
    title = job.title
    return {"title_id": title.title_id, "segment": title.segment, "age": title.age,
            "platform": job.spec.name}


def build_sidecar(job, inputs, source_probe, output_probe, output_sha256, plan,
                  started_at, finished_at):
    """The sidecar document: what was made, from what, how, and the probe of the result."""
    return {
        "schema_version": SIDECAR_VERSION,
        **identity(job),
        "output": {
            "path": job.video_path.name,
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
        "metadata_file": job.metadata_path.name,
        "source": {
            "path": str(job.title.source),
            "sha256": inputs["source_sha256"],
            "probe": source_probe.summary(),
        },
        "spec": {"file": str(job.spec.path), "sha256": sha256_file(job.spec.path)},
        "encode": {
            "mode": "encode",
            "key": inputs["encode_key"],
            "settings": job.encode_settings(),
            "trimmed": plan.trimmed,
            "ffmpeg": job.ffmpeg,
            "argv": plan.argv,
            "tool_version": __version__,
        },
        "inputs": inputs,
        "started_at": started_at,
        "finished_at": finished_at,
        "attempts": 1,
    }


def build_error_record(job, error, started_at):
    return {
        "schema_version": SIDECAR_VERSION,
        **identity(job),
        "cause": str(error),
        "error_type": type(error).__name__,
        "stderr_tail": getattr(error, "stderr_tail", ""),
        "source": str(job.title.source),
        "attempts": 1,
        "started_at": started_at,
        "failed_at": now_utc(),
    }


def encode_verified(job, plan, temp):
    """Run the plan into `temp` and check the result; ConformanceError if it misses the spec."""
    run_ffmpeg(plan.argv)
    if not temp.exists():
        raise EncodeError("ffmpeg exited without writing an output")
    result = probe(temp)
    problems = conformance_problems(result, job.spec, plan.duration_s, moov_before_mdat(temp))
    if problems:
        raise ConformanceError("output does not conform: " + "; ".join(problems))
    return result


def export(job):
    """Make (or recognise as made) one export. Raises ExportError with a one-line cause."""
    started_at = now_utc()
    job.out_dir.mkdir(parents=True, exist_ok=True)
    for target in job.targets:
        remove_stale_temps(target)
    metadata_document = format_metadata(load_source_metadata(job.title.metadata), job.spec)
    if not job.title.source.exists():
        raise SourceError(f"{job.title.source.name} is missing")
    inputs = current_inputs(job)
    sidecar = read_json(job.sidecar_path)
    if video_is_current(job, inputs, sidecar):
        write_json_atomic(job.sidecar_path, {**sidecar, "inputs": inputs})
    else:
        source_probe = probe(job.title.source)
        temp = temp_path_for(job.video_path)
        plan = build_encode(job.ffmpeg, job.title.source, source_probe, job.spec, temp,
                            job.preset)
        try:
            output_probe = encode_verified(job, plan, temp)
            output_sha256 = sha256_file(temp)
            publish(temp, job.video_path)
        finally:
            temp.unlink(missing_ok=True)
        write_json_atomic(job.sidecar_path, build_sidecar(
            job, inputs, source_probe, output_probe, output_sha256, plan, started_at,
            now_utc()))
    write_json_atomic(job.metadata_path, metadata_document)
    job.error_path.unlink(missing_ok=True)


def export_action(job):
    """doit python-action: True on success, TaskFailed with one line naming title and cause."""
    started_at = now_utc()
    try:
        export(job)
    except ExportError as error:
        write_json_atomic(job.error_path, build_error_record(job, error, started_at))
        return TaskFailed(f"{job.task_name} ({job.title.key}): {error}")
    return True
