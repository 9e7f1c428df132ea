"""The doit pipeline: task dicts, the export action, the loader and no-op stamp, the DB
checker and backend, the lock."""
