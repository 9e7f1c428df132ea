"""Content credentials (C2PA): each export signed with where it came from.

The manifest says what the render declared and what the export did: a `c2pa.actions`
assertion whose first action is `c2pa.created` with the IPTC digitalSourceType of an
AI-declared render (`ai_generated: true`, or `partly`), else `c2pa.opened` of the render as
the export's parent ingredient (its own manifest kept when it carries one); then
`c2pa.transcoded` (or `c2pa.repackaged` for a stream copy) and `c2pa.resized`. A render
that declares nothing gets no AI claim either way (docs/credentials.md).

The pure part (`manifest_definition`, `manifest_problems`, `credentials_record`) is data in,
data out; `load_credentials` (at load), `sign_in_place` and `read_manifest` touch files. c2pa
and cryptography are imported only when signing is configured: a run without it pays nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from exporter.media.probe import top_level_box_headers
from exporter.model.errors import ConformanceError
from exporter.model.files import publish, temporary
from exporter.model.settings import SettingsError, SigningFiles

LOG = logging.getLogger(__name__)

TOOL = "reelexport"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# What a render's `ai_generated` declares, as the IPTC digital source type (none: silent or
# false, no AI claim is made either way).
SOURCE_TYPES = {True: IPTC + "trainedAlgorithmicMedia",
                "partly": IPTC + "compositeWithTrainedAlgorithmicMedia"}
# The render, as the export's parent ingredient (and the id its c2pa.opened action names).
RENDER_LABEL = "render"
# The uuid box a C2PA manifest store sits in, in an ISO BMFF file (MP4, MOV).
C2PA_BOX_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
# A manifest that reads back in one of these is kept; "Invalid" fails the export.
ACCEPTED_STATES = ("Valid", "Trusted")
# The key types each algorithm signs with (cryptography's class names).
KEY_TYPES = {"es256": ("EllipticCurvePrivateKey", "secp256r1"),
             "es384": ("EllipticCurvePrivateKey", "secp384r1"),
             "es512": ("EllipticCurvePrivateKey", "secp521r1"),
             "ps256": ("RSAPrivateKey", None), "ps384": ("RSAPrivateKey", None),
             "ps512": ("RSAPrivateKey", None), "ed25519": ("Ed25519PrivateKey", None)}

Record = dict[str, Any]


@dataclass(frozen=True)
class Credentials:
    """A signer checked at load: its files (read again where it signs: the key is never
    copied, logged or pickled), and what identifies it. Picklable, so `doit -n` and Dask
    workers take it; each process makes its c2pa signer once (`signer_of`)."""

    cert: str
    key: str
    alg: str
    tsa: str | None
    fingerprint: str        # sha256 of the signer certificate (DER): part of up to date
    signer: str             # its subject's common name (or the whole subject)
    issuer: str
    not_after: str

    def identity(self) -> Record:
        """What a sidecar, the registry and `doit status` say of the signer."""
        return {"name": self.signer, "issuer": self.issuer, "fingerprint": self.fingerprint,
                "alg": self.alg, "not_after": self.not_after,
                "timestamped": self.tsa is not None}


# ---- at load ------------------------------------------------------------------------------

def load_credentials(files: SigningFiles | None,
                     now: datetime | None = None) -> Credentials | None:
    """The signer `files` name, checked now: readable, a PEM chain whose first certificate
    is in date, not a CA, for digital signatures, with `files.key` its PKCS#8 key of the
    kind `files.alg` signs with; then made once by c2pa. SettingsError (one line, exit 3)
    naming the variable otherwise. None when signing is off."""
    if files is None:
        return None
    from cryptography import x509  # noqa: PLC0415  (only when signing is configured)
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    cert_text, key_text = read_pem(files, "c2pa_cert", files.cert), read_pem(
        files, "c2pa_key", files.key)
    try:
        chain = x509.load_pem_x509_certificates(cert_text)
    except ValueError:
        raise SettingsError(f"{files.given_as('c2pa_cert')}: not a PEM certificate chain "
                            "(no -----BEGIN CERTIFICATE----- block that reads)") from None
    signer = chain[0]
    now = now or datetime.now(timezone.utc)
    if signer.not_valid_after_utc < now:
        raise SettingsError(f"{files.given_as('c2pa_cert')}: the certificate expired on "
                            f"{signer.not_valid_after_utc:%Y-%m-%d} (make or renew it: "
                            "docs/credentials.md)")
    if signer.not_valid_before_utc > now:
        raise SettingsError(f"{files.given_as('c2pa_cert')}: the certificate is not valid "
                            f"before {signer.not_valid_before_utc:%Y-%m-%d}")
    problem = usage_problem(signer)
    if problem:
        raise SettingsError(f"{files.given_as('c2pa_cert')}: {problem} (docs/credentials.md)")
    if b"-----BEGIN PRIVATE KEY-----" not in key_text:
        raise SettingsError(f"{files.given_as('c2pa_key')}: not a PKCS#8 PEM key (-----BEGIN "
                            "PRIVATE KEY-----); convert it: openssl pkcs8 -topk8 -nocrypt "
                            "-in KEY -out KEY.pk8")
    try:
        key = serialization.load_pem_private_key(key_text, password=None)
    except (ValueError, TypeError) as error:
        raise SettingsError(f"{files.given_as('c2pa_key')}: cannot be loaded "
                            f"({str(error).splitlines()[0]})") from None
    kind, curve = KEY_TYPES[files.alg]
    if not isinstance(key, key_class(kind)):
        raise SettingsError(f"{files.given_as('c2pa_key')}: not a key {files.alg} signs with "
                            f"(c2pa_alg={files.alg} takes a {kind.removesuffix('PrivateKey')} "
                            "key)")
    if curve and key.curve.name != curve:
        raise SettingsError(f"{files.given_as('c2pa_key')}: a {key.curve.name} key, but "
                            f"c2pa_alg={files.alg} signs with {curve}")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, public)
            != signer.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise SettingsError(f"{files.given_as('c2pa_key')}: not the key of the certificate "
                            f"in {files.given_as('c2pa_cert')}")
    credentials = Credentials(
        cert=files.cert, key=files.key, alg=files.alg, tsa=files.tsa,
        fingerprint=hashlib.sha256(signer.public_bytes(serialization.Encoding.DER)).hexdigest(),
        signer=common_name(signer.subject), issuer=common_name(signer.issuer),
        not_after=signer.not_valid_after_utc.isoformat())
    try:
        process_signer.__wrapped__(credentials, os.getpid()).close()     # made, let go
    except Exception as error:  # c2pa raises its own C2paError subclasses
        raise SettingsError(f"{files.given_as('c2pa_cert')}: c2pa refuses the signer "
                            f"({one_line(error)})") from None
    return credentials


def key_class(kind: str) -> type:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: PLC0415
    return {"EllipticCurvePrivateKey": ec.EllipticCurvePrivateKey,
            "RSAPrivateKey": rsa.RSAPrivateKey,
            "Ed25519PrivateKey": ed25519.Ed25519PrivateKey}[kind]


def read_pem(files: SigningFiles, name: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise SettingsError(f"{files.given_as(name)}: cannot be read "
                            f"({error.strerror or error})") from None


def usage_problem(certificate: Any) -> str | None:
    """Why the signer certificate cannot sign a C2PA claim (C2PA 2.1 §14.5.1), or None."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: PLC0415
    try:
        if certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "a CA certificate; C2PA signs with an end-entity certificate issued by one"
    except x509.ExtensionNotFound:
        pass
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            return "its keyUsage lacks digitalSignature"
    except x509.ExtensionNotFound:
        return "it has no keyUsage (C2PA needs digitalSignature)"
    try:
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "it has no extendedKeyUsage (C2PA takes e.g. emailProtection)"
    if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in extended:
        return "its extendedKeyUsage is anyExtendedKeyUsage, which C2PA refuses"
    return None


