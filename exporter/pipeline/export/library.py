"""The loaded library: every title and platform spec, and the exports one invocation selected.

Made once per process from doit's command-line variables (load_build); the task dicts
(tasks.py), the loader's fast path and every command read it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from doit import get_var
from doit.exceptions import InvalidDodoFile

from exporter.media.credentials import load_credentials
from exporter.media.ffmpeg_binary import check_ffmpeg, choose_ffmpeg
from exporter.model import layout
from exporter.model.errors import EncodeError, LibraryError, SpecError
from exporter.model.locations import ObjectStoreError
from exporter.model.settings import Settings, resolve_settings
from exporter.model.sources import Title, describe_library, discover, select
from exporter.model.spec import Spec, load_specs, preset_problem, select_specs
from exporter.pipeline.export.job import ExportJob, RetryPolicy
from exporter.pipeline.export.output_states import early_outputs
from exporter.pipeline.export.stamp import (
    LoadedStamp,
    StampCheck,
    export_file_names,
    inputs_fingerprint,
    prove_titles,
    title_inputs,
    with_published,
)
from exporter.pipeline.placement.places import place_of
from exporter.storage.exports import exports_store
from exporter.storage.renders import renders_store


class Build:
    """The loaded library: every title and spec, and the exports this invocation selected."""

    def __init__(self, settings: Settings) -> None:
        if settings.cluster:
            # workers run elsewhere, in other directories: every path they get is absolute
            settings = replace(settings, renders=settings.renders.resolve(),
                               exports=settings.exports.resolve(),
                               platforms_dir=settings.platforms_dir.resolve())
        self.settings = settings
        # where the bytes live and where the work runs: chosen here, once
        self.renders = renders_store(settings)
        self.exports = exports_store(settings)
        self.place = place_of(settings.cluster)
        self.all_specs = load_specs(settings.platforms_dir, settings.platforms_checked_file)
        self.selected_specs = select_specs(self.all_specs, settings.platforms)
        for spec in self.selected_specs.values() if settings.preset else ():
            problem = preset_problem(settings.preset, spec.video["profile"])
            if problem:
                raise LibraryError(f"preset={settings.preset}: {problem} ({spec.name})")
        # the stamp's output states, taken meanwhile in a child (the no-op's largest part)
        self.early_outputs = early_outputs(settings.exports, export_file_names(self))
        # the exports' store listed meanwhile: a bucket's pages wait on the network, and the
        # renders' listing as much (a tree answers at once)
        with ThreadPoolExecutor(max_workers=1) as meanwhile:
            exports_listed = meanwhile.submit(self.exports.load)
            # a bucket's titles as they are now, in the local mirror
            in_bucket = self.renders.refresh()
            exports_listed.result()     # its failure is raised here, as before
        # a segment directory named like a file of the exports root would collide with it
        library = discover(settings.renders,
                           reserved_segments=layout.VISIBLE_FILES)
        self.all_titles, self.problems = library.titles, sorted(library.problems + in_bucket)
        self.titles = select(self.all_titles, settings.segments, settings.ages)
        if not self.titles:
            raise LibraryError(self.empty_selection_message())
        self.ffmpeg = check_ffmpeg(choose_ffmpeg(settings.ffmpeg)).path
        # the C2PA signer, checked now (one line, exit 3, when it cannot sign); None: off
        self.credentials = load_credentials(settings.signing)
        self.retry = RetryPolicy(settings.attempts, settings.backoff_s, settings.retry_failed)
        selected = tuple(self.selected_specs.values())
        self.siblings = {name: tuple(s for s in selected if s.name != name)
                         for name in self.all_specs}
        self._jobs_made: dict[tuple[str, str], ExportJob] = {}
        # Taken now, before any task runs: a source changed during the run must not be
        # stamped as up to date at its end (exporter.pipeline.export.stamp).
        self.base_fingerprint = inputs_fingerprint(self)
        # exports in a bucket: its exports as listed now, part of what the stamp proves: an
        # object deleted or overwritten there is published again
        self.published = exports_listed.result()
        self.inputs_fingerprint = with_published(self.base_fingerprint, self.published)
        self.title_inputs = title_inputs(self.all_titles)
        # What the library stamp proves, when the loader found it holding at least for the
        # whole library's settings (exporter.pipeline.export.stamp.StampCheck); None: all is
        # checked. A stamp whose titles are proven when first asked (prove_later) waits here.
        self._stamp_check = None
        self._stamp_to_prove = None
        # The stamp, when it proves every export: this run skips doit's per-task checks.
        self.proven_up_to_date = None

    @property
    def stamp_check(self) -> StampCheck | None:
        if self._stamp_to_prove is not None:
            stamp, self._stamp_to_prove = self._stamp_to_prove, None
            self._stamp_check = prove_titles(self, stamp)
        return self._stamp_check

    @stamp_check.setter
    def stamp_check(self, check: StampCheck | None) -> None:
        self._stamp_check, self._stamp_to_prove = check, None

    def prove_later(self, stamp: LoadedStamp) -> None:
        """The stamp's titles are proven when stamp_check is first asked for: a run with
        titles to check starts them first (pipeline/plumbing/tasks.py, the late proof)."""
        self._stamp_check, self._stamp_to_prove = None, stamp

    @property
    def proof_pending(self) -> bool:
        return self._stamp_to_prove is not None

    def note_published(self, uploads: dict[str, dict[str, list]]) -> None:
        """The bucket's exports as this run left them: as listed at its start, with what
        each export's upload returned (task name -> file -> [size, etag]), so the stamp
        proves that without listing the prefix again. A change made there by anyone else
        shows in the next run's listing, which the stamp is compared with."""
        jobs = {job.task_name: job for job in self.jobs}
        published = dict(self.published)
        for name, files in uploads.items():
            for file_name, (size, etag) in files.items():
                published[f"{jobs[name].title.key}/{file_name}"] = (size, etag)
        self.published = published
        self.inputs_fingerprint = with_published(self.base_fingerprint, self.published)

    def job(self, title: Title, spec: Spec) -> ExportJob:
        """The export of `title` to `spec`, made once per Build."""
        made = self._jobs_made.get((title.key, spec.name))
        if made is None:
            settings = self.settings
            made = self._jobs_made[(title.key, spec.name)] = ExportJob(
                title, spec, self.renders, self.exports, self.ffmpeg, settings.preset,
                self.retry, siblings=self.siblings[spec.name], place=self.place,
                credentials=self.credentials)
        return made

    def jobs_of(self, titles: Iterable[Title]) -> list[ExportJob]:
        """The selected exports of these titles (platforms in the library's order)."""
        specs = [spec for name, spec in self.all_specs.items() if name in self.selected_specs]
        return [self.job(title, spec) for title in titles for spec in specs]

    # Made when first asked for: a run of a few changed titles builds only their jobs before
    # its first task starts (40,000 of them take ~0.3 s; docs/performance.md).
    @functools.cached_property
    def all_jobs(self) -> list[ExportJob]:
        """Every export of the library, selected or not (the registry lists them all)."""
        return [self.job(title, spec) for title in self.all_titles
                for spec in self.all_specs.values()]

    @property
    def selected_count(self) -> int:
        """How many exports `jobs` holds, without making them (a no-op only counts them)."""
        return len(self.titles) * sum(name in self.selected_specs for name in self.all_specs)

    @functools.cached_property
    def jobs(self) -> list[ExportJob]:
        """The exports this invocation selected (the loader narrows them on a partial run)."""
        return self.jobs_of(self.titles)

    def empty_selection_message(self) -> str:
        asked = " ".join(f"{name}={','.join(values)}" for name, values in
                         (("segment", self.settings.segments), ("age", self.settings.ages))
                         if values)
        return (f"{asked or 'the renders root'} matches no title in {self.settings.renders}; "
                f"the library has: {describe_library(self.all_titles)}")


@functools.cache
def load_build() -> Build:
    """Build from doit's command-line vars, once per process; errors become doit errors."""
    try:
        return Build(resolve_settings(get_var))
    # EncodeError: ffmpeg missing; ObjectStoreError: renders=s3://... cannot be listed
    except (SpecError, LibraryError, EncodeError, ObjectStoreError) as error:
        raise InvalidDodoFile(str(error)) from None
