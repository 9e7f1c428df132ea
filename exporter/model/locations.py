"""`s3://BUCKET/PREFIX`: where a renders or exports tree lives when it is in a bucket. Pure:
parsing and joining keys; exporter/storage/objects.py talks to the bucket."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from exporter.model.errors import ExportError

# S3's rules for new buckets (R2's and MinIO's are the same or looser).
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class ObjectStoreError(ExportError):
    """A bucket or object cannot be used: the endpoint unreachable, the credentials or the
    access refused, the bucket or object missing, the URL malformed. Not a render's fault."""


def is_bucket_url(text: str) -> bool:
    return text[:5].lower() == "s3://"


@dataclass(frozen=True)
class ObjectLocation:
    """`s3://BUCKET/PREFIX`: a bucket and the key prefix ('' for the whole bucket)."""

    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, relative: str | PurePosixPath) -> str:
        """The key of `relative` (a/b.mp4) under the prefix; a path that could leave the
        prefix (absolute, '..') is refused rather than resolved."""
        parts = PurePosixPath(relative).parts
        if not parts or parts[0] == "/" or ".." in parts:
            raise ObjectStoreError(f"{self}: {str(relative)!r} is not a relative object path")
        return "/".join((self.prefix, *parts) if self.prefix else parts)


def parse_location(text: str) -> ObjectLocation | None:
    """The location `text` names, or None when it is not an s3:// URL (a local path)."""
    if not is_bucket_url(text):
        return None
    bucket, _, prefix = text[5:].partition("/")
    prefix = prefix.strip("/")
    if not BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ObjectStoreError(f"{text}: not a bucket URL (s3://BUCKET/PREFIX; a bucket name "
                               "is 3-63 lowercase letters, digits, dots and hyphens)")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ObjectStoreError(f"{text}: the prefix has an empty, '.' or '..' segment")
    return ObjectLocation(bucket, prefix)


