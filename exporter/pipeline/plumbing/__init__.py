"""doit's plumbing: the loader and its no-op fast path, the task dicts, command-line
arguments, the DB backend and checker, the process runner, the lock, interrupts, and the
commands built on them (`doit watch`)."""
