"""The per-export records: the sidecar (what was made, from what, how) and the error record
(why the last attempt failed), with the file names of an export.

The one module that knows their fields: the export action builds them with the functions
here, and the registry, status, gallery and history read them only through the readers
below, so a change of format is a change of this file.
"""

from __future__ import annotations

import functools

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from exporter.model.files import read_json

RECORD_VERSION = 1
# The files an export's doit task declares as its targets (its error record is not one).
TARGET_KINDS = ("video", "metadata", "sidecar", "cover", "poster")
FILE_NAMES = {"video": "{platform}.mp4", "metadata": "metadata_{platform}.json",
              "sidecar": "{platform}.export.json", "cover": "{platform}.cover.jpg",
              "poster": "{platform}.poster.jpg", "error": "{platform}.error.json"}
# The inputs the encoded video depends on; a metadata change never re-encodes it.
VIDEO_INPUTS = ("source_sha256", "encode_key")

Record = dict[str, Any]


def now_utc() -> str:
    """The time stamps of records and events: UTC, to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@functools.lru_cache(maxsize=256)
def export_file_names(platform: str) -> dict[str, str]:
    """The name of each file one export writes in its title's folder, by kind (one dict per
    platform, shared by its 10,000 exports: not to be changed)."""
    return {kind: pattern.format(platform=platform) for kind, pattern in FILE_NAMES.items()}


def identity(title_id: str, segment: str, age: str, platform: str) -> Record:
    """The fields naming an export, first in both records and in each registry row."""
    return {"title_id": title_id, "segment": segment, "age": age, "platform": platform}


# ---- writing ------------------------------------------------------------------------------

def sidecar_document(*, names: Record, output: Record, metadata_file: str, source: Record,
                     spec: Record, encode: Record, inputs: Record, started_at: str,
                     finished_at: str, attempts: int, credentials: Record | None = None
                     ) -> Record:
    """The sidecar of a video just made; `with_outputs` completes it once the images and
    metadata are made too. `credentials`: its C2PA manifest (label, claims, signer), when
    signing is on (media/credentials.credentials_record)."""
    return {"schema_version": RECORD_VERSION, **names, "output": output,
            "metadata_file": metadata_file, "metadata_warnings": [], "source": source,
            "spec": spec, "encode": encode, "inputs": inputs, "started_at": started_at,
            "finished_at": finished_at, "attempts": attempts,
            **({"credentials": credentials} if credentials is not None else {})}


def with_outputs(sidecar: Record, images: dict[str, Record], inputs: Record,
                 metadata_warnings: list[str], metadata_sha256: str,
                 upload: Record | None = None) -> Record:
    """The sidecar as written: its images, the metadata file's sha256, the inputs the whole
    export is made from, and what its upload request says (`upload`: privacy, declarations,
    the fields it still needs; requests.build_request)."""
    extra = {"upload": upload_summary(upload)} if upload is not None else {}
    return {**sidecar, **images, "inputs": inputs, "metadata_warnings": metadata_warnings,
            "metadata_file_sha256": metadata_sha256, **extra}


UPLOAD_FACTS = ("privacy", "publish_at", "made_for_kids", "ai_generated")


def upload_summary(upload: Record) -> Record:
    """What the sidecar keeps of an export's upload request (the registry shows it)."""
    return {**{key: upload.get(key) for key in UPLOAD_FACTS},
            "needs": [need["field"] for need in upload.get("needs") or []]}


def recorded_sha256(sidecar: Record | None, kind: str) -> str | None:
    """The sha256 the sidecar records of its export's file of `kind` (video, metadata,
    cover, poster); None when it records none (made by an older version)."""
    sidecar = sidecar or {}
    if kind == "video":
        return output_sha256(sidecar)
    if kind == "metadata":
        return sidecar.get("metadata_file_sha256")
    return (sidecar.get(kind) or {}).get("sha256")


def error_document(*, names: Record, cause: str, error_type: str, transient: bool,
                   stderr_tail: str, source: str, inputs: Record, attempts: int,
                   started_at: str, failed_at: str) -> Record:
    """The error record of a failed export: its cause and the inputs it failed on."""
    return {"schema_version": RECORD_VERSION, **names, "cause": cause,
            "error_type": error_type, "transient": transient, "stderr_tail": stderr_tail,
            "source": source, "inputs": inputs, "attempts": attempts,
            "started_at": started_at, "failed_at": failed_at}


# ---- reading ------------------------------------------------------------------------------

def read_record(path: Path) -> Record | None:
    """A sidecar or error record; None when absent or unreadable."""
    return read_json(path)


def output_sha256(sidecar: Record | None) -> str | None:
    return ((sidecar or {}).get("output") or {}).get("sha256")


def recorded_quality(sidecar: Record | None) -> Record | None:
    """The sidecar's content check: its score against the source (metric, mean, p5,
    worst) or, for a remux, its packets proven the source's; None when made before."""
    return ((sidecar or {}).get("encode") or {}).get("quality")


