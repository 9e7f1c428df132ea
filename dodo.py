"""reelexport: `doit` builds data/exports from data/renders. See README.md and docs/usage.md."""

from exporter.pipeline.plumbing.tasks import doit_config, task_exports  # noqa: F401  (doit collects task_*)
from exporter.report.reporter import ExportReporter

DOIT_CONFIG = doit_config(reporter=ExportReporter)
