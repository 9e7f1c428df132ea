"""The cover (platform thumbnail) and poster (gallery frame) of an export.

Each is made once per content key in the shared cache (the cover of Instagram, Facebook
and TikTok is often the same image) and copied into place like a shared encode.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from exporter.media.colour import source_colour, to_bt709
from exporter.media.ffmpeg import run_ffmpeg
from exporter.media.plan import (
    COVER_QUALITIES,
    build_still,
    build_stills,
    cover_inputs,
    poster_size,
)
from exporter.media.probe import Probe, image_size
from exporter.model.errors import ConformanceError, EncodeError, SourceError
from exporter.model.files import publish, remove_stale_temps, sha256_file, temporary
from exporter.model.records import (
    Record,
    image,
    output_duration_s,
    output_sha256,
    source_probe,
)
from exporter.model.spec import digest
from exporter.pipeline.export.job import ExportJob, ffmpeg_version

# Covers and posters show the frame at this fraction of the duration (past fade-ins).
FRAME_AT = 0.25
# Bump when a code change alters the cover or poster images.
IMAGES_VERSION = 3   # 2: frames of any colour shown as SDR BT.709, JPEG samples BT.601;
#                     3: the same bytes on every CPU (plan.STILL_SCALING)


def image_is_current(record: Record | None, key: str, path: Path) -> bool:
    """True when the image exists, is intact, and was made from exactly `key`."""
    return (bool(record) and record.get("key") == key and path.exists()
            and sha256_file(path) == record["sha256"])


def make_still(job: ExportJob, input_choices: list[list[str]], fit: str, size: tuple[int, int],
               max_bytes: int | None, path: Path, key: str, origin: str,
               convert: str | None) -> Record:
    """One JPEG of exactly `size`, at the best quality that fits `max_bytes`; its record.
    `convert`: None for an image, else the filters making the video's frame SDR BT.709."""
    cache = job.shared_cache
    with temporary(path) as linked:
        with cache.locked([key]):
            if not cache.usable(key, ".jpg"):
                remove_stale_temps(cache.path(key, ".jpg"))
                with temporary(cache.path(key, ".jpg")) as temp:
                    for input_args in input_choices:
                        run_ffmpeg(build_still(job.ffmpeg, input_args, fit, *size, temp,
                                               COVER_QUALITIES[0], convert))
                        if temp.exists():
                            break
                    else:
                        raise SourceError(f"{path.name}: no frame could be decoded from "
                                          f"{origin}")
                    for quality in COVER_QUALITIES:
                        if quality != COVER_QUALITIES[0]:
                            run_ffmpeg(build_still(job.ffmpeg, input_args, fit, *size, temp,
                                                   quality, convert))
                        if max_bytes is None or temp.stat().st_size <= max_bytes:
                            break
                    else:
                        raise ConformanceError(
                            f"{path.name} cannot be made under {max_bytes} bytes")
                    if image_size(temp) != size:
                        raise ConformanceError(
                            f"{path.name} is {image_size(temp)}, expected {size}")
                    cache.store(key, temp, {"made_by": job.task_name}, ".jpg")
            copied = cache.copy_to(key, linked, ".jpg")
        record = {"path": path.name, "width": size[0], "height": size[1],
                  "size_bytes": linked.stat().st_size, "sha256": copied}
        publish(linked, path)
    return record


def frame_time(duration_s: float, fps: float) -> float:
    """Where a cover or poster is taken: FRAME_AT of the way in, but never past the start
    of the last frame (a clip of one frame has its only frame at 0)."""
    return max(0.0, min(duration_s * FRAME_AT, duration_s - 1 / fps))


def cover_key(origin: str, cover: dict, ffmpeg: str) -> str:
    """The shared cache's key of a cover: its origin's sha256 and the cover's settings."""
    return digest({"from": origin, "cover": cover, "ffmpeg": ffmpeg_version(ffmpeg),
                   "version": IMAGES_VERSION})


