"""Making one export's video: encode (with the other platforms' encodes of the same source
riding along in one ffmpeg process), remux, or share an encode already made; verified
against the spec before it is published. The sidecar of the video just made.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from exporter import __version__
from exporter.media.colour import conversion_record, source_colour
from exporter.media.credentials import what_it_did
from exporter.media.ffmpeg import run_ffmpeg
from exporter.media.loudness import (
    is_silent,
    loudness_problems,
    measure_output,
    measure_source,
    target_of,
)
from exporter.media.loudness import sidecar_record as loudness_record
from exporter.media.plan import (
    EncodePlan,
    build_encodes,
    build_plan,
    output_duration,
    pad_from,
)
from exporter.media.probe import Probe, moov_before_mdat, probe
from exporter.media.colour_check import COLOUR, Glimpses, check_colours
from exporter.media.quality import content_score, gate_problems, remux_proof, score_output
from exporter.media.shared import SharedCache, share_key
from exporter.media.verify import conformance_problems, rate_over
from exporter.model.errors import (
    ConformanceError,
    DamagedOutput,
    EncodeError,
    QualityBelowFloor,
    RateOvershoot,
    SourceError,
)
from exporter.model.files import (
    clone_file,
    publish,
    remove_stale_temps,
    scratch_directory,
    sha256_file,
    temporary,
)
from exporter.model.layout import task_name
from exporter.model.records import (
    Record,
    export_file_names,
    now_utc,
    output_sha256,
    read_record,
    sidecar_document,
)
from exporter.model.spec import Spec
from exporter.pipeline.placement.cluster import current_worker
from exporter.pipeline.export.job import (
    ExportJob,
    ffmpeg_version,
)
from exporter.pipeline.export.progress_files import ProgressFile
from exporter.pipeline.export.signing import sign_video

# Stands for the output file in a plan's argv until the cache decides where it goes.
PLAN_OUTPUT = "{output}"


def build_sidecar(job: ExportJob, inputs: Record, source_probe: Probe, output_probe: Probe,
                  output_sha256: str, plan: EncodePlan, started_at: str, attempt: int,
                  mode: str, shared_key: str, cache_record: Record,
                  loudness: Record | None = None, quality: Record | None = None,
                  credentials: Record | None = None) -> Record:
    """The sidecar of the video just made: what, from what, how, and its probe."""
    return sidecar_document(
        names=job.identity,
        output={"path": job.path("video").name, "size_bytes": output_probe.size_bytes,
                "sha256": output_sha256, "duration_s": output_probe.duration_s,
                "width": output_probe.width, "height": output_probe.height,
                "video_codec": output_probe.video_codec,
                "audio_codec": output_probe.audio_codec,
                "video_bitrate": output_probe.video_bitrate,
                "probe": output_probe.summary()},
        metadata_file=job.path("metadata").name,
        source={"path": job.title.origin, "sha256": inputs["source_sha256"],
                "probe": source_probe.summary()},
        spec={"file": str(job.spec.path), "sha256": sha256_file(job.spec.path)},
        encode={"mode": mode, "key": inputs["encode_key"], "shared_key": shared_key,
                "made_by": cache_record["made_by"], "settings": job.encode_settings(),
                "trimmed": plan.trimmed,
                # a short source held to the platform's minimum (limits.on_short: pad)
                "padded": ({"source_duration_s": plan.padded_from_s,
                            "padded_to_s": plan.duration_s,
                            "how": "last frame held, silence added"}
                           if plan.padded_from_s is not None else None),
                "ffmpeg": job.ffmpeg,
                "ffmpeg_version": ffmpeg_version(job.ffmpeg), "argv": cache_record["argv"],
                "tool_version": __version__, "loudness": loudness, "quality": quality,
                "colour": conversion_record(source_colour(source_probe), plan.mode),
                "worker": current_worker()},
        inputs=inputs, started_at=started_at, finished_at=now_utc(), attempts=attempt,
        credentials=credentials)


def verified_probe(ffmpeg: str, spec: Spec, path: Path, plan: EncodePlan,
                   measured: dict | None = None) -> tuple[Probe, dict | None]:
    """Probe `path` and check it against `spec` (its loudness too, measured again when the
    plan normalised it, unless `measured`: these bytes' loudness, measured when they entered
    the shared cache); ConformanceError if it misses. Returns the probe and the loudness
    achieved (None when not normalised)."""
    result = probe(path)
    problems = conformance_problems(result, spec, plan.duration_s, moov_before_mdat(path),
                                    encoded=plan.mode != "remux")
    achieved = None
    if plan.loudness and result.has_audio:
        achieved = measured or measure_output(ffmpeg, path)
    if achieved is not None:
        problems += loudness_problems(achieved, target_of(spec))
    if problems:
        message = "output does not conform: " + "; ".join(problems)
        if plan.mode != "remux" and rate_over(result.video_bitrate, spec.video):
            raise RateOvershoot(message, result.video_bitrate)
        raise ConformanceError(message)
    return result, achieved


def loudness_of(job: ExportJob, spec: Spec, source_probe: Probe,
                inputs: Record) -> tuple[dict | None, str | None]:
    """(the first-pass measurement, None) when `spec` normalises this source's loudness;
    (None, why not) when the source has no audio or is silent; (None, None) when off."""
    target = target_of(spec)
    if target is None:
        return None, None
    if not source_probe.has_audio:
        return None, "the source has no audio"
    kept_s, _ = output_duration(source_probe, spec)
    measured = measure_source(job.ffmpeg, job.title.source, inputs["source_sha256"], target,
                              kept_s, job.shared_cache.root / "loudness",
                              ffmpeg_version(job.ffmpeg), spec.audio,
                              padded=pad_from(source_probe, spec) is not None)
    if is_silent(measured):
        return None, "the source is silent (or too short to measure): left as it is"
    return measured, None


def sibling_encodes(job: ExportJob, source_probe: Probe, inputs: Record, own_key: str,
                    cache: SharedCache) -> tuple[list[tuple[Spec, str]], dict[str, list[str]]]:
    """(spec, key) of the other selected platforms' encodes of this source still to make,
    and for each key encoded, the exports that will take it (prune keeps the entry for them).

    They ride along in this export's ffmpeg process (one decode, several encoders); a
    sibling that must remux, would be rejected, or is already cached is left to its task.
    """
    wanted, takers = {}, {own_key: [job.task_name]}
    for spec in job.siblings:
        try:
            plan = build_plan(job.ffmpeg, job.title.source, source_probe, spec, PLAN_OUTPUT,
                              job.preset, loudness_of(job, spec, source_probe, inputs)[0])
        except SourceError:
            continue
        if plan.mode != "encode":
            continue
        key = share_key(inputs["source_sha256"], plan, job.encode_settings(spec))
        takers.setdefault(key, []).append(task_name(spec.name, job.title.title_id))
        if key != own_key and not cache.has(key):
            wanted.setdefault(key, spec)
    return [(spec, key) for key, spec in wanted.items()], takers


def encode_into_cache(job: ExportJob, source_probe: Probe, inputs: Record,
                      targets: list[tuple[Spec, str]], cache: SharedCache,
                      takers: dict[str, list[str]]) -> None:
    """Encode `targets` [(spec, key), ...] in one ffmpeg process into the shared cache.

    The first target is this export's own: if it misses its spec, that is this export's
    failure. A sibling that misses its own is not stored; its task will try by itself.
    """
    for _, key in targets:          # we hold these keys: what is there is a killed run's
        remove_stale_temps(cache.video(key))
        remove_stale_temps(cache.samples(key))
        remove_stale_temps(cache.packets(key))
    with ExitStack() as stack:
        temps = [stack.enter_context(temporary(cache.video(key))) for _, key in targets]
        # the content check's reference frames and x264's packets, kept by the encode;
        # gone after the check
        samples = [stack.enter_context(temporary(cache.samples(key))) for _, key in targets]
        packets = [stack.enter_context(temporary(cache.packets(key))) for _, key in targets]
        # the colour check's small pictures, written by the passes that decode anyway
        glimpses = Glimpses(stack.enter_context(scratch_directory("reelexport-glimpses-")))
        loudness = {spec.name: loudness_of(job, spec, source_probe, inputs)[0]
                    for spec, _ in targets}
        plans = build_encodes(job.ffmpeg, job.title.source, source_probe,
                              [(spec, temp) for (spec, _), temp in zip(targets, temps)],
                              job.preset, loudness, samples, glimpses.render_path(),
                              packets)
        argv, checked = plans[0].argv, []
        with ProgressFile(job.exports_root, job.task_name, job.title.key, plans[0].duration_s,
                          job.spec.video["fps"]) as progress:
            run_ffmpeg(argv, progress=progress)
        for index, ((spec, key), temp, plan) in enumerate(zip(targets, temps, plans)):
            if not temp.exists():
                raise EncodeError("ffmpeg exited without writing an output")
            made_by = argv
            try:
                try:
                    _, achieved = verified_probe(job.ffmpeg, spec, temp, plan)
                except RateOvershoot as over:
                    if index != 0:
                        continue
                    made_by, achieved = corrected_encode(job, source_probe, temp, plan, over)
                # proven and scored once, here: every export of this key reuses it
                quality = score_output(job.ffmpeg, temp, job.title.source, spec, plan,
                                       glimpses=glimpses)
            except (ConformanceError, DamagedOutput):
                if index == 0:
                    raise
                continue
            checked.append((spec, key, temp, made_by, quality, achieved))
        # the colour check of every output of this encode, the render decoded once for all
        colours = check_colours([(temp, spec.fit, spec.video["fps"])
                                 for spec, _, temp, *_ in checked], job.title.source,
                                source_colour(source_probe), source_probe, glimpses)
        for (spec, key, temp, made_by, quality, achieved), colour in zip(checked, colours):
            cache.store(key, temp, {"argv": made_by, "mode": "encode",
                                    "quality": {**quality, COLOUR: colour},
                                    "loudness_achieved": achieved,
                                    "made_by": job.task_name,
                                    # kept by prune until these exports have it
                                    "wanted_by": takers.get(key) or [
                                        task_name(spec.name, job.title.title_id)],
                                    "source_sha256": inputs["source_sha256"]})


# A corrected encode aims this far under the spec's bitrate, scaled by how far over the
# last one landed; after MAX_CORRECTIONS the export fails with the last measurement.
CORRECTION_AIM = 0.97


MAX_CORRECTIONS = 2


def corrected_encode(job: ExportJob, source_probe: Probe, temp: Path, plan: EncodePlan,
                     over: RateOvershoot) -> tuple[list[str], dict | None]:
    """Encode this export again into `temp`, aiming lower, after it landed `over` its rate.

    The sized VBV buffer keeps a constant-rate spec within its promise; a spec that lets
    the rate vary (maxrate above bitrate) can overshoot on a short clip, where x264's
    average-rate control has too few frames to settle. Returns the argv that made it and
    the loudness it achieved (verified_probe).
    """
    spec, scale = job.spec, 1.0
    for _ in range(MAX_CORRECTIONS):
        scale *= spec.video["bitrate"] / over.bitrate * CORRECTION_AIM
        aimed = replace(spec, video={**spec.video, **{
            name: max(1, int(spec.video[name] * scale))
            for name in ("bitrate", "maxrate", "bufsize")}})
        # x264's packets written again over the first encode's, for the check
        argv = build_encodes(job.ffmpeg, job.title.source, source_probe, [(aimed, temp)],
                             job.preset, {aimed.name: plan.loudness},
                             packets=[plan.packets] if plan.packets else ())[0].argv
        temp.unlink(missing_ok=True)
        with ProgressFile(job.exports_root, job.task_name, job.title.key, plan.duration_s,
                          spec.video["fps"]) as progress:
            run_ffmpeg(argv, progress=progress)
        try:
            return argv, verified_probe(job.ffmpeg, spec, temp, plan)[1]
        except RateOvershoot as again:
            over = again
    raise over


def remux_into_cache(job: ExportJob, plan: EncodePlan, cache: SharedCache,
                     key: str) -> None:
    """Copy the conforming source's streams into the cache under `key`, verified."""
    remove_stale_temps(cache.video(key))
    with temporary(cache.video(key)) as temp:
        argv = [str(temp) if arg == PLAN_OUTPUT else arg for arg in plan.argv]
        with ProgressFile(job.exports_root, job.task_name, job.title.key, plan.duration_s,
                          job.spec.video["fps"]) as progress:
            run_ffmpeg(argv, progress=progress)
        _, achieved = verified_probe(job.ffmpeg, job.spec, temp, plan)
        cache.store(key, temp, {"argv": argv, "mode": "remux", "made_by": job.task_name,
                                "loudness_achieved": achieved,
                                "quality": remux_proof(temp, job.title.source)})


