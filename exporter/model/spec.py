"""Platform YAML -> validated Spec. An invalid file stops the run before any encode."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from exporter import ENCODER_VERSION, __version__
from exporter.model.errors import SpecError
from exporter.model.files import file_state, read_json, write_json_atomic

if TYPE_CHECKING:
    import jsonschema

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
# doit's task groups and every command (doit's and ours: pyproject.toml's plugins), which
# a platform's group task of the same name would shadow on the command line.
RESERVED_NAMES = {"export", "registry", "list", "run", "clean", "forget", "info", "status",
                  "help", "ignore", "reset-dep", "strace", "dumpdb", "tabcompletion",
                  "history", "uploaded", "uploads", "watch",
                  # a render's files: a platform of that name would write final.mp4 (and
                  # `doit clean` delete it) wherever renders and exports meet
                  "final", "metadata", "thumbnail"}
# Container overhead allowance when proving that the size cap cannot be exceeded.
MUX_OVERHEAD = 1.02
# The x264 preset of a spec that names none, and of the shipped ones: the best VMAF per CPU
# second within 1 point of medium on every sample and real clip at the shipped bitrates
# (docs/performance.md, bench/quality.py --presets).
DEFAULT_PRESET = "veryfast"


def load_schema(name: str) -> dict[str, Any]:
    """Load schemas/{name}.schema.json (shipped beside the package)."""
    return json.loads((SCHEMAS_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))


def schema_error_line(error: jsonschema.exceptions.ValidationError) -> str:
    """'video.bitrate: 'fast' is not of type 'integer'' from a jsonschema error."""
    where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    return f"{where}: {error.message}"


def first_schema_error(document: Any, schema: dict[str, Any]) -> str | None:
    """The most relevant validation error as one line, or None when the document is valid.
    jsonschema is imported here, not with the module: its import is a tenth of a second
    that a run whose platform files were already checked does not pay (load_specs)."""
    import jsonschema  # noqa: PLC0415
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    return None if error is None else schema_error_line(error)


@dataclass(frozen=True)
class Spec:
    """One platform's export specification, as written in its YAML file."""

    name: str
    display_name: str
    video: dict
    audio: dict
    limits: dict
    fit: str
    container: dict
    metadata: dict
    cover: dict
    path: Path
    upload: dict = field(default_factory=dict)   # request defaults (docs/uploads.md)
    quality: dict = field(default_factory=dict)  # score floors per metric (docs/quality.md)
    colour: dict = field(default_factory=dict)   # {hdr: tonemap | reject} (docs/quality.md)

    @property
    def hdr_policy(self) -> str:
        """What an HDR render becomes: 'tonemap' (an SDR export, the default) or 'reject'."""
        return self.colour.get("hdr", "tonemap")

    @property
    def audio_required(self) -> bool:
        return self.audio.get("required", True)

    @property
    def min_duration(self) -> float:
        """The shortest export the platform takes, in seconds (0: no minimum)."""
        return float(self.limits.get("min_duration", 0))

    @property
    def on_short(self) -> str:
        return self.limits.get("on_short", "reject")

    @property
    def preset(self) -> str:
        """The spec's x264 preset, or the default."""
        return self.video.get("preset", DEFAULT_PRESET)

    def encode_settings(self, preset_override: str | None = None) -> dict[str, Any]:
        """Everything that changes the encoded bytes, and nothing else.

        Shared encodes key on this, and doit's config_changed uses it, so editing a
        metadata rule never redoes a video encode.
        """
        video = dict(self.video)
        video["preset"] = preset_override or self.preset
        return {
            "video": video,
            "audio": self.audio,
            "limits": self.limits,
            "fit": self.fit,
            "container": self.container,
            "colour": {"hdr": self.hdr_policy},
            "encoder_version": ENCODER_VERSION,
        }


