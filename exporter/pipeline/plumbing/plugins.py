"""doit's plugins looked up once per process, not once per kind of plugin.

doit 0.37 asks importlib.metadata for the entry points of each kind of plugin it loads
(commands, loaders, DB backends, reporters: four or five asks a run), and each ask reads the
metadata of every distribution installed, about 130 in a venv with the test extra: a tenth
of a no-op's CPU here. The installed distributions do not change while a run lasts, so the
first reading serves the asks that follow it (the one or two made before doit imports the
loader still read their own).
"""

from __future__ import annotations

import functools
import importlib.metadata

import doit.plugin


@functools.cache
def installed_entry_points() -> importlib.metadata.EntryPoints:
    return importlib.metadata.entry_points()


def entry_points(group: str) -> importlib.metadata.EntryPoints:
    """importlib.metadata.entry_points(group=group), from the one reading."""
    return installed_entry_points().select(group=group)


def install() -> None:
    """Make doit look its plugins up here (doit.plugin's own seam for that)."""
    doit.plugin.entry_points_impl = lambda: entry_points