def restored_from_sibling(job: ExportJob, key: str, cache: SharedCache) -> bool:
    """Put a pruned shared encode back into the cache from another platform's export of
    this title made from it, when that export's bytes are still its sidecar's: deleting
    one export of a shared encode never costs an encode."""
    for spec in job.siblings:
        names = export_file_names(spec.name)
        sidecar = read_record(job.out_dir / names["sidecar"]) or {}
        encode, video = sidecar.get("encode") or {}, job.out_dir / names["video"]
        if encode.get("shared_key") != key or not video.is_file():
            continue
        remove_stale_temps(cache.video(key))
        with temporary(cache.video(key)) as temp:
            clone_file(video, temp)
            if sha256_file(temp) != output_sha256(sidecar):
                continue
            cache.store(key, temp, {"argv": encode.get("argv"), "mode": "shared",
                                    "made_by": encode.get("made_by"),
                                    "quality": encode.get("quality")})
        return True
    return False


def encode_video(job: ExportJob, inputs: Record, started_at: str, attempt: int,
                 statement: Record | None = None) -> Record:
    """Make the video (encode, remux, or copy a shared encode), sign it when signing is on
    (`statement`: what its manifest says of the render; pipeline/export/signing.py), verify
    and publish it. The shared cache keeps the bytes unsigned: each platform's copy is
    signed for itself.

    Returns its sidecar (not yet written).
    """
    source_probe = probe(job.title.source)
    measured, skipped = loudness_of(job, job.spec, source_probe, inputs)
    plan = build_plan(job.ffmpeg, job.title.source, source_probe, job.spec, PLAN_OUTPUT,
                      job.preset, measured)
    cache = job.shared_cache
    key = share_key(inputs["source_sha256"], plan, job.encode_settings())
    siblings, takers = (sibling_encodes(job, source_probe, inputs, key, cache)
                        if plan.mode == "encode" else ([], {}))
    with temporary(job.path("video")) as temp:
        with cache.locked([key, *(sibling_key for _, sibling_key in siblings)]):
            # an entry whose bytes are not its record's is removed here, never shared
            usable = cache.usable(key) or restored_from_sibling(job, key, cache)
            mode = "shared" if usable else plan.mode
            if mode == "remux":
                remux_into_cache(job, plan, cache, key)
            elif mode == "encode":
                missing = [(spec, k) for spec, k in siblings if not cache.has(k)]
                encode_into_cache(job, source_probe, inputs, [(job.spec, key), *missing],
                                  cache, takers)
            record = cache.record(key)
            output_sha256 = cache.copy_to(key, temp)
        credentials = None
        if job.credentials is not None:     # the media untouched: scores and loudness hold
            credentials = sign_video(job, temp, statement or {}, what_it_did(
                plan.mode, (source_probe.width, source_probe.height), source_probe.rotation,
                (job.spec.video["width"], job.spec.video["height"])))
            output_sha256 = sha256_file(temp)
        # the copy has the bytes the cache measured and scored (copy_to checked its sha256)
        output_probe, achieved = verified_probe(job.ffmpeg, job.spec, temp, plan,
                                                record.get("loudness_achieved"))
        quality = record.get("quality") or content_check(job, temp, plan)
        check_gate(job.spec, quality)
        publish(temp, job.path("video"))
    loudness = loudness_record(target_of(job.spec), measured, achieved, skipped)
    return build_sidecar(job, inputs, source_probe, output_probe, output_sha256, plan,
                         started_at, attempt, mode=mode, shared_key=key, cache_record=record,
                         loudness=loudness, quality=quality, credentials=credentials)


def content_check(job: ExportJob, path: Path, plan: EncodePlan) -> Record:
    """The quality record of a video whose cache entry has none (made before the checks):
    its packets against the source's for a remux, else decoded and scored."""
    if plan.mode == "remux":
        return remux_proof(path, job.title.source)
    return content_score(job.ffmpeg, path, job.title.source, probe(job.title.source),
                         job.spec, plan)


def check_gate(spec: Spec, quality: Record | None) -> None:
    """QualityBelowFloor when the score is under the spec's `quality:` floors."""
    problems = gate_problems(quality, spec.quality)
    if problems:
        raise QualityBelowFloor("; ".join(problems))
