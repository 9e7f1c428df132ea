"""Read doit's dependency DB (the ledger of what is up to date): the registry's rows.

report/view.py writes them (and carries over the titles whose rows cannot have changed).
"""

import os

from doit.dependency import Dependency, SqliteDB

from exporter.model.history import distribution_index
from exporter.model.layout import task_name
from exporter.model.records import export_file_names, identity, read_record
from exporter.pipeline.plumbing.checker import MD5Checker
from exporter.pipeline.plumbing.tasks import export_task, task_from_dict
from exporter.report.registry import (
    build_registry,
    export_status,
    registry_row,
    with_distribution,
)


def up_to_date_names(task_dicts, dep_file):
    """Names of the tasks doit itself would skip: the check `doit list --status` makes."""
    tasks = {task.name: task for task in map(task_from_dict, task_dicts)}
    dependency = Dependency(SqliteDB, str(dep_file), checker_cls=MD5Checker)
    try:
        return {name for name, task in tasks.items()
                if dependency.get_status(task, tasks).status == "up-to-date"}
    finally:
        dependency.close()


def registry_document(build, outcomes=None, previous=None, history=None):
    """The registry for every (title, platform) of the library, selected this run or not.

    `outcomes` (task name -> "up-to-date", "done" or "failed") is what this run's doit
    decided; those tasks need no second check. An export doit found up to date keeps its
    row from the `previous` registry: its sidecar cannot have changed, since only its task
    writes it. Everything else is checked against doit's DB as `doit list --status` does.
    Each row then gets its distribution history (`history`: distribution_index; read when
    None, without saving the index).
    """
    if history is None:
        history = distribution_index(build.settings.exports, save=False)[0]
    rows_before = {(row["platform"], row["title_id"]): row
                   for row in (previous or {}).get("exports", [])}
    rows = export_rows(build, build.all_jobs, outcomes or {}, rows_before, history)
    rows.extend(removed_rows(build, history))
    return build_registry(rows, build.all_specs)


def export_rows(build, jobs, outcomes, rows_before, history):
    """The rows of these exports (see registry_document; `rows_before`: (platform,
    title_id) -> the row the registry had, trusted)."""
    unknown = [job for job in jobs if job.task_name not in outcomes]
    fresh = (up_to_date_names([export_task(job) for job in unknown], build.settings.dep_file)
             if unknown else set())
    fresh |= {name for name, outcome in outcomes.items() if outcome in ("up-to-date", "done")}
    rows = []
    for job in jobs:
        names = job.identity
        before = rows_before.get((job.spec.name, job.title.title_id))
        row = carried_over_row(before, names, outcomes.get(job.task_name))
        row = row or current_row(job, names, job.task_name in fresh, build.settings.exports)
        rows.append(with_distribution(row, history.get(job.task_name, [])))
    return rows


def removed_rows(build, history):
    """Exports still on disk whose title has left the renders root: kept, marked removed,
    with their distribution history.

    Only the folders of titles the library no longer has are read; the tree is listed down
    to the title folders (segments and ages), not into every title.
    """
    known = {title.key for title in build.all_titles}
    root = build.settings.exports
    rows = []
    for key in sorted(unknown_title_dirs(root, known)):
        for sidecar_path in sorted((root / key).glob(export_file_names("*")["sidecar"])):
            sidecar = read_record(sidecar_path)
            if not sidecar:
                continue
            video = sidecar_path.with_name(export_file_names(sidecar.get("platform"))["video"])
            if not video.is_file():
                continue
            names = identity(sidecar.get("title_id"), sidecar.get("segment"),
                             sidecar.get("age"), sidecar.get("platform"))
            if None in names.values():
                continue
            row = registry_row(names, "removed", video.relative_to(root).as_posix(), sidecar)
            rows.append(with_distribution(row, history.get(task_name(row["platform"],
                                                                     row["title_id"]), [])))
    return rows


def unknown_title_dirs(root, known):
    """segment/age/title folders of the exports root that are not titles of the library."""
    for segment in visible_dirs(root):
        for age in visible_dirs(segment):
            for title in visible_dirs(age):
                key = f"{segment.name}/{age.name}/{title.name}"
                if key not in known:
                    yield key


def visible_dirs(path):
    try:
        return [entry for entry in os.scandir(path)
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")]
    except OSError:
        return []


def carried_over_row(before, names, outcome):
    """The previous registry's row of an export this run's doit found up to date (it was
    exported then and nothing of it has changed since); None when it must be read again."""
    if (outcome == "up-to-date" and before and before["status"] == "exported"
            and all(before.get(k) == v for k, v in names.items())):
        return before
    return None


def current_row(job, names, up_to_date, exports_root):
    """The row of one export read from its files: the view regenerated."""
    present = job.path("video").exists() and job.path("sidecar").exists()
    error = read_record(job.path("error"))
    status = export_status(present, up_to_date, error is not None)
    output_path = str(job.path("video").relative_to(exports_root))
    return registry_row(names, status, output_path,
                        read_record(job.path("sidecar")) if present else None, error)


def with_history(document, history):
    """The registry `document` with every row's distribution fields (and the totals) taken
    again from the history (distribution_index): what an upload recorded since changes,
    nothing else."""
    rows = [with_distribution(row, history.get(task_name(row["platform"], row["title_id"]), []))
            for row in document["exports"]]
    return build_registry(rows, document["platforms"])