def common_name(name: Any) -> str:
    from cryptography.x509.oid import NameOID  # noqa: PLC0415
    names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else name.rfc4514_string()


def signer_of(credentials: Credentials) -> Any:
    """The c2pa Signer, made once per process from the files (the key read here, kept in
    memory only). c2pa's handles do not survive a fork (`doit -n`): one per process id."""
    return process_signer(credentials, os.getpid())


@functools.lru_cache(maxsize=4)
def process_signer(credentials: Credentials, pid: int) -> Any:
    import c2pa  # noqa: PLC0415
    with open(credentials.cert, "rb") as cert, open(credentials.key, "rb") as key:
        info = c2pa.C2paSignerInfo(alg=credentials.alg.encode(), sign_cert=cert.read(),
                                   private_key=key.read(), ta_url=credentials.tsa)
    return c2pa.Signer.from_info(info)


def one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines)[:300] or type(error).__name__


# ---- what the manifest states (pure) -------------------------------------------------------

def what_it_did(mode: str, source_size: tuple[int, int], rotation: int,
                output_size: tuple[int, int]) -> list[str]:
    """The C2PA actions of what the export did to the render: re-encoded (`c2pa.transcoded`)
    or only re-wrapped (`c2pa.repackaged`, a stream copy), and `c2pa.resized` when the
    picture's size (as displayed: rotation applied) changed. Pure."""
    width, height = source_size if rotation % 180 == 0 else source_size[::-1]
    did = ["c2pa.repackaged" if mode == "remux" else "c2pa.transcoded"]
    if (width, height) != tuple(output_size):
        did.append("c2pa.resized")
    return did


