"""`batchlr dashboard` serves the storage on 127.0.0.1, as a real process."""

import json
import subprocess
import urllib.request
from urllib.parse import urlparse

from click.testing import CliRunner

from batchlr.cli import main


def test_dashboard_lists_the_study_on_loopback_only(sqlite_url, dashboard):
    args = ["run", "--storage", sqlite_url, "--study", "shown", "--folds", "2", "--epochs", "1", "--device", "cpu"]
    assert CliRunner().invoke(main, [*args, "--n-trials", "1"]).exit_code == 0
    base = dashboard(sqlite_url)
    with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as response:
        studies = json.load(response)["study_summaries"]
    assert [study["study_name"] for study in studies] == ["shown"]
    port = urlparse(base).port
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines()} == {"127.0.0.1"}


def test_a_taken_port_is_one_line_and_no_address_is_announced(sqlite_url):
    import socket

    import optuna

    optuna.create_study(study_name="x", storage=sqlite_url)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["dashboard", "--storage", sqlite_url, "--port", str(port)])
    assert result.exit_code == 1 and "in use" in result.stderr
    assert "http://" not in result.stdout
