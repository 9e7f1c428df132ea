"""The doit pipeline, by concern: `plumbing` (how doit loads, checks, runs and records the
tasks), `export` (one export, from its job to its sidecar) and `placement` (where the work
runs: here, or on a Dask worker). Where the bytes live is exporter/storage."""
