"""`batchlr dashboard` serves the storage on 127.0.0.1, as a real process."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from batchlr.cli import main


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_dashboard_lists_the_study(sqlite_url):
    args = ["run", "--storage", sqlite_url, "--study", "shown", "--folds", "2", "--epochs", "1", "--device", "cpu"]
    assert CliRunner().invoke(main, [*args, "--n-trials", "1"]).exit_code == 0
    port = _free_port()
    command = [str(Path(sys.executable).parent / "batchlr"), "dashboard", "--storage", sqlite_url, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.load(response)["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline, "dashboard did not answer in 90 s"
                time.sleep(0.5)
        assert [study["study_name"] for study in studies] == ["shown"]
        # Bound to loopback only: the machine's other addresses must not answer.
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        server.terminate()
        server.wait(timeout=30)


def _listening_addresses(port: int) -> set[str]:
    output = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in output.splitlines()}
