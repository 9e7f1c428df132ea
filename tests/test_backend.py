"""exporter.backend.LeanSqliteDB: doit's sqlite3 DB without the read cache, same results."""

import pytest
from doit.dependency import JSONCodec, SqliteDB

from exporter.pipeline.plumbing.backend import LeanSqliteDB

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once


def filled_db(path, entries):
    db = SqliteDB(str(path), JSONCodec())
    for task_id, values in entries.items():
        for key, value in values.items():
            db.set(task_id, key, value)
    db.dump()


def stored(path):
    db = SqliteDB(str(path), JSONCodec())
    rows = db._conn.execute("select task_id, task_data from doit").fetchall()
    db._conn.close()
    return {row["task_id"]: row["task_data"] for row in rows}


ENTRIES = {f"youtube:t{i}": {"checker:": "MD5Checker", "deps:": [f"/r/t{i}/final.mp4"],
                             f"/r/t{i}/final.mp4": [1.5, 10, f"md5-{i}"]} for i in range(50)}


def test_reads_every_entry_without_keeping_them(tmp_path):
    filled_db(tmp_path / "db", ENTRIES)
    db = LeanSqliteDB(str(tmp_path / "db"), JSONCodec())
    for task_id, values in ENTRIES.items():
        for key, value in values.items():
            assert db.get(task_id, key) == value
    assert db.get("youtube:t0", "nothing") is None and db.get("no-task", "deps:") is None
    assert db._cache == {}
    assert db.in_("youtube:t3") and not db.in_("no-task")
    db.dump()
    assert stored(tmp_path / "db") == ENTRIES


def test_a_write_keeps_the_rest_of_the_entry_as_doits_backend_does(tmp_path):
    filled_db(tmp_path / "db", ENTRIES)
    db = LeanSqliteDB(str(tmp_path / "db"), JSONCodec())
    db.get("youtube:t1", "deps:")                  # read, then written (a task that ran)
    db.set("youtube:t1", "_values_:", {"a": 1})
    db.set("youtube:t2", "checker:", "Other")      # written without a read first
    db.get("youtube:t3", "deps:")                  # a read in between changes nothing
    assert db.get("youtube:t1", "_values_:") == {"a": 1}
    db.remove("youtube:t4")
    db.set("youtube:t5", "x", 1)
    db.remove("youtube:t5")
    db.dump()
    expected = {**ENTRIES, "youtube:t1": {**ENTRIES["youtube:t1"], "_values_:": {"a": 1}},
                "youtube:t2": {**ENTRIES["youtube:t2"], "checker:": "Other"}}
    del expected["youtube:t4"], expected["youtube:t5"]
    assert stored(tmp_path / "db") == expected


def test_remove_all(tmp_path):
    filled_db(tmp_path / "db", ENTRIES)
    db = LeanSqliteDB(str(tmp_path / "db"), JSONCodec())
    db.get("youtube:t1", "deps:")
    db.remove_all()
    assert db.get("youtube:t1", "deps:") is None
    db.dump()
    assert stored(tmp_path / "db") == {}
