"""Whether an export's files are still the ones it made: doit checks only that targets
exist, so a write in place to `youtube.mp4` (or a redelivery with an old mtime) would keep
being certified. At each success the targets' states (inode, size, mtime, ctime) and the
sidecar's sha256 are saved with the task in doit's DB; at each check a target whose state
is as saved is trusted without reading it, and any other is hashed and compared with what
the sidecar records. A file whose bytes differ makes the export stale: it is made again
from the source.
"""

from __future__ import annotations

import hashlib
from typing import Any

from exporter.model.files import file_state, sha256_file
from exporter.model.records import (
    TARGET_KINDS,
    Record,
    output_sha256,
    read_record,
    recorded_sha256,
    video_inputs_match,
)
from exporter.pipeline.export.job import ExportJob

# The DB value name: {"states_digest": states_digest of the targets, "sidecar_sha256": ...}
# (before 0.1.0's issue 39: "states", the list itself, still read).
OUTPUTS_VALUE = "outputs"


def target_states(job: ExportJob) -> list[list[int] | None]:
    """The state of each target, as JSON keeps it (None: missing)."""
    return [list(state) if state else None
            for state in (file_state(name) for name in job.target_names)]


def states_digest(states: list[list[int] | None]) -> str:
    """The targets' states as one short string: doit keeps every up-to-date task's saved
    values in memory to the end of the run (its `task.values`), 40,000 of them in a full
    check, and 20 numbers in lists cost 1.5 kB where this costs 73 bytes."""
    return hashlib.blake2b(repr(states).encode(), digest_size=12).hexdigest()


def outputs_record(job: ExportJob) -> dict[str, Any]:
    """What is saved with the task after it succeeded: its files' states now."""
    return {"states_digest": states_digest(target_states(job)),
            "sidecar_sha256": sha256_file(job.path("sidecar"))}


def states_as_saved(saved: dict[str, Any] | None, states: list[list[int] | None]) -> bool:
    """The targets' states are the ones saved (as a digest, or as the list an older version
    saved)."""
    if not saved:
        return False
    if "states_digest" in saved:
        return saved["states_digest"] == states_digest(states)
    return saved.get("states") == states


def outputs_intact(job: ExportJob, saved: dict[str, Any] | None) -> bool:
    """True when every target is as saved, or, where its state differs, its bytes are the
    ones recorded (the sidecar's own against the sha256 saved with the task; the others
    against the sidecar). Saved by an older version (no value): every file is hashed."""
    states = target_states(job)
    if states_as_saved(saved, states):
        return True
    if any(state is None or state[0] == "unreadable" for state in states):
        return False
    sidecar_path = job.path("sidecar")
    if saved and sha256_file(sidecar_path) != saved.get("sidecar_sha256"):
        return False
    sidecar = read_record(sidecar_path)
    if not sidecar:
        return False
    for kind in TARGET_KINDS:
        if kind == "sidecar":
            continue
        expected = recorded_sha256(sidecar, kind)
        if expected is None and kind == "metadata":
            continue        # a sidecar written before the metadata file's hash was recorded
        if expected is None or sha256_file(job.path(kind)) != expected:
            return False
    return True


def video_is_current(job: ExportJob, inputs: Record, sidecar: Record | None) -> bool:
    """True when the video exists, is intact, and was encoded from exactly these inputs.

    doit forgets tasks finished in a run that was SIGKILLed (its DB is written at the
    end), so the action itself must recognise finished work instead of encoding again.
    """
    if not video_inputs_match(sidecar, inputs) or not job.path("video").exists():
        return False
    return sha256_file(job.path("video")) == output_sha256(sidecar)
