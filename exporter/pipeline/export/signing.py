"""An export's content credentials (media/credentials.py), as part of making it: the video
signed on its temporary name before it is verified and published, the manifest read back
and compared with what was meant, and a video already made signed again (never encoded)
when the signer or what the render declares changed.

Nothing here runs when signing is off (job.credentials is None).
"""

from __future__ import annotations

from pathlib import Path

from exporter import __version__
from exporter.media.credentials import (
    carries_manifest,
    claims_key,
    credentials_record,
    manifest_definition,
    manifest_problems,
    read_manifest,
    sign_in_place,
    wanted_claims,
    what_it_did,
)
from exporter.media.probe import moov_before_mdat, probe
from exporter.media.verify import conformance_problems
from exporter.model.errors import ConformanceError
from exporter.model.files import clone_file, publish, sha256_file, temporary
from exporter.model.records import Record, recorded_credentials
from exporter.pipeline.export.job import ExportJob


def statement_of(document: Record) -> Record:
    """What the manifest states of the render, from its platform metadata document: the
    title, and the AI declaration (true, "partly", false or not declared: None)."""
    return {"title": document.get("title") or "",
            "ai_generated": (document.get("upload") or {}).get("ai_generated")}


def planned(job: ExportJob, statement: Record, did: list[str],
            parent: bool | None = None) -> tuple[Record, Record, bool]:
    """(the manifest definition, the claims it makes, whether the render carries a manifest
    of its own: `parent`, else read from its file) for this export."""
    if parent is None:
        parent = carries_manifest(job.title.source)
    definition = manifest_definition(
        title=statement["title"], ai_generated=statement["ai_generated"], did=did,
        render_has_manifest=parent, render_name=job.title.source.name,
        tool_version=__version__)
    return definition, wanted_claims(definition, job.title.source.name, parent), parent


def sign_video(job: ExportJob, temp: Path, statement: Record, did: list[str]) -> Record:
    """Sign `temp` (the export's temporary name) and read the manifest back; the sidecar's
    `credentials`. ConformanceError when it does not validate or states other than meant:
    the export fails, nothing is published."""
    definition, wanted, parent = planned(job, statement, did)
    sign_in_place(job.credentials, definition, temp, job.title.source if parent else None)
    read = read_manifest(temp)
    problems = manifest_problems(read, wanted, job.credentials)
    if problems:
        raise ConformanceError("content credentials: " + "; ".join(problems))
    return {**credentials_record(read, job.credentials, claims_key(job.credentials, wanted)),
            "did": did}


def did_of(sidecar: Record) -> list[str]:
    """What the export of `sidecar` did to its render: as its credentials record says, else
    (made unsigned) from its encode's mode and argv and the two frame sizes."""
    recorded = recorded_credentials(sidecar)
    if recorded and recorded.get("did"):
        return recorded["did"]
    encode, source = sidecar.get("encode") or {}, (sidecar.get("source") or {}).get("probe") or {}
    copied = encode.get("mode") == "remux" or "copy" in (encode.get("argv") or [])
    output = sidecar.get("output") or {}
    return what_it_did("remux" if copied else "encode",
                       (source.get("width"), source.get("height")), source.get("rotation") or 0,
                       (output.get("width"), output.get("height")))


def signed_as_wanted(job: ExportJob, sidecar: Record, statement: Record) -> bool:
    """True when the video in place is signed by this signer with what it should state."""
    recorded = recorded_credentials(sidecar)
    if not recorded:
        return False
    parent = None
    if job.title.remote_etag:
        # a render in a bucket is not downloaded for a video already made: its bytes are
        # those the video was signed from (same source_sha256), so is whether it carries one
        parent = bool(((recorded.get("claims") or {}).get("ingredient") or {})
                      .get("has_manifest"))
    _, wanted, _ = planned(job, statement, did_of(sidecar), parent)
    return recorded.get("key") == claims_key(job.credentials, wanted)


def sign_again(job: ExportJob, sidecar: Record, statement: Record) -> Record:
    """Sign the video in place anew (a new signer, or a new declaration): its manifest is
    replaced, its media untouched; verified, published, and its sidecar updated."""
    video = job.path("video")
    with temporary(video) as temp:
        clone_file(video, temp)
        credentials = sign_video(job, temp, statement, did_of(sidecar))
        result = probe(temp)
        problems = conformance_problems(
            result, job.spec, sidecar["output"]["duration_s"], moov_before_mdat(temp),
            encoded=(sidecar.get("encode") or {}).get("mode") != "remux")
        if problems:
            raise ConformanceError("output does not conform once signed: " + "; ".join(problems))
        output_sha256 = sha256_file(temp)
        publish(temp, video)
    output = {**sidecar["output"], "size_bytes": result.size_bytes, "sha256": output_sha256,
              "probe": result.summary()}
    return {**sidecar, "output": output, "credentials": credentials}
