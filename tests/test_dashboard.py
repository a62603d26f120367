"""`batchlr dashboard` serves the storage on 127.0.0.1, as a real process."""

import json
import subprocess
import urllib.error
import urllib.request
from urllib.parse import urlparse

import optuna
import optuna_dashboard
import pytest
from click.testing import CliRunner

from batchlr.cli import main
from batchlr.studies.run.creation import save_dashboard_note


def test_a_note_longer_than_one_attribute_reads_back_whole_in_the_dashboard():
    study = optuna.create_study()
    body = "".join(f"line {number}\n" for number in range(1000))  # about four attributes
    save_dashboard_note(study._storage, study._study_id, body)
    assert optuna_dashboard.get_note(study) == body


@pytest.mark.process
def test_dashboard_lists_the_study_on_loopback_only(sqlite_url, dashboard):
    args = [
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "shown",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]
    assert CliRunner().invoke(main, [*args, "--n-trials", "1"]).exit_code == 0
    note = optuna_dashboard.get_note(optuna.load_study(study_name="shown", storage=sqlite_url))
    assert "batchlr run" in note and "--folds 2" in note
    base = dashboard(sqlite_url)
    with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as response:
        studies = json.load(response)["study_summaries"]
    assert [study["study_name"] for study in studies] == ["shown"]
    port = urlparse(base).port
    listening = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True
    ).stdout
    assert {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines()} == {"127.0.0.1"}


def test_a_taken_port_is_one_line_and_no_address_is_announced(sqlite_url):
    import socket

    import optuna

    optuna.create_study(study_name="x", storage=sqlite_url)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["dashboard", "--storage", sqlite_url, "--port", str(port)]
        )
    assert result.exit_code == 1 and "in use" in result.stderr
    assert "http://" not in result.stdout


@pytest.mark.process
def test_the_dashboard_serves_artifacts_read_only(sqlite_url, dashboard, tmp_path):
    import base64

    import optuna
    from optuna.artifacts import get_all_artifact_meta

    from batchlr.studies.results import attach

    study = optuna.create_study(study_name="kept", storage=sqlite_url, direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"batch_size": 32},
            distributions={"batch_size": optuna.distributions.IntDistribution(16, 64)},
            value=0.5,
        )
    )
    (tmp_path / "m.pt").write_bytes(b"the refit model")
    store = attach(sqlite_url, "kept", [tmp_path / "m.pt"], None).store
    artifact = get_all_artifact_meta(study)[0].artifact_id
    base = dashboard(sqlite_url)
    study_id = study._study_id

    def request(method: str, path: str, body: dict | None = None) -> int:
        data = None if body is None else json.dumps(body).encode()
        try:
            with urllib.request.urlopen(
                urllib.request.Request(f"{base}{path}", data=data, method=method), timeout=30
            ) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    upload = {
        "file": "data:text/plain;base64," + base64.b64encode(b"orphan").decode(),
        "filename": "x.txt",
    }
    assert request("DELETE", f"/api/artifacts/{study_id}/{artifact}") == 405
    assert request("POST", f"/api/artifacts/{study_id}", upload) == 405
    assert request("POST", f"/api/artifacts/{study_id}/{study.trials[0]._trial_id}", upload) == 405
    # would remove every artifact of the study first
    assert request("DELETE", f"/api/studies/{study_id}") == 405
    with urllib.request.urlopen(f"{base}/artifacts/{study_id}/{artifact}", timeout=30) as response:
        assert response.read() == b"the refit model"
    assert [path.name for path in store.iterdir()] == [artifact]
    assert [
        meta.artifact_id
        for meta in get_all_artifact_meta(optuna.load_study(study_name="kept", storage=sqlite_url))
    ] == [artifact]
