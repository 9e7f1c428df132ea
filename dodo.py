"""reelexport: `doit` builds data/exports from data/renders. See README.md and docs/usage.md."""

from exporter.tasks import doit_config, task_exports  # noqa: F401  (doit collects task_*)

DOIT_CONFIG = doit_config()
