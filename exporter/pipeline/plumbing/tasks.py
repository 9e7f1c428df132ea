"""doit task dicts: one file-target task per (title, platform), groups, and the registry.

dodo.py imports `DOIT_CONFIG` values and `task_exports` from here; everything else lives in
modules the tests call directly.
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from doit.exceptions import InvalidDodoFile, TaskFailed
from doit.loader import dict_to_task
from doit.task import DelayedLoader, Task

from exporter.media.shared import SharedCache
from exporter.model import layout
from exporter.model.history import append_events, event
from exporter.model.logs import configure as configure_logging
from exporter.model.logs import quiet_on_closed_pipe
from exporter.model.settings import Settings
from exporter.model.sources import INPUT_NAMES, Title
from exporter.model.spec import Spec
from exporter.pipeline.plumbing.checker import MD5Checker
from exporter.pipeline.plumbing.db import set_aside_unreadable_db
from exporter.pipeline.export.action import export_action
from exporter.pipeline.export.job import ExportJob
from exporter.pipeline.export.library import Build, load_build
from exporter.pipeline.export.outputs import OUTPUTS_VALUE, outputs_intact, outputs_record
from exporter.storage.exports import PUBLISHED_VALUE
from exporter.pipeline.plumbing.runner import install as install_watchful_runner
from exporter.pipeline.export.stamp import remove_stamp

DOIT_CONFIG_BACKEND = "sqlite3-lean"
LOG = logging.getLogger(__name__)
# Imported by doit before dodo.py when it read the project's pyproject.toml (its loader).
PROJECT_LOADER = "exporter.pipeline.plumbing.loader"
WITHOUT_PROJECT_SETTINGS = (
    "WARNING doit did not read reelexport's settings (pyproject.toml in the current "
    "directory): every export is checked in full, a no-op too, and `doit status`, `history` "
    "and `uploaded` are missing; run doit from the repository root")


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
    if PROJECT_LOADER not in sys.modules:   # `doit -f .../dodo.py` from another directory
        LOG.warning(WITHOUT_PROJECT_SETTINGS)
    # Loading tens of thousands of task dicts allocates no garbage worth collecting, and
    # the collector's passes over them would slow every load (docs/performance.md); the
    # reporter turns it back on (with the loaded tasks frozen) before any task runs.
    gc.disable()
    build = load_build()
    settings = build.settings
    try:
        settings.exports.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidDodoFile(f"exports={settings.exports}: the exports root cannot be "
                              f"made: {error.strerror or error}") from None
    set_aside_unreadable_db(settings.dep_file)
    return {
        "default_tasks": default_task_names(build),
        "dep_file": str(settings.dep_file),
        # gdbm is absent from many Python builds; sqlite survives kill -9. Ours is doit's
        # sqlite3 backend without its read cache (exporter/pipeline/plumbing/backend.py).
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


def export_task(job: ExportJob, inputs: list[str] | None = None) -> dict[str, Any]:
    """The file-target task `{platform}:{title_id}` (`inputs`: export_inputs of its title,
    when the caller has them)."""
    return {
        "basename": job.spec.name,
        "name": job.title.title_id,
        "doc": export_doc(job),
        "actions": [(export_action, [job])],
        "file_dep": export_inputs(job.title) if inputs is None else inputs,
        "targets": job.target_names,
        "uptodate": [(export_unchanged, [job.up_to_date_key, job])],
        "clean": [(clean_export, [job])],
    }


def task_from_dict(task_dict: dict[str, Any]) -> Task:
    """The doit Task of one of our `{basename, name, ...}` task dicts."""
    fields = {k: v for k, v in task_dict.items() if k not in ("basename", "name")}
    return dict_to_task({"name": f"{task_dict['basename']}:{task_dict['name']}", **fields})


def export_tasks(jobs: Iterable[ExportJob]) -> Iterator[dict[str, Any]]:
    """export_task of each job, its title's file_dep looked up once for its platforms."""
    inputs = {}
    for job in jobs:
        title = job.title
        if title not in inputs:
            inputs[title] = export_inputs(title)
        yield export_task(job, inputs[title])


