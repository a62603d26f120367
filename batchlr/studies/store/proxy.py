"""Optuna's gRPC storage proxy: one process holds the database connections, workers call it.

PostgreSQL allows 100 connections by default; hundreds of workers each holding one exhaust it.
Behind ``batchlr storage-proxy`` they hold none: the proxy serves Optuna's storage calls over
gRPC (``--storage grpc://HOST:PORT``) on at most :data:`PROXY_CONNECTIONS` connections. The
proxy carries no artifacts and no heartbeats: liveness rides on a trial system attr (see
:mod:`batchlr.studies.store.liveness`), and artifacts go to a store every worker reaches.
"""

from __future__ import annotations

import importlib.util
import signal
import urllib.parse
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import optuna
from optuna.storages import GrpcStorageProxy

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.studies.store.liveness import Liveness
from batchlr.studies.store.retries import retry_stale_trial

SCHEME = "grpc"
DEFAULT_PROXY_PORT = 13000
"""Optuna's own default port for the proxy."""
PROXY_CONNECTIONS = 8
"""Database connections the proxy holds at most, whatever the number of workers behind it."""
PROXY_THREADS = 16
"""Calls the proxy serves at once; more wait in gRPC's queue, those beyond the connections wait
for one, so that a burst of workers never opens more."""
STOP_GRACE = 5
"""Seconds the calls in flight get to finish when the proxy is stopped."""
READY_TIMEOUT = 10
"""Seconds a worker waits for the proxy to answer before it gives up."""
INSTALL = "pip install 'batchlr[proxy]'"


class LiveGrpcStorage(Liveness, GrpcStorageProxy):
    """Optuna's gRPC proxy client with :class:`Liveness`, which the proxy's calls carry."""


def is_proxy_url(url: str) -> bool:
    return url.startswith(f"{SCHEME}://")


def proxy_address(url: str) -> tuple[str, int]:
    """The host and port of a ``grpc://HOST:PORT`` URL.

    Raises:
        BatchlrUsageError: for one without a host and port, or with more.
    """
    parsed = urllib.parse.urlsplit(url)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not parsed.hostname or port is None or parsed.path not in ("", "/") or parsed.query:
        raise BatchlrUsageError(
            f"--storage {url}: a storage proxy's URL is grpc://HOST:PORT, like grpc://127.0.0.1:{DEFAULT_PROXY_PORT}"
        )
    return parsed.hostname, port


def open_proxy(url: str, heartbeat: int | None) -> LiveGrpcStorage:
    """A client of the proxy at ``url``, once it answers, refreshing liveness stamps every
    ``heartbeat`` seconds (None: off).

    Raises:
        BatchlrError: when grpcio is not installed, or the proxy does not answer within
            :data:`READY_TIMEOUT` seconds.
    """
    host, port = proxy_address(url)
    _require_grpc(url)
    with warnings.catch_warnings():
        # Experimental in Optuna since 4.2; batchlr depends on it knowingly.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = LiveGrpcStorage(host=host, port=port)
    try:
        storage.wait_server_ready(timeout=READY_TIMEOUT)
    except ConnectionError as error:
        storage.close()
        raise BatchlrError(
            f"--storage {url}: no storage proxy answers there within {READY_TIMEOUT} s; start "
            f"one with batchlr storage-proxy --storage DATABASE_URL --port {port}, or fix the address"
        ) from error
    storage.watch(heartbeat, retry_stale_trial)
    return storage


def serve(
    storage: optuna.storages.BaseStorage,
    host: str,
    port: int,
    on_ready: Callable[[], None],
) -> None:
    """Serve ``storage`` (opened with at most :data:`PROXY_CONNECTIONS` connections) over gRPC
    at ``host``:``port`` until Ctrl-C or SIGTERM, calling ``on_ready`` once it listens; the
    calls in flight then get :data:`STOP_GRACE` seconds.

    Raises:
        BatchlrError: when grpcio is not installed or the address cannot be bound.
    """
    _require_grpc(f"{SCHEME}://{host}:{port}")
    import grpc
    from optuna.storages._grpc.auto_generated.api_pb2_grpc import (
        add_StorageServiceServicer_to_server,
    )
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    # Optuna's make_server, but without gRPC's SO_REUSEPORT: with it a second proxy binds the
    # same port, and the calls alternate between two databases.
    server = grpc.server(ThreadPoolExecutor(PROXY_THREADS), options=[("grpc.so_reuseport", 0)])
    # Optuna's advice: its cache in front of the database spares it most reads.
    service = OptunaStorageProxyService(optuna.storages.get_storage(storage))
    add_StorageServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    try:
        server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:
        raise BatchlrError(
            f"cannot listen on {host}:{port} ({error}); the port may be in use: choose another --port"
        ) from error
    server.start()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        on_ready()
        # A second at a time: a signal the kernel hands to one of gRPC's threads reaches
        # Python's handler only when this thread wakes.
        while server.wait_for_termination(timeout=1.0):
            pass
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM (a scheduler's): how a proxy is meant to stop
    finally:
        signal.signal(signal.SIGTERM, previous)
        # Calls in flight get STOP_GRACE seconds; gRPC's own wait for them can hang for ever.
        server.stop(grace=STOP_GRACE).wait(STOP_GRACE + 1)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _require_grpc(url: str) -> None:
    if importlib.util.find_spec("grpc") is None:
        raise BatchlrError(f"{url}: the storage proxy needs grpcio; {INSTALL}")