def manifest_definition(*, title: str, ai_generated: Any, did: list[str],
                        render_has_manifest: bool, render_name: str,
                        tool_version: str) -> Record:
    """The manifest definition c2pa's Builder takes, for one export. Pure.

    `ai_generated` as the render declares it (True, "partly", False or None: only the first
    two are claimed); `did`: what_it_did; `render_has_manifest`: the render carries its own,
    added from the file as the parent ingredient (sign_in_place).
    """
    source_type = SOURCE_TYPES.get(ai_generated) if ai_generated is not False else None
    agent = {"name": TOOL, "version": tool_version}
    actions: list[Record] = []
    ingredients: list[Record] = []
    if source_type and not render_has_manifest:
        actions.append({"action": "c2pa.created", "digitalSourceType": source_type,
                        "softwareAgent": agent})
    else:
        opened: Record = {"action": "c2pa.opened", "softwareAgent": agent,
                          "parameters": {"ingredientIds": [RENDER_LABEL]}}
        if source_type:
            opened["digitalSourceType"] = source_type
        actions.append(opened)
        if not render_has_manifest:     # named only; one with a manifest is added from it
            ingredients.append(render_ingredient(render_name))
    actions += [{"action": action, "softwareAgent": agent} for action in did]
    definition: Record = {
        "claim_generator_info": [{"name": TOOL, "version": tool_version}],
        "title": title, "format": "video/mp4",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}]}
    if ingredients:
        definition["ingredients"] = ingredients
    return definition


def render_ingredient(render_name: str) -> Record:
    return {"title": render_name, "format": "video/mp4", "relationship": "parentOf",
            "label": RENDER_LABEL}


def wanted_claims(definition: Record, render_name: str, render_has_manifest: bool) -> Record:
    """What `definition` states, as a sidecar keeps it and as a manifest read back is
    compared with: the title, the actions, the AI source type, the parent ingredient. Pure."""
    actions = definition["assertions"][0]["data"]["actions"]
    return {"title": definition["title"],
            "actions": [action["action"] for action in actions],
            "digital_source_type": next((action["digitalSourceType"] for action in actions
                                         if "digitalSourceType" in action), None),
            "ingredient": ({"title": render_name, "relationship": "parentOf",
                            "has_manifest": render_has_manifest}
                           if actions[0]["action"] == "c2pa.opened" else None)}


def claims_key(credentials: Credentials, claims: Record) -> str:
    """What a signed export's manifest depends on: the signer and what it states. When it
    differs from the one its sidecar records, the video is signed again (never encoded)."""
    text = json.dumps({"signer": credentials.fingerprint, "alg": credentials.alg,
                       "tsa": credentials.tsa, "claims": claims}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def claims_read(store: Record) -> Record:
    """What the active manifest of `store` (c2pa.Reader's JSON) states, in the shape of
    `wanted_claims`, with its label, validation state and signer."""
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) or {}
    actions = next((assertion["data"].get("actions") or [] for assertion
                    in manifest.get("assertions") or []
                    if assertion.get("label", "").startswith("c2pa.actions")), [])
    parents = [item for item in manifest.get("ingredients") or []
               if item.get("relationship") == "parentOf"]
    signature = manifest.get("signature_info") or {}
    return {"label": label, "validation_state": store.get("validation_state"),
            "validation_codes": sorted({status.get("code") for status
                                        in store.get("validation_status") or []}),
            "title": manifest.get("title"),
            "actions": [action.get("action") for action in actions],
            "digital_source_type": next((action["digitalSourceType"] for action in actions
                                         if action.get("digitalSourceType")), None),
            "ingredient": ({"title": parents[0].get("title"), "relationship": "parentOf",
                            "has_manifest": bool(parents[0].get("active_manifest"))}
                           if parents else None),
            "signer": {"name": signature.get("common_name"),
                       "serial": signature.get("cert_serial_number")}}


