"""doit task dicts: one file-target task per (title, platform), groups, and the registry.

dodo.py imports `DOIT_CONFIG` values and `task_exports` from here; everything else lives in
modules the tests call directly.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from doit import get_var
from doit.exceptions import InvalidDodoFile, TaskFailed

from exporter.build.checker import MD5Checker
from exporter.build.db import set_aside_unreadable_db
from exporter.build.export import export_action
from exporter.build.job import ExportJob, RetryPolicy
from exporter.build.runner import install as install_watchful_runner
from exporter.build.stamp import inputs_fingerprint, remove_stamp, title_inputs
from exporter.media.ffmpeg_binary import check_ffmpeg, choose_ffmpeg
from exporter.media.shared import SharedCache
from exporter.model import layout
from exporter.model.errors import EncodeError, LibraryError, SpecError
from exporter.model.history import append_events, event
from exporter.model.logs import configure as configure_logging
from exporter.model.logs import quiet_on_closed_pipe
from exporter.model.settings import Settings, resolve_settings
from exporter.model.sources import (
    INPUT_NAMES,
    Title,
    describe_library,
    discover,
    select,
)
from exporter.model.spec import Spec, load_specs, select_specs

if TYPE_CHECKING:
    from doit.task import Task


class Build:
    """The loaded library: every title and spec, and the exports this invocation selected."""

    def __init__(self, settings: Settings) -> None:
        if settings.cluster:
            # workers run elsewhere, in other directories: every path they get is absolute
            settings = replace(settings, renders=settings.renders.resolve(),
                               exports=settings.exports.resolve(),
                               platforms_dir=settings.platforms_dir.resolve())
        self.settings = settings
        self.all_specs = load_specs(settings.platforms_dir)
        self.selected_specs = select_specs(self.all_specs, settings.platforms)
        # a segment directory named like a file of the exports root would collide with it
        library = discover(settings.renders,
                           reserved_segments=layout.VISIBLE_FILES)
        self.all_titles, self.problems = library.titles, library.problems
        self.titles = select(self.all_titles, settings.segments, settings.ages)
        if not self.titles:
            raise LibraryError(self.empty_selection_message())
        self.ffmpeg = check_ffmpeg(choose_ffmpeg(settings.ffmpeg)).path
        self.retry = RetryPolicy(settings.attempts, settings.backoff_s, settings.retry_failed)
        selected = tuple(self.selected_specs.values())
        self.siblings = {name: tuple(s for s in selected if s.name != name)
                         for name in self.all_specs}
        self._jobs_made: dict[tuple[str, str], ExportJob] = {}
        # Taken now, before any task runs: a source changed during the run must not be
        # stamped as up to date at its end (exporter.build.stamp).
        self.inputs_fingerprint = inputs_fingerprint(self)
        self.title_inputs = title_inputs(self.all_titles)
        # What the library stamp proves, when the loader found it holding at least for the
        # whole library's settings (exporter.build.stamp.StampCheck); None: all is checked.
        self.stamp_check = None
        # The stamp, when it proves every export: this run skips doit's per-task checks.
        self.proven_up_to_date = None

    def job(self, title: Title, spec: Spec) -> ExportJob:
        """The export of `title` to `spec`, made once per Build."""
        made = self._jobs_made.get((title.key, spec.name))
        if made is None:
            settings = self.settings
            made = self._jobs_made[(title.key, spec.name)] = ExportJob(
                title, spec, settings.exports, self.ffmpeg, settings.preset, self.retry,
                siblings=self.siblings[spec.name], cluster=settings.cluster)
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
    except (SpecError, LibraryError, EncodeError) as error:   # EncodeError: ffmpeg missing
        raise InvalidDodoFile(str(error)) from None


DOIT_CONFIG_BACKEND = "sqlite3-lean"


def default_task_names(build: Build) -> list[str]:
    """What a bare `doit` runs: the platform groups, every title, the registry, and the
    library check when some directories are refused."""
    return [*build.selected_specs, "export", "registry", *(["library"] if build.problems else [])]


def doit_config(reporter: type) -> dict[str, Any]:
    """DOIT_CONFIG: dep DB in the exports root, keep going past failures, our reporter.

    Default tasks are named (platform groups, then the rest) so that a bare `doit forget`
    or `doit clean` acts on the selected exports; doit 0.37's forget fails without them.
    """
    install_watchful_runner()       # `doit -n N` notices a worker that dies
    configure_logging()             # every module's messages: plain lines on stderr
    quiet_on_closed_pipe()          # `doit list | head`: no BrokenPipeError traceback
    # Loading tens of thousands of task dicts allocates no garbage worth collecting, and
    # the collector's passes over them would slow every load (docs/performance.md); the
    # reporter turns it back on (with the loaded tasks frozen) before any task runs.
    gc.disable()
    build = load_build()
    settings = build.settings
    settings.exports.mkdir(parents=True, exist_ok=True)
    set_aside_unreadable_db(settings.dep_file)
    return {
        "default_tasks": default_task_names(build),
        "dep_file": str(settings.dep_file),
        # gdbm is absent from many Python builds; sqlite survives kill -9. Ours is doit's
        # sqlite3 backend without its read cache (exporter/build/backend.py).
        "backend": DOIT_CONFIG_BACKEND,
        "check_file_uptodate": MD5Checker,     # content, hashed once per file per run
        "continue": True,
        "reporter": reporter,
    }


def library_task(problems: list[str]) -> dict[str, Any]:
    """`library`: fails listing the directories refused, so the run exits non-zero."""
    def report() -> TaskFailed:
        return TaskFailed("library: " + "\n       library: ".join(problems))
    return {"basename": "library", "actions": [report], "uptodate": [False],
            "doc": f"{len(problems)} directories of the renders root cannot be exported"}


EXPORT_GROUP_DOC = "all selected exports, by title"
REGISTRY_DOC = "run the selected exports; registry.json is rewritten after every run"


def export_doc(job: ExportJob) -> str:
    return f"{job.spec.display_name} export of {job.title.key}"


def title_group_doc(title: Title) -> str:
    return f"all platforms of {title.key}"


def platform_group_doc(spec: Spec) -> str:
    return f"all selected titles for {spec.display_name}"


def export_inputs(title: Title) -> list[str]:
    """An export's file_dep: the title's source, metadata and (when present) thumbnail."""
    directory = str(title.directory)
    return [path for path in (os.path.join(directory, name) for name in INPUT_NAMES)
            if os.path.isfile(path)]    # not a FIFO or a device: doit would hash it forever


def export_task(job: ExportJob) -> dict[str, Any]:
    """The file-target task `{platform}:{title_id}`."""
    return {
        "basename": job.spec.name,
        "name": job.title.title_id,
        "doc": export_doc(job),
        "actions": [(export_action, [job])],
        "file_dep": export_inputs(job.title),
        "targets": job.target_names,
        "uptodate": [(settings_unchanged, [job.up_to_date_key])],
        "clean": [(clean_export, [job])],
    }


# The DB value doit's config_changed used for the same key: states saved by it stay valid.
SETTINGS_VALUE = "_config_changed"


def settings_unchanged(task: Task, values: dict[str, Any], key: str) -> bool:
    """doit uptodate: the export's settings key is the one saved at its last success.

    What `doit.tools.config_changed(key)` does, as a plain function: doit inspects the
    signature of every uptodate callable on every check, and an object's costs more
    (docs/performance.md).
    """
    task.value_savers.append(lambda: {SETTINGS_VALUE: key})
    return values.get(SETTINGS_VALUE) == key


def clean_export(job: ExportJob) -> None:
    """`doit clean`: remove the targets and any error record of one export; the history
    records which files went (and keeps every earlier event)."""
    removed = [path.name for path in (*job.targets, job.path("error")) if path.exists()]
    for path in (*job.targets, job.path("error")):
        path.unlink(missing_ok=True)
    if removed:
        append_events(job.exports_root, [event("cleaned", job.task_name, title=job.title.key,
                                               files=removed)])


def clean_exports(jobs: list[ExportJob]) -> None:
    """`doit clean` of a title's group: each of its exports, as `doit clean` of each."""
    for job in jobs:
        clean_export(job)


