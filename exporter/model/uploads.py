"""Recording that an export was uploaded: what an upload stage calls after posting.

    from exporter.model.uploads import record_upload
    record_upload(Path("exports"), "youtube:my-story", post_id="dQw4w9", url="https://...")

Only the exports tree is read (no renders root, no doit): an uploader may run anywhere the
tree is mounted, while a run is going.
"""

from __future__ import annotations

from pathlib import Path

from exporter.model.errors import ExportError
from exporter.model.files import sha256_file
from exporter.model.history import (
    Event,
    append_events,
    check_history,
    event,
    read_events,
)
from exporter.model.records import export_file_names, output_sha256, read_record


class UploadRefused(ExportError):
    """The upload cannot be recorded: no such export, its last export failed, or not the
    file that was uploaded."""


def find_export(exports_root: Path, export: str) -> tuple[Path, Path]:
    """(video, sidecar) of the export named `platform:title_id` in the exports tree."""
    platform, sep, title_id = export.partition(":")
    if not sep or not platform or not title_id or "/" in export:
        raise UploadRefused(f"{export!r} is not an export name (platform:title_id, "
                            "e.g. youtube:my-story)")
    names = export_file_names(platform)
    found = sorted(Path(exports_root).glob(f"*/*/{title_id}/{names['sidecar']}"))
    if not found:
        raise UploadRefused(f"{export}: no export in {exports_root} "
                            f"(run `doit {export}` first)")
    sidecar = found[0]
    video = sidecar.with_name(names["video"])
    if not video.is_file():
        raise UploadRefused(f"{export}: {video} is missing (run `doit {export}` to make it)")
    error = read_record(sidecar.with_name(names["error"]))
    if error is not None:
        # the file on disk is from an earlier export, of inputs that have changed since
        raise UploadRefused(f"{export}: its last export failed ({error.get('cause')}, at "
                            f"{error.get('failed_at')}): fix the cause and run "
                            f"`doit {export}`, then upload the file it makes")
    return video, sidecar


# Bounds far above any platform's ids and URLs, well below what would swamp a history line.
MAX_ID_CHARS = 256
MAX_URL_CHARS = 2048


def check_upload_fields(export: str, post_id: str, url: str | None) -> None:
    """UploadRefused unless the id and URL can be shown anywhere as they are: no control
    characters (a newline would forge a line of `doit history`, an escape sequence would
    reach the terminal), a length bound, and a URL that is a web address (the gallery
    links it: never `javascript:` or `data:`)."""
    if not post_id:
        raise UploadRefused(f"{export}: the post id is empty")
    if url == "":
        raise UploadRefused(f"{export}: --url is empty (leave it out when the post has none)")
    for name, value, limit in (("id", post_id, MAX_ID_CHARS), ("url", url, MAX_URL_CHARS)):
        if value is None:
            continue
        if len(value) > limit:
            raise UploadRefused(f"{export}: --{name} is {len(value)} characters; at most "
                                f"{limit}")
        if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in value):
            raise UploadRefused(f"{export}: --{name} {value!r} holds a control character")
    if url is not None and not url.lower().startswith(("https://", "http://")):
        raise UploadRefused(f"{export}: --url {url!r} is not an http(s) URL")


def record_upload(exports_root: Path, export: str, post_id: str, url: str | None = None,
                  sha256: str | None = None, earlier_version: bool = False,
                  stale: list[str] | None = None) -> Event:
    """Append an `uploaded` event for `export`; returns it. UploadRefused with the cause
    (HistoryError when the history cannot take it).

    `sha256` is the uploaded file's; by default the current export's (`current` in the event:
    the file is that export's and nothing it was made from changed since, here or on another
    machine whose "made" events the merged history holds). It must be the
    current export's, or with `earlier_version` one this export had before. An export
    whose last attempt failed is refused. `stale`: why the export is out of date (its
    inputs changed since it was made), as the caller found; the event keeps it, and the
    registry shows the upload as outdated. The same post (export, id, file, URL) told again is
    recorded once: the event recorded first is returned, with "already": True.
    """
    check_upload_fields(export, post_id, url)
    check_history(exports_root)
    video, sidecar_path = find_export(exports_root, export)
    current = output_sha256(read_record(sidecar_path))
    on_disk = sha256_file(video)
    if on_disk != current:
        raise UploadRefused(f"{export}: {video.name} is not the file its sidecar records "
                            "(changed since it was made); run `doit` to make it again")
    uploaded = (sha256 or current).lower()
    if uploaded != current:
        if not earlier_version:
            raise UploadRefused(f"{export}: sha256 {uploaded[:12]}... is not the current "
                                f"export ({current[:12]}...); if an earlier version was "
                                "uploaded, say so (--earlier-version)")
        made = {e.get("sha256") for e in read_events(exports_root)[0]
                if e["export"] == export and e["event"] == "made"}
        if uploaded not in made:
            raise UploadRefused(f"{export}: no version with sha256 {uploaded[:12]}... was "
                                "ever made (see `doit history`)")
    title = sidecar_path.parent.relative_to(Path(exports_root)).as_posix()
    history = read_events(exports_root)[0]
    newest = [e.get("sha256") for e in history if e["export"] == export
              and e["event"] == "made" and e.get("sha256")]
    stale = list(stale or [])
    if newest and newest[-1] != current:    # made since on another machine (merged history)
        stale.append(f"a newer version (sha256 {newest[-1][:12]}...) made on another machine")
    for earlier in history:
        if (earlier["event"] == "uploaded" and earlier["export"] == export
                and earlier.get("id") == post_id and earlier.get("sha256") == uploaded
                and earlier.get("url") == url):
            return {**earlier, "already": True}    # the same post, told again: once
    extra = {"stale": list(stale)} if stale else {}
    item = event("uploaded", export, title=title, id=post_id, url=url, sha256=uploaded,
                 current=uploaded == current and not stale, **extra)
    append_events(exports_root, [item])
    return item
