"""doit's sqlite3 dependency DB, keeping in memory only the entries a run writes.

doit's SqliteDB caches every task entry it reads until the process ends: a no-op check or a
`doit list --status` holds every export's entry though each is read by one task's check
and never again. This backend keeps the entry last read plus the entries written since
the DB was opened (those must stay until `dump`). Same file, same format: the DB stays
readable by doit's own `sqlite3` backend and by exporter.report.ledger.
"""

from __future__ import annotations

from typing import Any

from doit.dependency import SqliteDB

from exporter.pipeline.plumbing.db import SavesOrSaysWhy


class LeanSqliteDB(SavesOrSaysWhy, SqliteDB):
    desc = "sqlite3, caching only the entries written (reelexport)"

    def __init__(self, name, codec, *, module_name=None):
        super().__init__(name, codec, module_name=module_name)
        self._last_read = (None, {})    # (task_id, entry) read but not written

    def _entry(self, task_id):
        if task_id in self._cache:      # written in this run (or read, then written)
            return self._cache[task_id]
        if self._last_read[0] != task_id:
            self._last_read = (task_id, self._get_task_data(task_id))
        return self._last_read[1]

    def get(self, task_id: str, dependency: str) -> Any:
        return self._entry(task_id).get(dependency, None)

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        # doit writes an entry whole: start from what is stored, as SqliteDB's full cache does
        if task_id not in self._cache:
            self._cache[task_id] = dict(self._entry(task_id))
            self._last_read = (None, {})
        super().set(task_id, dependency, value)

    def remove(self, task_id: str) -> None:
        if self._last_read[0] == task_id:
            self._last_read = (None, {})
        super().remove(task_id)

    def remove_all(self) -> None:
        self._last_read = (None, {})
        super().remove_all()
