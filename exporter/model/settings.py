"""Where things are and what is selected: doit command-line vars, then environment, then defaults."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.model import layout
from exporter.model.errors import LibraryError
from exporter.model.locations import ObjectStoreError, parse_location
from exporter.model.spec import load_schema
from exporter.model.variables import DEFAULTS, ENV_NAMES, OTHER_VAR_NAMES, VAR_NAME, VAR_NAMES

# The algorithms c2pa signs with (c2pa_alg=), and the key each takes.
SIGNING_ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
# cluster_insecure= (any case; empty: no)
YES_NO = {"yes": True, "no": False, "": False}


class SettingsError(LibraryError):
    """A doit variable (or its environment variable) that is unknown or malformed: one
    line naming it and what it accepts; nothing runs (exit 3)."""


@dataclass(frozen=True)
class ClusterAddress:
    """The Dask scheduler's address and how to reach it (docs/cluster.md): the cluster's
    CA, this client's certificate and key for tls://, or the user's explicit consent to
    plain tcp:// on a host that is not this machine. str() is the address."""

    address: str
    tls_ca: str | None = None       # absolute paths: checked readable, PEM and matching
    tls_cert: str | None = None
    tls_key: str | None = None      # None: the key is in the certificate file
    insecure: bool = False          # cluster_insecure=yes

    def __str__(self) -> str:
        return self.address


@dataclass(frozen=True)
class SigningFiles:
    """c2pa_cert=, c2pa_key= (absolute paths), c2pa_alg=, c2pa_tsa=: what signs every
    export's content credentials (docs/credentials.md); checked and loaded at load by
    media/credentials.load_credentials. `said` is how the user gave each, for its errors."""

    cert: str
    key: str
    alg: str = "es256"
    tsa: str | None = None
    said: tuple[tuple[str, str], ...] = ()

    def given_as(self, name: str) -> str:
        """'REELEXPORT_C2PA_CERT=/path' or 'c2pa_cert=/path'."""
        return dict(self.said).get(name, name)


@dataclass(frozen=True)
class Settings:
    renders: Path
    exports: Path
    platforms_dir: Path
    segments: tuple = ()
    ages: tuple = ()
    platforms: tuple = ()
    preset: str | None = None   # overrides every spec's x264 preset (tests use superfast)
    ffmpeg: str | None = None   # the ffmpeg binary; None: the one bundled in imageio-ffmpeg
    attempts: int = 3           # tries per export when failures are transient
    backoff_s: float = 2.0      # wait before the 2nd try; doubles for each further try
    retry_failed: bool = False  # retry=failed: try again exports that failed on these inputs
    # cluster=tls://HOST:8786 (and its certificates): the media work runs on Dask workers
    cluster: ClusterAddress | None = None
    # renders=s3://BUCKET/PREFIX: `renders` is then its local mirror in the exports root
    # (storage/renders.py), where each final.mp4 is a note of the object's ETag
    renders_url: str | None = None
    # exports=s3://BUCKET/PREFIX: `exports` is then the local tree each export is made in
    # before it is published there (storage/exports.py)
    exports_url: str | None = None
    # c2pa_cert= and c2pa_key= (REELEXPORT_C2PA_*): every export signed; None: credentials off
    signing: SigningFiles | None = None

    @property
    def dep_file(self) -> Path:
        """doit's dependency DB lives in the exports root, not the current directory."""
        return self.exports / layout.DEP_DB

    @property
    def registry_file(self) -> Path:
        return self.exports / layout.REGISTRY

    @property
    def platforms_checked_file(self) -> Path:
        """The platform files last found valid (model.spec.load_specs)."""
        return self.exports / layout.PLATFORMS_CHECKED


