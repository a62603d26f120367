"""Starting ``batchlr storage-proxy`` as a child process, for the load benchmark and the tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def start_proxy(
    database_url: str, log: Path, timeout: float = 120
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a storage proxy for ``database_url`` on a free port of 127.0.0.1, its output in
    ``log``; returns the process and its ``grpc://`` URL once it says it listens.

    Raises:
        RuntimeError: when it exits or stays silent for ``timeout`` seconds, with its output.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "batchlr", "storage-proxy", "--storage", database_url]
    with log.open("wb") as output:
        proxy = subprocess.Popen(
            [*command, "--port", str(port)], stdout=output, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + timeout
    while "storage proxy for" not in log.read_text():
        if proxy.poll() is not None or time.monotonic() > deadline:
            proxy.kill()
            raise RuntimeError(f"the storage proxy did not start: {log.read_text()}")
        time.sleep(0.1)
    return proxy, f"grpc://127.0.0.1:{port}"
