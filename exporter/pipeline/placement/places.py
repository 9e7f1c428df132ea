"""Where an export's work runs, chosen once at load (`place_of`): `Here` (this process,
which may be one of `doit -n N`'s workers) or `OnDask` (a worker of a Dask cluster).

Both take the same work (`run(name, function, *args)`): the export action is one piece of
code for every combination of place and storage (pipeline/export/action.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from exporter.model.settings import ClusterAddress
from exporter.pipeline.placement.cluster import check_cluster, close_clients, run_on_cluster


@dataclass(frozen=True)
class Here:
    """The work runs in this process, beside this machine's exports tree."""

    # the work sees this machine's local tree (not so on another machine)
    away: ClassVar[bool] = False
    # encodes shared between exports are locked on this machine only
    locks_across_machines: ClassVar[bool] = False

    def run(self, name: str, function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)

    def check(self, renders: Any, exports: Any) -> str | None:
        """Before a run: why the work cannot be done there (raises), or a line saying
        where it runs (None: nothing to say)."""
        return None

    def close(self) -> None:
        """Before doit forks its workers: nothing open that a fork would break."""


@dataclass(frozen=True)
class OnDask:
    """The work runs on a worker of the Dask cluster at `cluster`."""

    cluster: ClusterAddress
    away: ClassVar[bool] = True
    locks_across_machines: ClassVar[bool] = True

    def run(self, name: str, function: Callable[..., Any], *args: Any) -> Any:
        return run_on_cluster(self.cluster, name, function, *args)

    def check(self, renders: Any, exports: Any) -> str | None:
        """Every worker reads the renders and writes the exports (ClusterError if not)."""
        return check_cluster(self.cluster, renders, exports)

    def close(self) -> None:
        close_clients()


HERE = Here()


def place_of(cluster: ClusterAddress | None) -> Here | OnDask:
    """On the cluster when cluster= names one, else here."""
    return OnDask(cluster) if cluster else HERE


def scratch_directory() -> str | None:
    """Where work away from this machine keeps its files: the Dask worker's own directory
    (`dask worker --local-directory`, where its machine has room; Dask removes a killed
    worker's when the next one starts), else the system's temporary directory."""
    try:
        from distributed import get_worker  # noqa: PLC0415  loaded on a worker already
        return get_worker().local_directory
    except (ImportError, ValueError):
        return None