def manifest_problems(read: Record | None, wanted: Record, credentials: Credentials) -> list[str]:
    """Why a manifest read back is not the one signed: absent, not valid, or stating other
    than `wanted`, or signed by another. Pure."""
    if read is None:
        return ["no C2PA manifest in the signed file"]
    problems = []
    if read["validation_state"] not in ACCEPTED_STATES:
        codes = [code for code in read["validation_codes"]
                 if code != "signingCredential.untrusted"]
        problems.append(f"the manifest does not validate ({read['validation_state']}: "
                        f"{', '.join(codes) or 'no reason given'})")
    for field in ("title", "actions", "digital_source_type", "ingredient"):
        if read.get(field) != wanted.get(field):
            problems.append(f"the manifest's {field} is {read.get(field)!r}, not "
                            f"{wanted.get(field)!r}")
    if read["signer"]["name"] != credentials.signer:
        problems.append(f"signed by {read['signer']['name']!r}, not {credentials.signer!r}")
    return problems


def credentials_record(read: Record, credentials: Credentials, key: str) -> Record:
    """The sidecar's `credentials`: the manifest's label and claims, who signed, the key."""
    return {"label": read["label"], "validation_state": read["validation_state"],
            "claims": {field: read[field] for field in
                       ("title", "actions", "digital_source_type", "ingredient")},
            "signer": credentials.identity(), "key": key}


# ---- files ---------------------------------------------------------------------------------

def carries_manifest(path: Path) -> bool:
    """True when `path` is an ISO BMFF file (MP4, MOV) with a C2PA manifest store in a
    top-level uuid box. Reads box headers only (never the media data)."""
    try:
        with open(path, "rb") as handle:
            for name, position, header, size in top_level_box_headers(handle):
                if size < header or not name.isalnum():
                    return False        # not a box structure (another container)
                if name == b"uuid":
                    handle.seek(position + header)
                    if handle.read(16) == C2PA_BOX_UUID:
                        return True
    except (OSError, struct.error):
        return False
    return False


def sign_in_place(credentials: Credentials, definition: Record, video: Path,
                  render: Path | None) -> None:
    """Sign `video` (a temporary name the caller publishes) with `definition`: written to a
    temporary beside it, renamed over it once whole. A manifest it already carries is
    replaced; the render's own, when `render` carries one, becomes the parent ingredient."""
    import c2pa  # noqa: PLC0415
    builder = c2pa.Builder(json.dumps(definition))
    try:
        if render is not None:
            with open(render, "rb") as stream:
                builder.add_ingredient(json.dumps(render_ingredient(render.name)),
                                       "video/mp4", stream)
        with temporary(video) as signed:
            with open(video, "rb") as source, open(signed, "w+b") as destination:
                builder.sign(signer_of(credentials), "video/mp4", source, destination)
            publish(signed, video)
    except c2pa.C2paError as error:
        raise ConformanceError(f"content credentials: c2pa could not sign the export "
                               f"({one_line(error)})") from None
    finally:
        builder.close()


def read_manifest(path: Path) -> Record | None:
    """The active manifest of `path` as `claims_read` gives it (validated by c2pa: its
    hash binding to the bytes, its signature); None when the file carries none."""
    import c2pa  # noqa: PLC0415
    try:
        with c2pa.Reader(str(path)) as reader:
            return claims_read(json.loads(reader.json()))
    except c2pa.C2paError as error:
        if type(error).__name__.endswith("ManifestNotFound"):
            return None
        return {"label": None, "validation_state": "Invalid",
                "validation_codes": [one_line(error)], "title": None, "actions": [],
                "digital_source_type": None, "ingredient": None,
                "signer": {"name": None, "serial": None}}
