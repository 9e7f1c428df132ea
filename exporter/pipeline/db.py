"""doit's dependency DB file: set aside, with a message, when it cannot be read."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

LOG = logging.getLogger(__name__)


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


def set_aside_unreadable_db(path: Path) -> Path | None:
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
    LOG.warning(f"reelexport: dependency DB {path} cannot be read ({error}); moved to "
                f"{moved.name}; rebuilding state from the sidecars (no re-encoding)")
    return moved