def split_list(value: str | None) -> tuple[str, ...]:
    """'youtube, tiktok' -> ('youtube', 'tiktok'); empty or None -> ()."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def command_line_variables() -> dict[str, str]:
    """The NAME=VALUE arguments of this doit invocation (empty outside doit). doit keeps
    them in one module global and offers no call that lists them."""
    from doit import doit_cmd
    return dict(getattr(doit_cmd, "_CMDLINE_VARS", None) or {})


def unknown_variable_problem(names: Iterable[str]) -> str | None:
    """Why the command line's variables cannot be taken: a name no command reads (a typo
    would otherwise be ignored in silence, `platform=youtube` exporting every platform)."""
    unknown = sorted(name for name in names if VAR_NAME.match(name)
                     and name not in VAR_NAMES and name not in OTHER_VAR_NAMES)
    if not unknown:
        return None
    known = ", ".join(f"{name}=" for name in (*VAR_NAMES, *OTHER_VAR_NAMES))
    listed = ", ".join(f"{name}=" for name in unknown)
    return (f"unknown variable{'s' if len(unknown) > 1 else ''} {listed}: the variables "
            f"are {known} (docs/usage.md)")


def x264_presets() -> tuple[str, ...]:
    """The presets a platform file's video.preset takes (schemas/platform.schema.json)."""
    return tuple(load_schema("platform")["properties"]["video"]["properties"]["preset"]["enum"])


def overlap_problem(renders: str, exports: str, renders_at: Any, exports_at: Any
                    ) -> str | None:
    """Why renders= and exports= cannot be used together (None: they can): the same tree,
    or one inside the other (a run would read its own exports as renders, and `doit clean`
    of a platform named like a render's file would delete the render). Pure: paths are
    compared as written and resolved, buckets by bucket and prefix."""
    def inside(a: str, b: str) -> bool:
        return a == b or a.startswith(b.rstrip("/") + "/") or not b.strip("/")
    if renders_at is not None and exports_at is not None:
        if renders_at.bucket != exports_at.bucket:
            return None
        overlap = (inside(renders_at.prefix, exports_at.prefix)
                   or inside(exports_at.prefix, renders_at.prefix))
    elif renders_at is None and exports_at is None:
        a, b = Path(renders).resolve(), Path(exports).resolve()
        overlap = a == b or a.is_relative_to(b) or b.is_relative_to(a)
    else:
        return None
    if not overlap:
        return None
    how = "is" if str(renders).rstrip("/") == str(exports).rstrip("/") else "overlaps"
    return (f"renders={renders} {how} exports={exports}: the renders and the exports must "
            "be apart, neither inside the other")


