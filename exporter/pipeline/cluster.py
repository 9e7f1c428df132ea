"""Cluster mode: each export's media work (probe, encode or remux, verify, covers) runs on a
Dask distributed cluster; doit on this machine keeps the up-to-date checks, its DB, the lock,
the registry, the history and the gallery.

Shared storage is the contract: the workers read the renders and write the exports at the
same paths (a shared mount), and publish by atomic rename as a local run does. `distributed`
is imported only in cluster mode (it costs about a second at start).
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from typing import Any, Callable

from exporter.model.errors import ExportError

# Dask resubmits the work of a worker that died this many times before giving up on it.
WORKER_LOST_RETRIES = 2
CONNECT_TIMEOUT = "10s"


class ClusterError(ExportError):
    """The cluster cannot be used: scheduler unreachable or lost, or a worker that cannot
    reach the shared storage. Not a fault of any render: no error record is written."""


_CLIENTS: dict[tuple[int, str], Any] = {}


def client_for(address: str):
    """This process's client of the scheduler at `address` (one per process: a `doit -n`
    worker makes its own after the fork)."""
    key = (os.getpid(), address)
    if key not in _CLIENTS:
        from distributed import Client  # noqa: PLC0415  ~1 s; only cluster mode needs it
        try:
            _CLIENTS[key] = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise ClusterError(f"cluster: the scheduler at {address} cannot be reached "
                               f"({error or type(error).__name__})") from None
    return _CLIENTS[key]


def close_clients() -> None:
    for key, client in list(_CLIENTS.items()):
        if key[0] == os.getpid():
            client.close()
        del _CLIENTS[key]


def storage_problem(renders: str, exports: str) -> str | None:
    """Run on each worker: why it cannot use the shared storage (None: it can)."""
    if not os.path.isdir(renders) or not os.access(renders, os.R_OK | os.X_OK):
        return f"cannot read the renders root {renders}"
    try:
        os.makedirs(exports, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=exports, prefix=".cluster-check-"):
            pass
    except OSError as error:
        return f"cannot write the exports root {exports} ({error.strerror or error})"
    return None


def check_cluster(address: str, renders: str, exports: str) -> str:
    """At start: every worker must see the renders and write the exports. Returns the line
    that names the cluster and its dashboard; ClusterError naming a worker that cannot."""
    client = client_for(address)
    try:
        problems = client.run(storage_problem, str(renders), str(exports))
    except (OSError, TimeoutError) as error:
        raise ClusterError(f"cluster: the scheduler at {address} was lost ({error})") from None
    if not problems:
        raise ClusterError(f"cluster: the scheduler at {address} has no workers")
    for worker, problem in sorted(problems.items()):
        if problem:
            raise ClusterError(f"cluster: worker {worker} {problem}; every worker must see "
                               "the same renders and exports paths (a shared mount)")
    return (f"cluster: {address}, {len(problems)} worker{'s' * (len(problems) > 1)}, "
            f"dashboard {client.dashboard_link}")


def current_worker() -> str | None:
    """The address of the Dask worker running this code; None outside a cluster."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker  # noqa: PLC0415  already imported: no cost
    try:
        return get_worker().address
    except ValueError:
        return None


def run_on_cluster(address: str, name: str, function: Callable, *args: Any) -> Any:
    """`function(*args)` on a worker of the cluster; its result, or its exception raised
    here. A worker lost mid-way has the work resubmitted (WORKER_LOST_RETRIES); the
    scheduler lost is a ClusterError."""
    from distributed import KilledWorker  # noqa: PLC0415  imported by client_for already
    client = client_for(address)
    try:
        future = client.submit(function, *args, key=f"{name}-{uuid.uuid4().hex}", pure=False,
                               retries=WORKER_LOST_RETRIES)
        return future.result()
    except KilledWorker as error:
        raise ClusterError(f"cluster: the workers running it died "
                           f"{WORKER_LOST_RETRIES + 1} times ({error})") from None
    except Exception as error:
        if isinstance(error, ExportError) or not cluster_failure(error, client):
            raise           # the work's own failure, raised on the worker
        raise ClusterError(f"cluster: the scheduler at {address} was lost "
                           f"({type(error).__name__}); the next run resumes") from None


def cluster_failure(error: Exception, client: Any) -> bool:
    """True for the engine's own failures (connection, cancellation), as opposed to an
    exception the work raised on its worker and Dask raised again here."""
    home = type(error).__module__.split(".")[0]
    return home in ("distributed", "tornado", "asyncio", "concurrent") or (
        client.status not in ("running", "connecting"))