def make_sibling_covers(job: ExportJob, origin: str, input_args: list[str],
                        convert: str | None) -> None:
    """The covers of this title's selected platforms (this one's and its siblings') missing
    from the shared cache, made from one decoded frame (or thumbnail) in one ffmpeg run;
    each platform's task then copies its own. Best effort: a cover this run cannot make
    within its platform's rules is left to make_still, which says why."""
    wanted = {}
    for spec in (job.spec, *job.siblings):
        wanted.setdefault(cover_key(origin, spec.cover, job.ffmpeg), spec.cover)
    cache = job.shared_cache
    if len(wanted) < 2:
        return
    with cache.locked(wanted):
        missing = {key: cover for key, cover in wanted.items() if not cache.has(key, ".jpg")}
        if len(missing) < 2:
            return
        with ExitStack() as stack:
            temps = {key: stack.enter_context(temporary(cache.path(key, ".jpg")))
                     for key in missing}
            run_ffmpeg(build_stills(
                job.ffmpeg, input_args,
                [(cover["fit"], cover["width"], cover["height"], temps[key])
                 for key, cover in missing.items()], COVER_QUALITIES[0], convert))
            for key, cover in missing.items():
                temp = temps[key]
                if (temp.exists() and temp.stat().st_size <= cover["max_bytes"]
                        and image_size(temp) == (cover["width"], cover["height"])):
                    cache.store(key, temp, {"made_by": job.task_name}, ".jpg")


def cover_origin(job: ExportJob, inputs: Record) -> tuple[Path | None, str, str]:
    """The cover's thumbnail.jpg (None: it is a source frame), its origin's sha256 and
    its key."""
    thumbnail = job.title.thumbnail if job.title.thumbnail.exists() else None
    origin = (sha256_file(thumbnail) if thumbnail else inputs["source_sha256"])
    return thumbnail, origin, cover_key(origin, job.spec.cover, job.ffmpeg)


def cover_reads_source(job: ExportJob, inputs: Record, sidecar: Record | None) -> bool:
    """True when the cover must be made (again) from a frame of the render."""
    thumbnail, _, key = cover_origin(job, inputs)
    return thumbnail is None and not image_is_current(image(sidecar, "cover"), key,
                                                      job.path("cover"))


def make_cover(job: ExportJob, inputs: Record, sidecar: Record) -> Record:
    """The platform's cover: the render's thumbnail.jpg when present, else a source frame."""
    thumbnail, origin, key = cover_origin(job, inputs)
    cover = job.spec.cover
    if image_is_current(image(sidecar, "cover"), key, job.path("cover")):
        return image(sidecar, "cover")
    source = source_probe(sidecar)
    seek = frame_time(source["duration_s"], source["fps"])
    choices = cover_inputs(thumbnail, job.title.source, seek)
    convert = None if thumbnail else to_bt709(source_colour(Probe.from_summary(source)))
    try:
        make_sibling_covers(job, origin, choices[0], convert)
    except EncodeError as error:
        if error.transient:
            raise
    origin_text = thumbnail.name if thumbnail else f"{job.title.source.name} at {seek:.2f} s"
    try:
        record = make_still(job, choices,
                            cover["fit"], (cover["width"], cover["height"]),
                            cover["max_bytes"], job.path("cover"), key, origin_text,
                            convert)
    except EncodeError as error:
        if thumbnail is None or error.transient:
            raise
        raise SourceError(f"{thumbnail.name} cannot be read as an image: {error}") from None
    return {**record, "key": key, "from": origin_text}


def make_poster(job: ExportJob, sidecar: Record) -> Record:
    """A small frame of the export itself, for the gallery."""
    size = poster_size(job.spec.video)
    key = digest({"video": output_sha256(sidecar), "size": size,
                  "version": IMAGES_VERSION, "ffmpeg": ffmpeg_version(job.ffmpeg)})
    if image_is_current(image(sidecar, "poster"), key, job.path("poster")):
        return image(sidecar, "poster")
    seek = frame_time(output_duration_s(sidecar), job.spec.video["fps"])
    video = job.path("video")
    record = make_still(job, cover_inputs(None, video, seek), "crop", size, None,
                        job.path("poster"), key, f"{video.name} at {seek:.2f} s", "")
    return {**record, "key": key}
