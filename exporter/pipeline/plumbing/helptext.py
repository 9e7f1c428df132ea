"""`doit help`: doit's own help, then what this project adds to it: the variables every
command reads (`doit NAME=VALUE`, or its environment variable), with their defaults and
meanings, and the doit options dodo.py's DOIT_CONFIG sets (which doit's help shows with
doit's own defaults)."""

from __future__ import annotations

from doit.cmd_help import Help

from exporter.model.variables import DEFAULTS, ENV_NAMES, OTHER_VAR_NAMES, VAR_HELP, VAR_NAMES
from exporter.pipeline.plumbing.tasks import DOIT_CONFIG_BACKEND
from exporter.pipeline.plumbing.watch import POLL_S, SETTLE_S

# The options doit's `run` (and the commands reading the DB) take from DOIT_CONFIG here.
PROJECT_OPTIONS = (
    ("--db-file", "EXPORTS/.doit.db (the exports root's own DB)"),
    ("--backend", f"{DOIT_CONFIG_BACKEND} (doit's sqlite3 without its read cache)"),
    ("--check_file_uptodate", "content: a file whose state changed is hashed, once a run"),
    ("--continue", "on: a failed export never stops the others"),
    ("--reporter", "this project's (one line per failure, a summary, progress)"),
)


def variables_text() -> str:
    """The variables, one a line: name=DEFAULT  ENVIRONMENT_VARIABLE  meaning."""
    lines = ["", "Variables (doit NAME=VALUE, or the environment variable; docs/usage.md)"]
    for name in (*VAR_NAMES, *OTHER_VAR_NAMES):
        default = DEFAULTS.get(name) or {"settle": f"{SETTLE_S:g}",
                                          "poll": f"{POLL_S:g}"}.get(name, "")
        environment = ENV_NAMES.get(name, "")
        lines.append(f"  {name + '=' + default:28s} {environment:29s} {VAR_HELP[name]}")
    return "\n".join(lines)


def options_text() -> str:
    lines = ["", "Set by this project (dodo.py's DOIT_CONFIG), whatever doit's defaults say:"]
    lines += [f"  {option:24s} {value}" for option, value in PROJECT_OPTIONS]
    return "\n".join(lines)


class ProjectHelp(Help):
    """doit command plugin: `help = "exporter.pipeline.plumbing.helptext:ProjectHelp"`."""

    def print_usage(self, cmds):
        super().print_usage(cmds)
        print(variables_text())
        print(options_text())

    def execute(self, params, args):
        status = super().execute(params, args)
        if len(args) == 1 and args[0] in self.cmds and args[0] != "task":
            print(variables_text())
            if args[0] in ("run", "list", "forget", "clean", "info", "ignore", "reset-dep"):
                print(options_text())
        return status
