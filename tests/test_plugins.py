"""doit's plugins looked up from one reading of the installed entry points."""

import importlib.metadata

import doit.plugin
import pytest

from exporter.pipeline.plumbing import plugins

pytestmark = pytest.mark.once


def test_doit_finds_the_installed_plugins_from_one_reading(monkeypatch):
    monkeypatch.setattr(doit.plugin, "entry_points_impl", doit.plugin.entry_points_impl)
    readings = []
    read = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kwargs: readings.append(kwargs) or read(**kwargs))
    plugins.installed_entry_points.cache_clear()
    plugins.install()
    lookup = doit.plugin.entry_points_impl()
    for group in ("doit.BACKEND", "doit.COMMAND", "doit.LOADER", "doit.REPORTER"):
        assert list(lookup(group=group)) == list(read(group=group))
    assert "sqlite3-lean" in lookup(group="doit.BACKEND").names
    found = doit.plugin.PluginDict()
    found.add_plugins({}, "BACKEND")
    assert found["sqlite3-lean"].location == \
        "exporter.pipeline.plumbing.backend:LeanSqliteDB"
    assert readings == [{}], "every kind of plugin from the one reading"