def recorded_credentials(sidecar: Record | None) -> Record | None:
    """The sidecar's content credentials (its manifest's label, claims and signer); None
    when its video is not signed."""
    return (sidecar or {}).get("credentials")


def credentials_facts(sidecar: Record | None) -> Record | None:
    """What the registry, status, gallery and upload queue show of an export's content
    credentials: None when unsigned, else its manifest's label, what it states, who signed."""
    recorded = recorded_credentials(sidecar)
    if not recorded:
        return None
    claims, signer = recorded.get("claims") or {}, recorded.get("signer") or {}
    ingredient = claims.get("ingredient") or {}
    return {"label": recorded.get("label"), "actions": claims.get("actions"),
            "digital_source_type": claims.get("digital_source_type"),
            "parent": ingredient.get("title"),
            "parent_has_manifest": bool(ingredient.get("has_manifest")),
            "signer": signer.get("name"), "fingerprint": signer.get("fingerprint")}


def recorded_inputs(record: Record | None) -> Record:
    """The inputs a sidecar's export, or an error record's attempt, was made from."""
    return (record or {}).get("inputs") or {}


def video_inputs_match(sidecar: Record | None, inputs: Record) -> bool:
    """True when the sidecar's video was encoded from exactly these inputs."""
    recorded = recorded_inputs(sidecar)
    return bool(sidecar) and all(recorded.get(key) == inputs[key] for key in VIDEO_INPUTS)


def image(sidecar: Record | None, kind: str) -> Record | None:
    """The record of the sidecar's `cover` or `poster` image."""
    return (sidecar or {}).get(kind)


def source_probe(sidecar: Record) -> Record:
    return sidecar["source"]["probe"]


def output_duration_s(sidecar: Record) -> float:
    return sidecar["output"]["duration_s"]


def export_facts(sidecar: Record) -> Record:
    """What a registry row shows of an export made."""
    output, encode = sidecar.get("output", {}), sidecar.get("encode", {})
    upload = sidecar.get("upload") or {}
    return {"size_bytes": output.get("size_bytes"), "duration_s": output.get("duration_s"),
            "sha256": output.get("sha256"), "mode": encode.get("mode"),
            "finished_at": sidecar.get("finished_at"), "ffmpeg": encode.get("ffmpeg_version"),
            "quality": encode.get("quality"),
            **({"credentials": credentials_facts(sidecar)} if "credentials" in sidecar else {}),
            **{key: upload.get(key) for key in UPLOAD_FACTS},
            "needs": upload.get("needs") if "upload" in sidecar else ["request"]}


def failure_facts(error: Record) -> Record:
    """What a registry row shows of a failed export."""
    return {"cause": error.get("cause"), "failed_at": error.get("failed_at")}


def tile_facts(sidecar: Record | None) -> Record | None:
    """The part of a sidecar a gallery tile shows (kept in the gallery's cache)."""
    if not sidecar:
        return None
    output = sidecar.get("output", {})
    return {"output": {k: output.get(k) for k in
                       ("video_bitrate", "size_bytes", "duration_s", "width", "height")},
            "poster": sidecar.get("poster"), "quality": recorded_quality(sidecar),
            **({"credentials": credentials_facts(sidecar)} if "credentials" in sidecar else {})}


def remake_causes(previous: Record | None, inputs: Record, *, spec_sha256: str | None,
                  ffmpeg_version: str, tool_version: str, output_missing: bool,
                  retried: bool) -> list[str]:
    """Why an export is made again, from its sidecar before and what it is made from now:
    "new", "retry" (retry=failed), "source changed", "metadata changed", "thumbnail
    changed", "spec changed",
    "tool changed" (ffmpeg or reelexport), "settings changed" (preset), "signer changed"
    (the C2PA certificate, or signing turned on or off), "output missing",
    or "forced" (nothing changed: `doit -a`, or doit's record of it forgotten or lost)."""
    causes = ["retry"] if retried else []
    if not previous:
        return causes or ["new"]
    before = recorded_inputs(previous)
    if before.get("source_sha256") != inputs.get("source_sha256"):
        causes.append("source changed")
    if before.get("metadata_sha256") != inputs.get("metadata_sha256"):
        causes.append("metadata changed")
    if before.get("thumbnail_sha256") != inputs.get("thumbnail_sha256"):
        causes.append("thumbnail changed")
    spec_changed = (previous.get("spec") or {}).get("sha256") != spec_sha256
    if spec_changed:
        causes.append("spec changed")
    encode = previous.get("encode") or {}
    tool_changed = (encode.get("ffmpeg_version") != ffmpeg_version
                    or encode.get("tool_version") != tool_version)
    if tool_changed:
        causes.append("tool changed")
    if not (spec_changed or tool_changed) and any(
            before.get(k) != inputs.get(k) for k in ("encode_key", "metadata_rules_key")):
        causes.append("settings changed")
    if before.get("credentials") != inputs.get("credentials"):
        causes.append("signer changed")
    if output_missing:
        causes.append("output missing")
    return causes or ["forced"]
