"""Read doit's dependency DB (the ledger of what is up to date) and regenerate registry.json."""

import sqlite3
import sys
import time

from doit.dependency import Dependency, MD5Checker, SqliteDB
from doit.task import dict_to_task

from .registry import build_registry, export_status, registry_row
from .run import read_json, write_json_atomic


def up_to_date_names(task_dicts, dep_file):
    """Names of the tasks doit itself would skip: the check `doit list --status` makes."""
    tasks = {}
    for task_dict in task_dicts:
        fields = {k: v for k, v in task_dict.items() if k not in ("basename", "name")}
        name = f"{task_dict['basename']}:{task_dict['name']}"
        tasks[name] = dict_to_task({"name": name, **fields})
    dependency = Dependency(SqliteDB, str(dep_file), checker_cls=MD5Checker)
    try:
        return {name for name, task in tasks.items()
                if dependency.get_status(task, tasks).status == "up-to-date"}
    finally:
        dependency.close()


def registry_document(build):
    """The registry for every (title, platform) of the library, selected this run or not."""
    from .tasks import export_task
    fresh = up_to_date_names([export_task(job) for job in build.all_jobs],
                             build.settings.dep_file)
    rows = []
    for job in build.all_jobs:
        present = job.video_path.exists() and job.sidecar_path.exists()
        error = read_json(job.error_path)
        status = export_status(present, job.task_name in fresh, error is not None)
        identity = {"title_id": job.title.title_id, "segment": job.title.segment,
                    "age": job.title.age, "platform": job.spec.name}
        output_path = str(job.video_path.relative_to(build.settings.exports))
        rows.append(registry_row(identity, status, output_path,
                                 read_json(job.sidecar_path) if present else None, error))
    return build_registry(rows, build.all_specs)


def regenerate_registry(build):
    """Write registry.json atomically (untouched when nothing changed); returns the document."""
    document = registry_document(build)
    write_json_atomic(build.settings.registry_file, document)
    return document


def db_read_error(path):
    """Why doit's sqlite DB at `path` cannot be read, or None (also when it is busy)."""
    try:
        connection = sqlite3.connect(path)
        try:
            connection.execute("select count(*) from doit").fetchone()
        finally:
            connection.close()
    except sqlite3.OperationalError as error:
        harmless = "locked" in str(error) or "no such table" in str(error)
        return None if harmless else error
    except sqlite3.DatabaseError as error:
        return error
    return None


def set_aside_unreadable_db(path):
    """Move a dep DB that cannot be read out of the way, and say so.

    doit then starts from nothing and runs every export task; each finds its video and
    sidecar made from the same inputs (hashes verified) and keeps them, so a lost or
    corrupt DB costs hashing, not encoding.
    """
    if not path.exists():
        return None
    error = db_read_error(path)
    if error is None:
        return None
    moved = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
    path.rename(moved)
    sys.stderr.write(f"reelexport: dependency DB {path} cannot be read ({error}); moved to "
                     f"{moved.name}; rebuilding state from the sidecars (no re-encoding)\n")
    return moved