# The DB value doit's config_changed used for the same key: states saved by it stay valid.
SETTINGS_VALUE = "_config_changed"


def export_unchanged(task: Task, values: dict[str, Any], key: str, job: ExportJob) -> bool:
    """doit uptodate: the export's settings key is the one saved at its last success, and
    its files are still the ones it made (pipeline/export/outputs.py).

    What `doit.tools.config_changed(key)` does, as a plain function (doit inspects the
    signature of every uptodate callable on every check, and an object's costs more:
    docs/performance.md), plus the outputs, saved after each success.
    """
    task.value_savers.append(lambda: {SETTINGS_VALUE: key, OUTPUTS_VALUE: outputs_record(job)})
    if not job.exports.intact(job, values.get(PUBLISHED_VALUE)):
        return False        # not in the store as published: published again
    return values.get(SETTINGS_VALUE) == key and outputs_intact(job, values.get(OUTPUTS_VALUE))


# doit reads the signature of every uptodate callable on every check to pass `task` and
# `values` (inspect.signature: ~25 us, 1.0 s of a 40,000-export full check); a function's
# own __signature__ is returned as it is.
export_unchanged.__signature__ = inspect.signature(export_unchanged)


def clean_export(job: ExportJob) -> None:
    """`doit clean`: remove the targets and any error record of one export; the history
    records which files went (and keeps every earlier event)."""
    removed = [path.name for path in (*job.targets, job.path("error")) if path.exists()]
    for path in (*job.targets, job.path("error")):
        path.unlink(missing_ok=True)
    job.exports.remove(job.title.key, job.file_order)      # a bucket's copy too
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
    yield from export_tasks(build.jobs)
    yield from group_tasks(build.jobs)
    if build.problems:
        yield library_task(build.problems)
    late = [late_proof_task(build)] if build.proof_pending else []
    yield from late
    yield {"basename": "registry", "actions": None,
           "task_dep": [job.task_name for job in build.jobs] + [task.name for task in late],
           "doc": REGISTRY_DOC,
           # doit cleans dependants before their dependencies, so the registry cannot be
           # regenerated here; removing it means no view is ever wrong. The next run rewrites it.
           "clean": [(clean_run_state, [build.settings])]}


LATE_PROOF = "unchanged-titles"
LATE_PROOF_DOC = "the titles the stamp proves, checked when their exports changed"


def late_proof_task(build: Build) -> Task:
    """The stamp's proof of the titles not loaded, where the registry waits for it.

    A run whose titles to check are known from their inputs (a render added or changed)
    starts their tasks before the stamp's other titles are proven: their exports' states
    (20 stats a title) are taken meanwhile (output_states.SharedDigests). doit calls this task's
    creator when it reaches it, after the first tasks started; the creator adds the tasks
    of any title whose exports changed (edited in place, deleted), checked as usual."""
    return Task(LATE_PROOF, None, loader=DelayedLoader(lambda: late_tasks(build)),
                doc=LATE_PROOF_DOC)


def late_tasks(build: Build) -> Iterator[Task]:
    """The export tasks of the titles the stamp no longer proves, and LATE_PROOF itself
    waiting for them (a group: it runs nothing)."""
    loaded = {job.title.key for job in build.jobs}
    changed = build.stamp_check.changed - loaded
    jobs = build.jobs_of(title for title in build.titles if title.key in changed)
    build.jobs = [*build.jobs, *jobs]       # this run's exports, as the reporter reads them
    yield from map(task_from_dict, export_tasks(jobs))
    yield Task(LATE_PROOF, None, task_dep=[job.task_name for job in jobs], doc=LATE_PROOF_DOC)


def clean_run_state(settings: Settings) -> None:
    """`doit clean`: the registry and gallery (rewritten by the next run) and the
    shared-encode cache."""
    settings.registry_file.unlink(missing_ok=True)
    remove_stamp(settings)
    (settings.exports / layout.GALLERY_PAGE).unlink(missing_ok=True)
    (settings.exports / layout.GALLERY_CACHE).unlink(missing_ok=True)
    (settings.exports / layout.HISTORY_INDEX).unlink(missing_ok=True)   # not the history
    SharedCache(settings.exports).clear()