def group_tasks(jobs: Iterable[ExportJob]) -> Iterator[dict[str, Any]]:
    """`export:{title_id}`: all selected platforms of one title (explicit names: no wildcards)."""
    by_title, jobs_of = {}, {}
    for job in jobs:
        by_title.setdefault(job.title, []).append(job.task_name)
        jobs_of.setdefault(job.title, []).append(job)
    for title, names in by_title.items():
        yield {"basename": "export", "name": title.title_id, "actions": None,
               "task_dep": names, "doc": title_group_doc(title),
               # `doit clean export:TITLE` removes that title's exports, as a user expects
               "clean": [(clean_exports, [jobs_of[title]])]}


def task_exports() -> Iterator[dict[str, Any]]:
    """Generate every selected export task, the per-title groups and the registry task."""
    build = load_build()
    for spec in build.selected_specs.values():
        yield {"basename": spec.name, "name": None, "doc": platform_group_doc(spec)}
    yield {"basename": "export", "name": None, "doc": EXPORT_GROUP_DOC}
    for job in build.jobs:
        yield export_task(job)
    yield from group_tasks(build.jobs)
    if build.problems:
        yield library_task(build.problems)
    yield {"basename": "registry", "actions": None,
           "task_dep": [job.task_name for job in build.jobs],
           "doc": REGISTRY_DOC,
           # doit cleans dependants before their dependencies, so the registry cannot be
           # regenerated here; removing it means no view is ever wrong. The next run rewrites it.
           "clean": [(clean_run_state, [build.settings])]}


def clean_run_state(settings: Settings) -> None:
    """`doit clean`: the registry and gallery (rewritten by the next run) and the
    shared-encode cache."""
    settings.registry_file.unlink(missing_ok=True)
    remove_stamp(settings)
    (settings.exports / layout.GALLERY_PAGE).unlink(missing_ok=True)
    (settings.exports / layout.GALLERY_CACHE).unlink(missing_ok=True)
    (settings.exports / layout.HISTORY_INDEX).unlink(missing_ok=True)   # not the history
    SharedCache(settings.exports).clear()
