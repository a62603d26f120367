"""Serving a storage in optuna-dashboard, read-only."""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from batchlr.errors import BatchlrError
from batchlr.studies.results.artifacts import artifact_store
from batchlr.studies.store.storage import open_storage

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

READ_METHODS = ("GET", "HEAD")
READ_ONLY = "batchlr dashboard serves the storage read-only: change studies and their artifacts with batchlr or optuna"


def read_only(app: WSGIApplication) -> WSGIApplication:
    """``app`` answering every request but a read (``GET``, ``HEAD``) with 405 before it runs.

    optuna-dashboard's uploads, deletions, notes and renames each write, and on a read-only
    storage fail only after part of their work is done: deleting an artifact removed the
    file and then failed to unlink it from the study; an upload left an orphan file.
    """

    def serve(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") in READ_METHODS:
            return app(environ, start_response)
        body = json.dumps({"reason": READ_ONLY}).encode()
        start_response(
            "405 Method Not Allowed",
            [
                ("Content-Type", "application/json"),
                ("Allow", ", ".join(READ_METHODS)),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    return serve


def serve_dashboard(
    storage_url: str, host: str, port: int, ready: Callable[[], None], artifacts: Path | None = None
) -> None:
    """Serve optuna-dashboard for ``storage_url`` and its studies' artifacts (see
    :mod:`batchlr.studies.results.artifacts`), read-only (see :func:`read_only`), until interrupted,
    calling ``ready`` once the storage is open and the port free.

    Raises:
        BatchlrError: when the storage cannot be opened or the port is taken.
    """
    # here, not at the top: reading results (`batchlr studies`, `show`) needs no dashboard
    import bottle
    import optuna_dashboard

    storage = open_storage(storage_url, access="read")
    app = read_only(
        optuna_dashboard.wsgi(storage, artifact_store=artifact_store(storage_url, artifacts))
    )
    try:
        with socket.create_server((host, port)):  # fail before announcing the address
            pass
        ready()
        bottle.run(app, host=host, port=port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise BatchlrError(
                f"port {port} on {host} is in use; choose another with --port"
            ) from error
        raise BatchlrError(f"cannot serve on {host}:{port}: {error.strerror}") from error
