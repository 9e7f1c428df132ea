"""doit task loader: dodo.py's tasks, or far fewer when the library stamp proves a no-op.

Registered in pyproject.toml (`[tool.doit] loader`). For `doit` and `doit list` without task
names, when exporter.pipeline.export.stamp shows that nothing doit would check has changed since a run that
left every export up to date:

- `doit` gets only the group tasks it was asked for, already up to date: no export task is
  built or checked, nothing is written, and the reporter says why;
- `doit list` gets every task it would list, each export with the stamp's verdict on its
  settings and targets in place of config_changed and its target list; doit still compares
  each file_dep with its DB (`--status`), so the listing is the same one the full load gives.

A bare `doit` with titles the stamp cannot prove from their inputs alone (new, changed)
starts their tasks before the stamp's other titles are proven: their exports' states are
taken while those tasks run, and any title they show changed is checked then (tasks.py,
late_proof_task). `doit youtube` (group names only) takes the fast path too, proving every
title first. Anything else (export task names, `-a`, another checker or DB, other commands,
a stamp that does not hold) loads dodo.py.

`doit clean`, `forget`, `ignore` and `reset-dep` take the exports tree's lock here, as a run
does in its reporter: refused at once while a run writes the same tree.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from exporter.pipeline.export.output_states import begin_early
from exporter.pipeline.plumbing.arguments import exports_to_prove
from exporter.pipeline.plumbing.arguments import install as install_argument_reading

# The stamp's output states (the no-op's largest part) begin in a child now, before the
# imports below and the listing: doit imports this module before it reads the arguments.
begin_early(exports_to_prove(sys.argv, os.environ))

from doit.cmd_base import DodoTaskLoader, DoitCmdBase  # noqa: E402
from doit.task import Task  # noqa: E402

from exporter.pipeline.plumbing.checker import MD5Checker  # noqa: E402
from exporter.pipeline.export.library import Build, load_build  # noqa: E402
from exporter.pipeline.plumbing.lock import acquire_or_exit  # noqa: E402
from exporter.pipeline.plumbing.plugins import install as install_plugin_lookup  # noqa: E402
from exporter.pipeline.export.stamp import prove_titles, unprovable_titles, usable_stamp  # noqa: E402
from exporter.pipeline.plumbing.tasks import (  # noqa: E402
    DOIT_CONFIG_BACKEND,
    EXPORT_GROUP_DOC,
    REGISTRY_DOC,
    default_task_names,
    export_doc,
    export_inputs,
    platform_group_doc,
    task_exports,
    title_group_doc,
)

FAST_COMMANDS = ("run", "list")
# doit commands besides `run` that write the exports tree or doit's DB: they take the lock.
WRITING_COMMANDS = ("clean", "forget", "ignore", "reset-dep")

# doit reads the command line after importing this module: `--url VALUE` keeps its value,
# an empty argument is one line (pipeline/plumbing/arguments.py).
install_argument_reading()
# doit looks up its other kinds of plugins after this import: from one reading of the
# installed entry points (pipeline/plumbing/plugins.py).
install_plugin_lookup()


class ExportLoader(DodoTaskLoader):
    """dodo.py's loader, with the no-op fast path."""

    lock_fd = None      # held to the end of a clean/forget/ignore/reset-dep

    def setup(self, opt_values: dict[str, Any]) -> None:
        super().setup(opt_values)
        # The command's options, completed with DOIT_CONFIG before load_tasks is called.
        self.options = opt_values

    def load_tasks(self, cmd: DoitCmdBase, pos_args: list[str]) -> list[Task]:
        command = cmd.get_name()
        if command in WRITING_COMMANDS:
            # they change exports or doit's DB under a run that may be writing both
            self.lock_fd = acquire_or_exit(load_build().settings.exports)
        if command in FAST_COMMANDS and self.fast_path_applies(command, pos_args):
            build = load_build()
            loaded = usable_stamp(build)
            bare_run = command == "run" and not pos_args
            unprovable = (unprovable_titles(build, loaded)
                          if loaded is not None and bare_run else ())
            if unprovable:
                # a partial run whatever the exports show: these titles' tasks start now,
                # the stamp's other titles are proven while they run (late_proof_task)
                build.prove_later(loaded)
                build.jobs = build.jobs_of(title for title in build.titles
                                           if title.key in unprovable)
                return super().load_tasks(cmd, pos_args)
            check = prove_titles(build, loaded) if loaded is not None else None
            if check is not None and check.everything:
                build.stamp_check, build.proven_up_to_date = check, check.stamp
                if command == "list":
                    return listed_tasks(build)
                return group_tasks_up_to_date(build)
            if check is not None and command == "run":
                # a partial run: only the titles the stamp does not prove are loaded
                build.stamp_check = check
                build.jobs = build.jobs_of(title for title in build.titles
                                           if title.key in check.changed)
        return super().load_tasks(cmd, pos_args)

    def fast_path_applies(self, command: str, pos_args: list[str]) -> bool:
        """The stamp speaks for our tasks under our md5 check of our DB, and for whole
        groups only: not for a task someone added to dodo.py."""
        options, build = self.options, load_build()
        if (options.get("always") or options.get("check_file_uptodate") is not MD5Checker
                or options.get("dep_file") != str(build.settings.dep_file)
                or options.get("backend") != DOIT_CONFIG_BACKEND
                or options.get("default_tasks") != default_task_names(build)):
            return False
        creators = {name: value for name, value in self.namespace.items()
                    if name.startswith("task_")}
        if creators != {"task_exports": task_exports}:
            return False
        if command == "list":
            return not pos_args
        return set(pos_args) <= set(default_task_names(build))


