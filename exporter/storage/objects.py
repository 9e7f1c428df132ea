"""Objects in an S3-compatible bucket (AWS S3, R2, MinIO): list, head, get, put, delete.

Every failure is one ObjectStoreError line naming the bucket or object and the cause, never
obstore's multi-line dump; a local file that cannot be read or written is an OSError naming
it. obstore is imported at first use: a run that names no bucket never pays for it.

obstore is not fork-safe: once a process has made a request, a child forked from it hangs
on its next one (its Rust runtime's threads are not copied), and doit forks its workers. So
reelexport's own processes make no request: they ask the storage helper (`ask`: this module
run as `python -m exporter.storage.objects`, a fresh process per question).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.model.files import naming, publish, temporary
from exporter.model.locations import ObjectLocation, ObjectStoreError, parse_location

__all__ = ["ObjectChanged", "ObjectLocation", "ObjectStoreError", "delete", "download",
           "head", "list_objects", "one_line", "open_store", "parse_location", "probe",
           "upload"]

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from obstore.store import S3Store

CHUNK = 4 << 20                     # bytes per read of a download stream
# S3 error codes that mean the credentials themselves are refused, not their permissions.
CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                    "ExpiredToken", "TokenRefreshRequired", "InvalidClientTokenId"}




class ObjectChanged(ObjectStoreError):
    """A conditional request was refused: someone else wrote the object meanwhile."""


def open_store(location: ObjectLocation, environ: Mapping[str, str] = os.environ) -> S3Store:
    """An S3Store for the bucket, configured from the standard AWS variables of `environ`.

    No request is made: a wrong setting shows at the first call. obstore itself also reads
    the process's AWS_* variables, for what `environ` does not set."""
    from obstore.store import S3Store

    environ = {**profile_settings(environ), **environ}

    def first(*names: str) -> str | None:
        return next((environ[name] for name in names if environ.get(name)), None)

    config = {key: value for key, value in {
        "access_key_id": first("AWS_ACCESS_KEY_ID"),
        "secret_access_key": first("AWS_SECRET_ACCESS_KEY"),
        "session_token": first("AWS_SESSION_TOKEN"),
        "region": first("AWS_REGION", "AWS_DEFAULT_REGION"),
    }.items() if value}
    endpoint = first("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    if endpoint and not endpoint_is_url(endpoint):
        name = "AWS_ENDPOINT_URL_S3" if environ.get("AWS_ENDPOINT_URL_S3") else "AWS_ENDPOINT_URL"
        raise ObjectStoreError(f"{location}: {name}={endpoint!r} is not an http:// or "
                               "https:// URL")
    if not config.get("access_key_id") and not any(environ.get(name) for name in OTHER_CREDENTIALS):
        NO_CREDENTIALS[0] = True
    if endpoint:            # both keys: the process's AWS_ENDPOINT_URL_S3 would win over one
        config.update(endpoint=endpoint, aws_endpoint_url_s3=endpoint)
    allow_http = bool(endpoint) and endpoint.lower().startswith("http://")
    return S3Store(location.bucket, config=config, client_options={"allow_http": allow_http})


# A profile's keys in ~/.aws/credentials and ~/.aws/config, as the variables they stand for.
PROFILE_KEYS = {"aws_access_key_id": "AWS_ACCESS_KEY_ID",
                "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
                "aws_session_token": "AWS_SESSION_TOKEN", "region": "AWS_REGION",
                "endpoint_url": "AWS_ENDPOINT_URL"}


# Where obstore finds credentials besides keys: a web identity, a container's role.
OTHER_CREDENTIALS = ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                     "AWS_CONTAINER_CREDENTIALS_FULL_URI")
NO_CREDENTIALS = [False]    # set by open_store: a refusal then says what is missing


