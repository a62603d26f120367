"""Serving a storage in optuna-dashboard."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from pathlib import Path

import optuna_dashboard

from batchlr.errors import BatchlrError
from batchlr.studies.artifacts import artifact_store
from batchlr.studies.storage import open_storage


def serve_dashboard(storage_url: str, host: str, port: int, ready: Callable[[], None], artifacts: Path | None = None) -> None:
    """Serve optuna-dashboard for ``storage_url`` and its studies' artifacts (see
    :mod:`batchlr.studies.artifacts`) until interrupted, calling ``ready`` once the storage
    is open and the port free.

    Raises:
        BatchlrError: when the storage cannot be opened or the port is taken.
    """
    storage = open_storage(storage_url, access="read")
    try:
        with socket.create_server((host, port)):  # fail before announcing the address
            pass
        ready()
        optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=artifact_store(storage_url, artifacts))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise BatchlrError(f"port {port} on {host} is in use; choose another with --port") from None
        raise BatchlrError(f"cannot serve on {host}:{port}: {error.strerror}") from None
