"""Cluster mode: each export's media work (probe, encode or remux, verify, covers) runs on a
Dask distributed cluster; doit on this machine keeps the up-to-date checks, its DB, the lock,
the registry, the history and the gallery.

The workers read the renders and write the exports at the same paths (a shared mount), and
publish by atomic rename as a local run does; or, with renders or exports in a bucket, ask
the bucket themselves (pipeline/export/handoff.py). `distributed`
is imported only in cluster mode (it costs about a second at start).

Whoever can submit work to the scheduler runs code on every worker, so the client speaks
tls:// with the cluster's certificates; a plain tcp:// address is taken only on loopback
or when the user says cluster_insecure=yes (`refusal`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import uuid
from typing import Any, Callable

from exporter.model.errors import ExportError
from exporter.model.settings import ClusterAddress

# Dask resubmits the work of a worker that died this many times before giving up on it.
WORKER_LOST_RETRIES = 2
CONNECT_TIMEOUT = "10s"


class ClusterError(ExportError):
    """The cluster cannot be used: refused (a plain address off this machine, a tls://
    one without certificates), the scheduler unreachable, lost or refusing this client, or a
    worker that cannot reach the shared storage. Not a fault of any render: no error record
    is written."""


ENCRYPTED_SCHEMES = ("tls", "wss")
LOCAL_SCHEMES = ("inproc",)         # in this process: nothing listens on the network


def split_address(address: str) -> tuple[str, str]:
    """'tls://10.0.0.5:8786' -> ('tls', '10.0.0.5'); '[::1]:8786' -> ('tcp', '::1')
    (Dask's default scheme is tcp)."""
    scheme, _, rest = address.rpartition("://")
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):
        host = rest[1:].split("]", 1)[0]
    else:
        host = rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest
    return (scheme or "tcp").lower(), host


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: this machine only. A name is not resolved."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refusal(cluster: ClusterAddress, dask_tls: bool = False) -> str | None:
    """Why this client must not talk to `cluster` (None: it may). `dask_tls`: Dask's own
    config (distributed.comm.tls.*) holds a CA and a client certificate. Pure."""
    address = cluster.address
    scheme, host = split_address(address)
    given = cluster.tls_cert is not None
    if scheme in ENCRYPTED_SCHEMES:
        if given or dask_tls:
            return None
        return (f"cluster: {address} needs the cluster's certificates: tls_ca=, tls_cert= and "
                "tls_key= (or REELEXPORT_TLS_CA, REELEXPORT_TLS_CERT, REELEXPORT_TLS_KEY; "
                "docs/cluster.md)")
    if given:
        return (f"cluster: {address} is plain {scheme}://, yet tls_ca= and tls_cert= are "
                f"given: write tls://{address.rpartition('://')[2]} to use them")
    if scheme in LOCAL_SCHEMES or is_loopback(host) or cluster.insecure:
        return None
    return (f"cluster: {address} is plain {scheme}://, without encryption or authentication: "
            "anyone who can reach that port can run code on every worker; use tls:// with "
            "tls_ca=, tls_cert= and tls_key= (docs/cluster.md), or cluster_insecure=yes if "
            "only your machines can reach it")


TLS_REASON = re.compile(r"\[SSL: (\w+)\] ([^(]+)")
# The scheduler's alerts when it refuses this client's certificate (TLSV1_ALERT_UNKNOWN_CA...)
REFUSED_BY_PEER = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN",
                   "CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE", "ACCESS_DENIED")