def endpoint_is_url(endpoint: str) -> bool:
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(endpoint)
        parts.port         # noqa: B018  raises on a port that is not a number
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def profile_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The AWS_* values of the profile AWS_PROFILE names (else `default`), from the shared
    credentials and config files, as the AWS CLI reads them; obstore reads neither. Keys
    given as variables win (the caller lays `environ` over these)."""
    import configparser
    name = environ.get("AWS_PROFILE") or "default"
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    found = {}
    for path, section in ((environ.get("AWS_CONFIG_FILE") or home / ".aws" / "config",
                           name if name == "default" else f"profile {name}"),
                          (environ.get("AWS_SHARED_CREDENTIALS_FILE")
                           or home / ".aws" / "credentials", name)):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue
        if parser.has_section(section):
            found.update({PROFILE_KEYS[key]: value for key, value in parser.items(section)
                          if key in PROFILE_KEYS and value})
    if environ.get("AWS_ACCESS_KEY_ID"):     # the variables' keys go together, not mixed
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            found.pop(key, None)
    return found


def list_objects(store: S3Store, location: ObjectLocation,
                 environ: Mapping[str, str] = os.environ) -> dict[str, tuple[int, str]]:
    """Every object under the prefix: relative key -> (size, etag), a page of 1,000 at a
    time. (Listing the segment/age sub-prefixes side by side was measured against moto's
    server: 26 requests for 2,000 objects made the no-op 1 s slower; docs/storage.md.)

    obstore refuses a whole page when one of its keys is not a path (a `.` or `..` segment,
    an empty one, a control character) and lists `a/` as `a`, so `a` and `a/` come out as one
    key twice. Either way the prefix is listed again as S3 stores it (`keys_as_stored`): the
    caller then refuses such a key alone, and the rest of the library goes on."""
    import obstore
    import obstore.exceptions as failed
    skip = len(location.prefix) + 1 if location.prefix else 0
    root = f"{location.prefix}/" if location.prefix else None
    listed: dict[str, tuple[int, str]] = {}
    with failures(str(location)):
        try:
            for page in obstore.list(store, root, chunk_size=1000):
                for meta in page:
                    key = meta["path"][skip:]
                    if key in listed:
                        raise KeyListedTwice(key)
                    listed[key] = (meta["size"], bare(meta["e_tag"]))
        except (failed.InvalidPathError, KeyListedTwice):
            return dict(keys_as_stored(location, environ))
    return listed


class KeyListedTwice(Exception):
    """obstore listed one key twice: `a` and `a/` as S3 stores them."""


def keys_as_stored(location: ObjectLocation, environ: Mapping[str, str] = os.environ,
                   under: str = "") -> Iterator[tuple[str, tuple[int, str]]]:
    """The prefix's keys (those starting with `under`) byte for byte, through botocore,
    configured from the same variables and profile: asked only when obstore cannot list or
    name them (list_objects, a listed object that is not there)."""
    import botocore.config
    import botocore.session
    settings = {**profile_settings(environ), **environ}
    endpoint = settings.get("AWS_ENDPOINT_URL_S3") or settings.get("AWS_ENDPOINT_URL")
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    client = botocore.session.Session().create_client(
        "s3", endpoint_url=endpoint or None,
        region_name=settings.get("AWS_REGION") or settings.get("AWS_DEFAULT_REGION") or None,
        config=botocore.config.Config(s3={"addressing_style": "path"} if endpoint else {}),
        **{f"aws_{name[4:].lower()}": settings[name] for name in keys if settings.get(name)})
    skip = len(location.prefix) + 1 if location.prefix else 0
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=location.bucket, Prefix=(f"{location.prefix}/" if location.prefix else "") + under)
    for page in pages:
        for item in page.get("Contents", []):
            yield item["Key"][skip:], (item["Size"], bare(item["ETag"]))


def head(store: S3Store, key: str) -> tuple[int, str] | None:
    """(size, etag) of the object, None when there is none (a missing bucket looks the
    same here: HEAD answers 404 without a body saying which)."""
    import obstore
    with failures(url(store, key)):
        try:
            meta = obstore.head(store, key)
        except (FileNotFoundError, obstore.exceptions.NotFoundError):
            return None
    return meta["size"], bare(meta["e_tag"])


def download(store: S3Store, key: str, path: Path | str,
             expect_etag: str | None = None) -> tuple[str, str]:
    """Stream the object into a hidden temporary beside `path`, hashed on the way, and put
    it in place only once whole: (etag, sha256). With `expect_etag` the GET is conditional,
    so what lands is the version that was listed, never a newer one in its place."""
    import obstore
    what = url(store, key)
    changed = f"the object changed since it was listed (its ETag is no longer {expect_etag})"
    with failures(what, changed if expect_etag else None):
        result = obstore.get(store, key,
                             options={"if_match": f'"{expect_etag}"'} if expect_etag else None)
        stream = iter(result.stream(min_chunk_size=CHUNK))
    digest = hashlib.sha256()
    with temporary(path) as temp:
        try:
            with open(temp, "wb") as out:
                while (chunk := remote(what, next, stream, None)) is not None:
                    digest.update(chunk)
                    out.write(chunk)
            publish(temp, path)
        except OSError as error:        # a full disk: said of the file being written
            raise naming(error, path) from None
    return bare(result.meta["e_tag"]), digest.hexdigest()


def upload(store: S3Store, path: Path | str, key: str, *, create_only: bool = False,
           if_etag: str | None = None) -> str:
    """Put the local file at `key` (multipart when large and unconditional); the ETag the
    PUT returned. `create_only` refuses to replace an object, `if_etag` to replace any
    other version than that one: a writer racing another never overwrites its work.
    A conditional PUT is a single request, so obstore holds the whole file in memory."""
    import obstore
    if create_only and if_etag:
        raise ValueError("upload: create_only and if_etag exclude each other")
    mode = "create" if create_only else {"e_tag": f'"{if_etag}"'} if if_etag else None
    now = "an object exists there now" if create_only else f"its ETag is no longer {if_etag}"
    changed = f"written by someone else meanwhile ({now})" if mode else None
    try:
        with open(path, "rb") as source, failures(url(store, key), changed):
            result = obstore.put(store, key, source, mode=mode)
    except OSError as error:            # the local file: missing, unreadable
        raise naming(error, path) from None
    return bare(result["e_tag"])


def probe(store: S3Store, location: ObjectLocation, write: bool) -> None:
    """Raise the one line that says why this machine cannot read the prefix (one listing
    page of one object) or, with `write`, write it (a probe object put, then deleted)."""
    import obstore
    with failures(str(location)):
        next(iter(obstore.list(store, f"{location.prefix}/" if location.prefix else None,
                               chunk_size=1)), None)
    if write:
        key = location.key(f".reelexport/probe-{uuid.uuid4().hex}")
        with failures(url(store, key)):
            obstore.put(store, key, b"reelexport can write here\n")
        delete(store, key)


def delete(store: S3Store, key: str) -> None:
    """Delete the object (none there is no error: S3 answers the same)."""
    import obstore
    remote(url(store, key), obstore.delete, store, key)


def remote(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """call(*args, **kwargs), a failure raised as one line."""
    with failures(what):
        return call(*args, **kwargs)


@contextmanager
def failures(what: str, changed: str | None = None) -> Iterator[None]:
    """Any failure of the block as one line about `what`; with `changed`, a refused
    condition (If-Match, If-None-Match) as ObjectChanged saying it."""
    import obstore.exceptions as failed
    try:
        yield
    except (failed.AlreadyExistsError, failed.PreconditionError) as error:
        if changed is None:
            raise one_line(error, what) from None
        raise ObjectChanged(f"{what}: {changed}") from None
    except ObjectStoreError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever obstore raises: one line, no dump
        raise one_line(error, what) from None


def one_line(error: BaseException, what: str) -> ObjectStoreError:
    """obstore's multi-line error as one line naming `what` (bucket or object) and the
    cause, made only of its S3 code, HTTP status and endpoint: never of a request's headers,
    where the credentials are."""
    import obstore.exceptions as failed
    text = str(error)
    code = next(iter(re.findall(r"<Code>(\w{1,64})</Code>", text)), None)
    status = next(iter(re.findall(r"status code: (\d{3}[ A-Za-z]*)", text)), "").strip()
    said = code or status
    if "error sending request" in text:
        lower = text.lower()
        cause = next((cause for needles, cause in (
            (("connectionrefused", "connection refused"), "connection refused"),
            (("dns error",), "the host name does not resolve"),
            (("certificate",), "its TLS certificate is not trusted"),
            (("invalidmessage", "tls"), "the TLS handshake failed: is it http://?"),
            (("timed out", "timeout"), "timed out"),
        ) if any(needle in lower for needle in needles)), "the connection failed")
        # the request's scheme://host:port, without any user:password@
        endpoint = re.search(r"Error performing [A-Z]+ (\w+://)(?:[^@/\s]*@)?([^/\s]+)", text)
        endpoint = "".join(endpoint.groups()) if endpoint else "(unknown)"
        return ObjectStoreError(f"{what}: cannot reach the endpoint {endpoint} ({cause})")
    if code == "NoSuchBucket":
        cause = "the bucket does not exist"
    elif NO_CREDENTIALS[0] and (status.startswith(("401", "403")) or code in (
            "AccessDenied", *CREDENTIAL_CODES) or isinstance(
            error, (failed.PermissionDeniedError, failed.UnauthenticatedError))):
        cause = (f"access was refused ({said or 'no answer'}): no credentials were found "
                 "(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)")
    elif code in CREDENTIAL_CODES or isinstance(error, failed.UnauthenticatedError):
        cause = f"the credentials were refused ({said})"
    elif code == "AccessDenied" or isinstance(error, failed.PermissionDeniedError):
        cause = f"access was refused ({said}: wrong credentials, or no permission)"
    elif code == "NoSuchKey" or isinstance(error, (FileNotFoundError, failed.NotFoundError)):
        cause = "no such object"
    elif code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
        cause = f"the bucket is in another region than AWS_REGION ({code})"
    elif said:
        cause = f"the request was refused ({said})"
    else:       # not an answer of the store's: obstore's first line, without its dump
        cause = re.sub(r"\s*(Debug source:|<\?xml).*", "", text.strip(), flags=re.DOTALL)
        cause = cause.splitlines()[0][:200] if cause else type(error).__name__
    return ObjectStoreError(f"{what}: {cause}")


def url(store: S3Store, key: str) -> str:
    return f"s3://{store.config['bucket']}/{key}"


def bare(etag: str | None) -> str:
    """An ETag without its quotes (and W/): S3 says '"9b2c..."'."""
    return (etag or "").removeprefix("W/").strip('"')


# ---- the storage helper: the one process that talks to a bucket -----------------------------

HELPER = [sys.executable, "-m", "exporter.storage.objects"]
HELPER_FAILED = 3       # its exit status for a one-line ObjectStoreError on stderr


def ask(command: str, url: str, items: Any = None, environ: Mapping[str, str] | None = None,
        timeout_s: float = 3600) -> Any:
    """Run the storage helper (`python -m exporter.storage.objects COMMAND URL`) with `items`
    as JSON on its stdin; its JSON answer. reelexport's own processes never talk to a
    bucket: doit forks its workers, and obstore's runtime does not survive a fork made after
    a request (a child hangs), so every request is made by a helper process started fresh.
    ObjectStoreError with the helper's one line when it fails."""
    try:
        done = subprocess.run([*HELPER, command, url], input=json.dumps(items), text=True,
                              capture_output=True, env=None if environ is None else
                              dict(environ), timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ObjectStoreError(f"{url}: no answer in {timeout_s:g} s") from None
    if done.returncode == HELPER_FAILED:
        raise ObjectStoreError(done.stderr.strip().splitlines()[-1])
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ObjectStoreError(f"{url}: the storage helper failed ({last})")
    return json.loads(done.stdout)


def serve(command: str, url: str, items: Any) -> Any:
    """One helper command against the bucket of `url` (keys relative to its prefix):
    list -> {key: [size, etag]}; head [keys] -> {key: [size, etag] | None};
    get [[key, path, etag | None], ...] -> [{"etag", "sha256"} | {"error": line}, ...];
    put [[path, key, None | "create" | {"e_tag": etag}], ...] (in order) ->
    [{"etag", "size"} | {"error": line, "changed"?: true}, ...]; fenced-put {"lease": key,
    "run_id": id, "items": [as put]} -> as put, once the lease object is read and still
    names run_id (a run that lost its lease publishes nothing); delete [keys] -> None;
    probe "read" | "write" -> None (raises when this machine cannot)."""
    location = parse_location(url)
    if location is None:
        raise ObjectStoreError(f"{url}: not an s3:// URL")
    store = open_store(location)
    if command == "list":
        return list_objects(store, location)
    if command == "head":
        return {key: head(store, location.key(key)) for key in items}
    if command == "get":
        answers = []
        for key, path, etag in items:
            try:
                got, sha256 = download(store, location.key(key), path, etag)
                answers.append({"etag": got, "sha256": sha256})
            except (ObjectStoreError, OSError) as error:
                answers.append({"error": slash_key_problem(location, key) or str(error)})
        return answers
    if command == "fenced-put":
        check_fence(store, location, items["lease"], items["run_id"])
        command, items = "put", items["items"]
    if command == "put":
        answers = []
        for path, key, condition in items:
            try:
                etag = upload(store, path, location.key(key),
                              create_only=condition == "create",
                              if_etag=condition.get("e_tag") if isinstance(condition, dict)
                              else None)
                answers.append({"etag": etag, "size": Path(path).stat().st_size})
            except ObjectChanged as error:
                answers.append({"error": str(error), "changed": True})
            except (ObjectStoreError, OSError) as error:
                answers.append({"error": str(error)})
        return answers
    if command == "probe":
        return probe(store, location, write=items == "write")
    if command == "delete":
        for key in items:
            delete(store, location.key(key))
        return None
    raise ObjectStoreError(f"{url}: unknown storage command {command!r}")


def slash_key_problem(location: ObjectLocation, key: str) -> str | None:
    """Why a listed object cannot be read when the key S3 holds is `key/` (obstore lists
    and asks for it as `key`); None when that is not why."""
    try:
        slashed = any(stored == f"{key}/" for stored, _ in keys_as_stored(location, under=key))
    except Exception:   # noqa: BLE001 - a second opinion only: the first error stands
        return None
    if slashed:
        return (f"{location}/{key}/: a key ending in '/' is not a file: rename it to "
                f"{location}/{key}")
    return None


def check_fence(store: S3Store, location: ObjectLocation, lease_key: str, run_id: str) -> None:
    """ObjectStoreError unless the lease object still names `run_id` as its holder."""
    import obstore
    what = url(store, location.key(lease_key))
    try:
        with failures(what):
            document = json.loads(bytes(obstore.get(store, location.key(lease_key)).bytes()))
    except ObjectStoreError:
        document = None
    except ValueError:
        document = None
    holder = document.get("run_id") if isinstance(document, dict) else None
    if holder != run_id:
        now = ("is gone" if document is None else
               f"names run {str(holder)[:12]}" if holder else "names another run")
        raise ObjectStoreError(f"{location}: this run no longer holds the lease ({what} "
                               f"{now}): nothing more is published by it")


def main(argv: list[str] | None = None) -> int:
    command, url = (argv if argv is not None else sys.argv[1:])[:2]
    try:
        answer = serve(command, url, json.loads(sys.stdin.read() or "null"))
    except ObjectStoreError as error:
        print(error, file=sys.stderr)
        return HELPER_FAILED
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