def group_tasks_up_to_date(build: Build) -> list[Task]:
    """The default tasks, up to date (so doit records nothing: its DB stays as stamped)."""
    return [Task(name, None, uptodate=[True]) for name in default_task_names(build)]


# A task the stamp proves up to date: `doit list --status` shows U without asking the DB
# (the stamp holds only while the DB is as it was when every one was found up to date).
PROVEN = {"proven_up_to_date": True}


def listed_tasks(build: Build) -> list[Task]:
    """What the full load lists: groups, then every selected export with its file_dep."""
    tasks = [Task(name, None, doc=platform_group_doc(spec), has_subtask=True, meta=PROVEN)
             for name, spec in build.selected_specs.items()]
    tasks.append(Task("export", None, doc=EXPORT_GROUP_DOC, has_subtask=True, meta=PROVEN))
    tasks.append(Task("registry", None, doc=REGISTRY_DOC, meta=PROVEN))
    title_group = Task("export:title", None, subtask_of="export", meta=PROVEN)
    export = Task("platform:title", None, uptodate=[True], subtask_of="platform", meta=PROVEN)
    inputs = {}
    for job in build.jobs:
        title = job.title
        if title not in inputs:
            inputs[title] = set(export_inputs(title))
            tasks.append(like(title_group, f"export:{title.title_id}", title_group_doc(title),
                              title_group.file_dep, "export"))
        tasks.append(like(export, job.task_name, export_doc(job), inputs[title],
                          job.spec.name))
    return tasks


def like(template: Task, name: str, doc: str, file_dep: set[str], subtask_of: str) -> Task:
    """What Task(name, ...) makes of `template`'s arguments with these four, without its 19
    argument checks (9 us a task: 0.4 s of `doit list` at 10,000 titles). The copies share
    the template's empty lists and sets: `doit list` only reads its tasks (tests/test_noop.py
    compares a copy with Task()'s own)."""
    task = Task.__new__(Task)
    task.__dict__ = {**template.__dict__, "name": name, "doc": Task._init_doc(doc),
                     "file_dep": file_dep, "subtask_of": subtask_of}
    return task
