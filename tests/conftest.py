"""Shared fixtures: real data from ../shared/data, tiny settings, throwaway storages."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_SUBSET = SHARED_DATA / "cifar10-subset" / "train"
MNIST_RAW = SHARED_DATA / "mnist" / "MNIST" / "raw"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets; a missing folder is a broken checkout, so the tests fail rather than skip."""
    assert CIFAR_SUBSET.is_dir() and MNIST_RAW.is_dir(), f"real data missing under {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture
def dashboard():
    """Start `batchlr dashboard` for a storage, as a real process; returns its base URL once it answers."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    servers = []

    def serve(storage: str) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "batchlr", "dashboard", "--storage", storage, "--port", str(port)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        servers.append(server)
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as response:
                    json.load(response)
                return base
            except OSError:
                assert time.monotonic() < deadline, "dashboard did not answer in 90 s"
                time.sleep(0.5)

    yield serve
    for server in servers:
        server.terminate()
        server.wait(timeout=30)
