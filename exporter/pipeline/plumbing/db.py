"""doit's dependency DB file: set aside, with a message, when it cannot be read; one line,
never a traceback, when it cannot be created or saved."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidDodoFile

LOG = logging.getLogger(__name__)

# Why this process could not save doit's DB (a full disk): the run's reporter says it
# failed once its own writes are done; another command exits 2 at once (SavesOrSaysWhy).
SAVE_FAILURES: list[str] = []
# Set by the run's reporter: it reports SAVE_FAILURES itself, after the registry.
REPORTER_EXITS_ON_SAVE_FAILURE = [False]


def db_read_error(path: Path | str) -> sqlite3.DatabaseError | None:
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


def aside_name(path: Path) -> Path:
    """A name beside `path` for the DB set aside, taken by no other file: the time to the
    microsecond, and a counter should two set-asides still meet."""
    stamp = time.strftime("%Y%m%dT%H%M%S") + f".{time.time_ns() // 1000 % 1_000_000:06d}"
    candidate = path.with_name(f"{path.name}.unreadable-{stamp}")
    count = 1
    while candidate.exists() or candidate.is_symlink():
        count += 1
        candidate = path.with_name(f"{path.name}.unreadable-{stamp}-{count}")
    return candidate


def unwritable_cause(directory: Path) -> str | None:
    """Why no file can be created in `directory` (None: one can). A read-only mount
    refuses root too, where permissions do not."""
    if os.access(directory, os.W_OK):
        return None
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "a read-only file system" if read_only else "not writable (permission denied)"


def set_aside_unreadable_db(path: Path) -> Path | None:
    """Move a dep DB that cannot be read out of the way, and say so.

    doit then starts from nothing and runs every export task; each finds its video and
    sidecar made from the same inputs (hashes verified) and keeps them, so a lost or
    corrupt DB costs hashing, not encoding.

    A DB that does not exist in an exports root where none can be created (a read-only
    mount) is one line (InvalidDodoFile: doit's `ERROR: ...`, exit 3), not sqlite's traceback.
    """
    if not path.exists():
        cause = unwritable_cause(path.parent) if path.parent.is_dir() else None
        if cause:
            raise InvalidDodoFile(f"{path}: doit's dependency DB cannot be created: the "
                                  f"exports root {path.parent} is {cause}")
        return None
    error = db_read_error(path)
    if error is None:
        return None
    moved = aside_name(path)
    try:
        os.rename(path, moved)
    except OSError as failure:
        raise InvalidDodoFile(f"{path}: doit's dependency DB cannot be read ({error}) nor "
                              f"moved aside: {failure.strerror}") from None
    LOG.warning(f"reelexport: dependency DB {path} cannot be read ({error}); moved to "
                f"{moved.name}; rebuilding state from the sidecars (no re-encoding)")
    return moved


class SavesOrSaysWhy:
    """Mixin for doit's sqlite backend: a DB that cannot be saved (a full disk, a read-only
    root) is one line naming the file and the cause, never a traceback.

    What the run made is kept either way: each export's files and sidecar are in place, and
    the next run, not finding them in the DB, checks them again (hashing, no re-encoding).
    In a run, the reporter still writes the registry and exits 2 after it; any other
    command exits 2 at once.
    """

    name: str
    _conn: Any
    _save_failed = False    # then nothing more is written: the DB stays as the run found it

    def dump(self) -> None:
        if self._save_failed:
            return
        try:
            super().dump()  # type: ignore[misc]
        except (sqlite3.Error, OSError) as error:
            self.failed_to_save(error)

    def remove(self, task_id: str) -> None:
        if self._save_failed:
            return
        try:
            super().remove(task_id)  # type: ignore[misc]
        except (sqlite3.Error, OSError) as error:
            self.failed_to_save(error)

    def failed_to_save(self, error: Exception) -> None:
        """Keep the DB as the run found it (what it proves was true then: a task this run
        did not finish is run again), say why in one line, and exit 2 unless the run's
        reporter does it after the registry."""
        self._save_failed = True
        try:
            self._conn.rollback()
            self._conn.close()
        except sqlite3.Error:
            pass
        cause = getattr(error, "strerror", None) or str(error)
        line = (f"reelexport: doit's dependency DB {self.name} not saved: {cause}; the "
                "exports made are kept, the next run checks them again (no re-encoding)")
        LOG.error(line)
        SAVE_FAILURES.append(line)
        if not REPORTER_EXITS_ON_SAVE_FAILURE[0]:
            raise SystemExit(2)