def tls_failure(address: str, error: BaseException) -> str | None:
    """The line for a failed TLS handshake with the scheduler (None: not one), from the
    OpenSSL reason in `error` or in what it was raised from (Dask wraps it). Pure."""
    texts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    found = TLS_REASON.search("\n".join(texts))
    if found is None:
        if any("EOF occurred in violation of protocol" in text for text in texts):
            # TLS 1.3: the scheduler checks the client's certificate after the handshake,
            # and may close before its alert is read
            return (f"cluster: the scheduler at {address} closed the TLS connection at once: "
                    "most likely it refused this client (a tls_cert= not signed by the CA "
                    "it trusts)")
        return None
    code, reason = found.group(1), found.group(2).strip()
    if code == "CERTIFICATE_VERIFY_FAILED":
        return (f"cluster: the scheduler at {address} is not one of the cluster's: its "
                f"certificate is not signed by tls_ca= ({reason})")
    if any(code.endswith(refused) for refused in REFUSED_BY_PEER):
        return (f"cluster: the scheduler at {address} refused this client: tls_cert= is not "
                f"signed by the CA it trusts ({reason})")
    return f"cluster: the TLS handshake with the scheduler at {address} failed ({reason})"


def security_for(cluster: ClusterAddress) -> Any:
    """The distributed.Security of this client: the given certificates, else Dask's own
    config (distributed.comm.tls.*) when it has them for a tls:// address; None: Dask's
    defaults."""
    from distributed.security import Security  # noqa: PLC0415  cluster mode only
    if cluster.tls_cert is not None:
        return Security(tls_ca_file=cluster.tls_ca, tls_client_cert=cluster.tls_cert,
                        tls_client_key=cluster.tls_key, require_encryption=True)
    if split_address(cluster.address)[0] in ENCRYPTED_SCHEMES:
        configured = Security()
        if configured.tls_ca_file and configured.tls_client_cert:
            return Security(require_encryption=True)
    return None


_CLIENTS: dict[tuple[int, ClusterAddress], Any] = {}


def client_for(address: ClusterAddress | str):
    """This process's client of the scheduler at `address` (one per process: a `doit -n`
    worker makes its own after the fork). ClusterError: refused (`refusal`), unreachable,
    or the TLS handshake failed."""
    cluster = address if isinstance(address, ClusterAddress) else ClusterAddress(address)
    key = (os.getpid(), cluster)
    if key not in _CLIENTS:
        from distributed import Client  # noqa: PLC0415  ~1 s; only cluster mode needs it
        security = security_for(cluster)
        problem = refusal(cluster, dask_tls=security is not None)   # before any connection
        if problem:
            raise ClusterError(problem)
        try:
            _CLIENTS[key] = Client(cluster.address, timeout=CONNECT_TIMEOUT,
                                   set_as_default=False, security=security)
        except (OSError, TimeoutError) as error:
            raise ClusterError(tls_failure(cluster.address, error) or
                               f"cluster: the scheduler at {cluster.address} cannot be "
                               f"reached ({error or type(error).__name__})") from None
    return _CLIENTS[key]


def close_clients() -> None:
    for key, client in list(_CLIENTS.items()):
        if key[0] == os.getpid():
            client.close()
        del _CLIENTS[key]


def storage_problem(renders: Any, exports: Any) -> tuple[str, str] | None:
    """Run on each worker: why it cannot read the renders or write the exports, and what
    every worker must reach (None: it can). Each is a store (exporter/storage)."""
    for store in (renders, exports):
        problem = store.access_problem()
        if problem:
            return problem, store.reach
    return None


def check_cluster(address: ClusterAddress, renders: Any, exports: Any) -> str:
    """At start: every worker must read the renders and write the exports (paths on a
    shared mount, or buckets). Returns the line that names the cluster and its dashboard;
    ClusterError naming a worker that cannot."""
    client = client_for(address)
    try:
        problems = client.run(storage_problem, renders, exports)
    except (OSError, TimeoutError) as error:
        raise ClusterError(f"cluster: the scheduler at {address} was lost ({error})") from None
    if not problems:
        raise ClusterError(f"cluster: the scheduler at {address} has no workers")
    for worker, problem in sorted(problems.items()):
        if problem:
            raise ClusterError(f"cluster: worker {worker} {problem[0]}; every worker must "
                               f"reach {problem[1]}")
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
