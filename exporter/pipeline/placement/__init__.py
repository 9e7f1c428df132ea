"""Where the work runs: here (this process, or doit's worker process), or on a Dask worker.
Chosen once at load; the export action asks its place to run the work."""