def digest(document: Any) -> str:
    """Stable sha256 of a JSON-able document (sorted keys, no whitespace)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def worst_case_size(video: dict[str, Any], audio: dict[str, Any],
                    limits: dict[str, Any]) -> int:
    """Largest file an encode can produce: maxrate is a hard VBV cap for the whole duration."""
    seconds = limits["max_duration_s"]
    return int((video["maxrate"] + audio["bitrate"]) / 8 * seconds * MUX_OVERHEAD)


def non_finite_field(value: Any, where: str = "") -> str | None:
    """The first field holding NaN or an infinity (YAML's .nan, .inf), as 'a.b: .nan ...':
    JSON Schema's number takes them, and every comparison with one is false."""
    if isinstance(value, float) and not math.isfinite(value):
        shown = ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
        return f"{where}: {shown} is not a number a platform file can take"
    if isinstance(value, dict):
        found = (non_finite_field(item, f"{where}.{key}" if where else str(key))
                 for key, item in value.items())
        return next((problem for problem in found if problem), None)
    if isinstance(value, list):
        found = (non_finite_field(item, f"{where}[{index}]") for index, item in enumerate(value))
        return next((problem for problem in found if problem), None)
    return None


# x264's ultrafast turns off CABAC and B-frames: its streams are Constrained Baseline.
BASELINE_ONLY_PRESETS = ("ultrafast",)


def preset_problem(preset: str, profile: str) -> str | None:
    """Why x264's `preset` cannot make `profile` (None: it can)."""
    if preset in BASELINE_ONLY_PRESETS and profile != "baseline":
        return (f"preset {preset} cannot make profile {profile} (it turns off CABAC and "
                "B-frames: x264 writes Constrained Baseline); use superfast or slower")
    return None


def check_consistency(doc: dict[str, Any], stem: str) -> str | None:
    """Rules a JSON schema cannot say. Returns one 'field: cause' line or None."""
    video, audio, limits = doc["video"], doc["audio"], doc["limits"]
    problem = preset_problem(video.get("preset", DEFAULT_PRESET), video["profile"])
    if problem:
        return f"video.preset: {problem}"
    if doc["name"] != stem:
        return f"name: '{doc['name']}' must equal the file name '{stem}'"
    if doc["name"] in RESERVED_NAMES:
        return f"name: '{doc['name']}' is reserved for a doit task or command"
    if video["maxrate"] < video["bitrate"]:
        return f"video.maxrate: {video['maxrate']} is below video.bitrate {video['bitrate']}"
    if limits.get("min_duration", 0) > limits["max_duration_s"]:
        return (f"limits.min_duration: {limits['min_duration']} is over "
                f"limits.max_duration_s {limits['max_duration_s']}")
    keyframes = limits.get("keyframes", {})
    interval = video["gop"] / video["fps"]
    low, high = keyframes.get("min_interval_s", 0), keyframes.get("max_interval_s", float("inf"))
    if not low <= interval <= high:
        return (f"video.gop: {video['gop']} frames at {video['fps']} fps is a keyframe every "
                f"{interval:g} s, outside limits.keyframes ({low:g} to {high:g} s)")
    floor = limits.get("audio", {}).get("min_bitrate", 0)
    if audio["bitrate"] < floor:
        return (f"audio.bitrate: {audio['bitrate']} is below limits.audio.min_bitrate "
                f"{floor}")
    for name, value in (doc.get("quality") or {}).get("ssim", {}).items():
        if not 0 <= value <= 1:
            return f"quality.ssim.{name}: {value} is outside 0 to 1 (SSIM's scale)"
    for name, value in (doc.get("quality") or {}).get("vmaf", {}).items():
        if not 0 <= value <= 100:
            return f"quality.vmaf.{name}: {value} is outside 0 to 100 (VMAF's scale)"
    worst = worst_case_size(video, audio, limits)
    if worst > limits["max_size_bytes"]:
        return (f"limits.max_size_bytes: {limits['max_size_bytes']} could be exceeded: "
                f"(video.maxrate + audio.bitrate) x limits.max_duration_s is up to {worst} bytes")
    return None


# libyaml's safe loader where PyYAML was built with it: the same documents, a tenth of the
# time (four platform files cost the pure-Python loader 0.1 s of every run, the no-op's too)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_spec(path: Path | str, checked: bool = False) -> Spec:
    """Read, validate and return one platform spec; SpecError('file: field: cause') if invalid.
    `checked`: this very file was validated by this very code and schema (load_specs)."""
    path = Path(path)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read: {' '.join(str(exc).split())}") from None
    problem = None if checked else (non_finite_field(doc)   # before the schema: it takes them
                                    or first_schema_error(doc, load_schema("platform"))
                                    or check_consistency(doc, path.stem))
    if problem is not None:
        raise SpecError(f"{path}: {problem}")
    return Spec(
        name=doc["name"],
        display_name=doc["display_name"],
        video=doc["video"],
        audio=doc["audio"],
        limits=doc["limits"],
        fit=doc["fit"],
        container=doc["container"],
        metadata=doc["metadata"],
        cover={"fit": doc["fit"], **doc["cover"]},
        path=path,
        upload=doc.get("upload", {}),
        quality=doc.get("quality", {}),
        colour=doc.get("colour", {}),
    )


def load_specs(platforms_dir: Path | str, memo: Path | None = None) -> dict[str, Spec]:
    """Every spec in platforms_dir, by name (sorted); the first invalid file stops the load.

    All files are validated even when only some are selected: a broken spec is found
    before it costs a batch, not on the day someone selects it. `memo` (the exports root's
    `.platforms-checked.json`) remembers the states of the files last found valid, with
    the schema's and this module's: when none has changed since (a file's ctime cannot be
    set back), they are not validated again, which spares the no-op importing jsonschema.
    """
    platforms_dir = Path(platforms_dir)
    files = sorted(platforms_dir.glob("*.yaml"))
    if not files:
        raise SpecError(f"{platforms_dir}: no platform files (*.yaml)")
    states = repr([__version__, *((str(path), file_state(path)) for path in
                                  (SCHEMAS_DIR / "platform.schema.json", Path(__file__), *files))])
    checked = memo is not None and read_json(memo) == {"states": states}
    specs = {spec.name: spec for spec in (load_spec(path, checked) for path in files)}
    if memo is not None and not checked:
        VALIDATED[str(memo)] = states
        remember_validated(memo)
    return specs


# memo path -> the states of the platform files this process validated (load_specs): a first
# run has no exports root to keep the memo in when it loads them, and writes it at its end.
VALIDATED: dict[str, str] = {}


def remember_validated(memo: Path) -> None:
    """Write the memo of the platform files this process validated, if its directory exists
    (`doit status` without a run creates nothing); a read-only root: validated again."""
    states = VALIDATED.get(str(memo))
    if states is None or not memo.parent.is_dir():
        return
    try:
        write_json_atomic(memo, {"states": states})
    except OSError:
        pass


def select_specs(specs: dict[str, Spec], names: Collection[str]) -> dict[str, Spec]:
    """The specs named (all when `names` is empty); an unknown name lists what exists."""
    unknown = [name for name in names if name not in specs]
    if unknown:
        raise SpecError(f"platforms={','.join(names)}: unknown platform {', '.join(unknown)}; "
                        f"available: {', '.join(specs)}")
    return {name: spec for name, spec in specs.items() if not names or name in names}