def resolve_settings(get_var: Callable[[str, str | None], str | None],
                     environ: Mapping[str, str] | None = None,
                     variables: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from doit vars (`get_var(name, default)`) and the environment.

    `variables`: every NAME=VALUE of the command line (default: doit's). A name no command
    reads, or a value a setting cannot take, is a SettingsError naming the variable (or
    environment variable) and what it accepts.
    """
    environ = os.environ if environ is None else environ
    problem = unknown_variable_problem(command_line_variables() if variables is None
                                       else variables)
    if problem:
        raise SettingsError(problem)

    def pick(name: str) -> str | None:
        value = get_var(name, None)
        if value is None and name in ENV_NAMES:
            value = environ.get(ENV_NAMES[name])
        return value if value is not None else DEFAULTS.get(name)

    def said(name: str) -> str:
        """How the user gave `name`: 'attempts=abc' or 'REELEXPORT_ATTEMPTS=abc'."""
        if get_var(name, None) is None and environ.get(ENV_NAMES.get(name, "")) is not None:
            return f"{ENV_NAMES[name]}={pick(name)}"
        return f"{name}={pick(name)}"

    def number(name: str, kind: type, accepts: str, least: float) -> float:
        """The value of `name`, refused in one line unless a finite `kind` >= `least`
        (never clamped: attempts=0 is a mistake to say, not to turn into 1)."""
        try:
            value = kind(pick(name).strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < least:
            raise SettingsError(f"{said(name)}: not {accepts}")
        return value

    retry = pick("retry")
    if retry not in (None, "", "failed"):
        raise SettingsError(f"{said('retry')}: retry= takes only 'failed' (retry=failed "
                            "tries again the exports that failed on unchanged inputs)")
    preset = pick("preset") or None
    if preset is not None and preset not in x264_presets():
        raise SettingsError(f"{said('preset')}: not an x264 preset; preset= takes one of "
                            f"{', '.join(x264_presets())}")
    insecure = pick("cluster_insecure")
    if insecure is not None and insecure.strip().lower() not in YES_NO:
        raise SettingsError(f"{said('cluster_insecure')}: cluster_insecure= takes yes or no "
                            "(yes: plain tcp:// to a scheduler that is not on this machine)")
    cluster = pick("cluster") or None
    if cluster is not None:
        cluster = ClusterAddress(cluster.strip(), *tls_files(pick, said),
                                 insecure=YES_NO[(insecure or "").strip().lower()])
    locations = {}
    for name in ("renders", "exports"):
        try:
            locations[name] = parse_location(pick(name))
        except ObjectStoreError as error:
            raise SettingsError(f"{name}={error}") from None
    problem = overlap_problem(pick("renders"), pick("exports"), locations["renders"],
                              locations["exports"])
    if problem:
        raise SettingsError(problem)
    if cluster is not None and cluster.address.lower().startswith("inproc://"):
        raise SettingsError(f"{said('cluster')}: inproc:// is a scheduler inside one process; "
                            "a run reaches a cluster at tls://HOST:PORT (docs/cluster.md)")
    exports, exports_url = Path(pick("exports")), None
    if locations["exports"] is not None:
        # the exports tree is made here, then published to the bucket (docs/storage.md)
        exports_url = str(locations["exports"])
        exports = state_directory(environ) / locations["exports"].bucket
        exports = exports / (locations["exports"].prefix or "_")
    renders, renders_url = Path(pick("renders")), None
    if locations["renders"] is not None:
        renders_url = str(locations["renders"])
        renders = (exports / layout.RENDERS_MIRROR / locations["renders"].bucket
                   / locations["renders"].prefix)
    return Settings(
        renders=renders,
        renders_url=renders_url,
        exports=exports,
        exports_url=exports_url,
        platforms_dir=Path(pick("platforms_dir")),
        segments=split_list(pick("segment")),
        ages=split_list(pick("age")),
        platforms=split_list(pick("platforms")),
        preset=preset,
        ffmpeg=pick("ffmpeg") or None,
        attempts=int(number("attempts", int,
                            "a whole number of tries (attempts=3: 1 or more)", 1)),
        backoff_s=number("backoff", float,
                         "a number of seconds, 0 or more (backoff=2: the wait before the "
                         "2nd try, doubled for each further one)", 0),
        retry_failed=retry == "failed",
        cluster=cluster,
        signing=signing_files(pick, said),
    )


def signing_files(pick: Callable[[str], str | None],
                  said: Callable[[str], str]) -> SigningFiles | None:
    """c2pa_cert=, c2pa_key=, c2pa_alg=, c2pa_tsa= (None: none given, credentials off). Only
    their shape here; the files are read and checked at load (media/credentials.py)."""
    given = {name: (pick(name) or "").strip() or None
             for name in ("c2pa_cert", "c2pa_key", "c2pa_alg", "c2pa_tsa")}
    if not (given["c2pa_cert"] or given["c2pa_key"]):
        other = next((name for name in ("c2pa_alg", "c2pa_tsa") if given[name]), None)
        if other:
            raise SettingsError(f"{said(other)}: c2pa_cert= and c2pa_key= are missing: "
                                "signing takes a certificate and its key (docs/credentials.md)")
        return None
    for needed in ("c2pa_cert", "c2pa_key"):
        if not given[needed]:
            other = "c2pa_key" if needed == "c2pa_cert" else "c2pa_cert"
            raise SettingsError(f"{said(other)}: {needed}= is missing: signing takes the "
                                "certificate chain and its key (docs/credentials.md)")
    alg = (given["c2pa_alg"] or "es256").lower()
    if alg not in SIGNING_ALGORITHMS:
        raise SettingsError(f"{said('c2pa_alg')}: not a C2PA signing algorithm; c2pa_alg= "
                            f"takes one of {', '.join(SIGNING_ALGORITHMS)}")
    tsa = given["c2pa_tsa"]
    if tsa and not re.match(r"^https?://[^\s/]+", tsa):
        raise SettingsError(f"{said('c2pa_tsa')}: not an http(s) URL of a timestamp authority")
    return SigningFiles(
        cert=os.path.abspath(given["c2pa_cert"]), key=os.path.abspath(given["c2pa_key"]),
        alg=alg, tsa=tsa,
        said=tuple((name, said(name)) for name in given if given[name]))


def state_directory(environ: Mapping[str, str]) -> Path:
    """Where the local trees of exports published to buckets are kept: REELEXPORT_STATE_DIR,
    else $XDG_STATE_HOME/reelexport (~/.local/state/reelexport)."""
    if environ.get("REELEXPORT_STATE_DIR"):
        return Path(environ["REELEXPORT_STATE_DIR"]).absolute()
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                          "state")
    return Path(base, "reelexport").absolute()


def tls_files(pick: Callable[[str], str | None],
              said: Callable[[str], str]) -> tuple[str | None, str | None, str | None]:
    """tls_ca=, tls_cert=, tls_key= as absolute paths, each readable and PEM, the key the
    certificate's (None, None, None: not given). A SettingsError names the variable and
    its file otherwise: found now, not as a failed handshake once the run has started."""
    given = {name: pick(name) or None for name in ("tls_ca", "tls_cert", "tls_key")}
    if not any(given.values()):
        return None, None, None
    for needed in ("tls_ca", "tls_cert"):
        if not given[needed]:
            other = next(name for name, value in given.items() if value)
            raise SettingsError(f"{said(other)}: {needed}= is missing: a TLS cluster takes "
                                "tls_ca=, tls_cert= and tls_key= (the key may be in the "
                                "certificate file instead; docs/cluster.md)")
    texts = {}
    for name, path in given.items():
        if path:
            try:
                with open(path, encoding="ascii", errors="replace") as file:
                    texts[name] = file.read()
            except OSError as error:
                raise SettingsError(f"{said(name)}: cannot be read "
                                    f"({error.strerror or error})") from None
    for name in ("tls_ca", "tls_cert"):
        if "-----BEGIN CERTIFICATE-----" not in texts[name]:
            raise SettingsError(f"{said(name)}: not a PEM certificate (no -----BEGIN "
                                "CERTIFICATE----- line)")
    key = "tls_key" if given["tls_key"] else "tls_cert"
    if "PRIVATE KEY-----" not in texts[key]:
        raise SettingsError(f"{said(key)}: no PEM private key in it" + (
            "" if given["tls_key"] else "; give the certificate's key with tls_key="))
    if "ENCRYPTED" in texts[key]:
        raise SettingsError(f"{said(key)}: the key is encrypted and Dask cannot ask for its "
                            "passphrase; decrypt it (openssl pkey -in KEY -out KEY.plain), "
                            "readable by you alone")
    import ssl  # noqa: PLC0415  (12 ms that a run without a TLS cluster does not pay)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=given["tls_ca"])
    except ssl.SSLError as error:
        raise SettingsError(f"{said('tls_ca')}: cannot be loaded "
                            f"({error.reason or error})") from None
    try:
        context.load_cert_chain(given["tls_cert"], given["tls_key"], password=no_passphrase)
    except (ssl.SSLError, ValueError) as error:
        cause = ("not the key of that certificate" if getattr(error, "reason", None)
                 == "KEY_VALUES_MISMATCH" else f"cannot be loaded ({error})")
        raise SettingsError(f"{said(key)}: {cause} ({said('tls_cert')})") from None
    return tuple(os.path.abspath(path) if path else None for path in given.values())


def no_passphrase() -> str:
    """A key that asks for a passphrase is refused above; never prompt for one."""
    raise ValueError("the key is encrypted")
