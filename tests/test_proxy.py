"""Optuna's gRPC storage proxy in front of PostgreSQL: commands through it, a worker killed
behind it, the connections it holds, and studies created whole without a transaction."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from batchlr.cli import main
from batchlr.errors import BatchlrError
from batchlr.studies.render import studies_table
from batchlr.studies.store import list_studies, load_spec, study_spec_or_none
from batchlr.studies.store.proxy import PROXY_CONNECTIONS, serve
from batchlr.studies.store.stored_spec import LABELS_ATTR, UnfinishedStudy
from batchlr.studies.store.study_creation import (
    CREATING_ATTR,
    create_study_from,
    settle_unfinished,
)
from benchmarks.common.proxy import start_proxy
from tests.test_workers import FINISHED, batchlr_connections, start, worker_args


@pytest.fixture(scope="module")
def proxy(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``batchlr storage-proxy`` in front of the test database, as a real process; its URL
    once it says it listens."""
    server, url = start_proxy(postgres_url, tmp_path_factory.mktemp("proxy") / "log", 90)
    yield url
    server.terminate()  # SIGTERM, as a scheduler stops it: a clean stop, exit status 0
    assert server.wait(timeout=30) == 0


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.process
def test_run_show_export_report_lr_find_and_the_dashboard_through_the_proxy(
    proxy, postgres_url, tmp_path, dashboard
):
    study = f"proxied-{uuid.uuid4().hex[:8]}"
    args = ["--folds", "2", "--epochs", "1", "--device", "cpu", "--n-trials", "2"]
    assert "trial    1" in invoke("run", "--storage", proxy, "--study", study, *args)
    assert study in invoke("studies", "--storage", proxy)
    assert "best trial" in invoke("show", study, "--storage", proxy)
    invoke("export", study, "--storage", proxy, "--output", str(tmp_path / "best.json"))
    artifacts = str(tmp_path / "artifacts")
    report = ["report", study, "--storage", proxy, "--output", str(tmp_path / "report")]
    assert "attached the report" in invoke(*report, "--artifacts", artifacts)
    probe = ["lr-find", "--study", study, "--storage", proxy, "--lr-count", "20", "--device", "cpu"]
    assert "attached the LR range test" in invoke(*probe, "--artifacts", artifacts)
    with urllib.request.urlopen(f"{dashboard(proxy)}/api/studies", timeout=30) as response:
        names = [summary["study_name"] for summary in json.load(response)["study_summaries"]]
    assert study in names
    # created through the proxy, and whole in the database behind it
    stored = load_spec(optuna.storages.RDBStorage(postgres_url), study)
    assert stored is not None and stored[0].training.budget.amount == 1


@pytest.mark.process
def test_a_worker_frozen_then_killed_behind_the_proxy_loses_no_trial_and_holds_no_connection(
    proxy, postgres_url, tmp_path
):
    study = f"proxied-kill-{uuid.uuid4().hex[:8]}"
    args = worker_args(proxy, study, 16)  # heartbeat 2 s
    log = tmp_path / "log"
    workers = [start(args, log) for _ in range(3)]
    direct = optuna.storages.RDBStorage(postgres_url)
    deadline = time.monotonic() + 120
    # Frozen mid-training, its pid alive: only its stopped liveness stamp tells the others.
    frozen = None
    while frozen is None:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
        try:
            running = optuna.load_study(study_name=study, storage=direct).get_trials(
                states=(TrialState.RUNNING,)
            )
        except KeyError:
            continue
        for trial in running:
            if trial.user_attrs.get("worker", {}).get("pid") == workers[0].pid and (
                trial.intermediate_values
            ):
                workers[0].send_signal(signal.SIGSTOP)
                if direct.get_trial(trial._trial_id).state == TrialState.RUNNING:
                    frozen = trial
                else:  # it ended in between: try its next trial
                    workers[0].send_signal(signal.SIGCONT)
    while direct.get_trial(frozen._trial_id).state == TrialState.RUNNING:
        assert time.monotonic() < deadline + 120, log.read_text()
        time.sleep(0.2)
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    seen: dict[str, int] = {}
    while any(worker.poll() is None for worker in workers[1:]):
        assert time.monotonic() < deadline + 240, log.read_text()
        for name, count in batchlr_connections(postgres_url).items():
            seen[name] = max(seen.get(name, 0), count)
        time.sleep(0.1)
    assert [worker.returncode for worker in workers[1:]] == [0, 0], log.read_text()
    # the workers hold no database connection; the proxy, a few
    assert not {f"batchlr {worker.pid}" for worker in workers} & set(seen)
    assert 1 <= sum(seen.values()) <= PROXY_CONNECTIONS, seen
    trials = optuna.load_study(study_name=study, storage=direct).trials
    killed = trials[frozen.number]
    assert killed.state == TrialState.FAIL and "reason" not in killed.user_attrs  # stale stamp
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state in FINISHED and killed.params.items() <= retry.params.items()
    assert TrialState.RUNNING not in [t.state for t in trials]


def test_an_unreachable_proxy_is_one_clear_line(monkeypatch):
    monkeypatch.setattr("batchlr.studies.store.proxy.READY_TIMEOUT", 0.5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free, and nothing listens once the probe closes
    result = CliRunner().invoke(main, ["studies", "--storage", f"grpc://127.0.0.1:{port}"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == (
        f"Error: --storage grpc://127.0.0.1:{port}: no storage proxy answers there within 0.5 s; "
        f"start one with batchlr storage-proxy --storage DATABASE_URL --port {port}, or fix the address"
    )
    bad = CliRunner().invoke(main, ["studies", "--storage", "grpc://127.0.0.1"])
    assert bad.exit_code == 2 and "grpc://HOST:PORT" in bad.output


def test_a_second_proxy_on_a_port_in_use_is_one_clear_line():
    from optuna.storages._grpc.server import make_server  # binds with SO_REUSEPORT, as gRPC does

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    occupant = make_server(optuna.storages.InMemoryStorage(), "127.0.0.1", port)
    occupant.start()
    try:
        with pytest.raises(BatchlrError, match=f"^cannot listen on 127.0.0.1:{port} .*in use"):
            serve(optuna.storages.InMemoryStorage(), "127.0.0.1", port, on_ready=pytest.fail)
    finally:
        occupant.stop(grace=None)


def _draft(name: str) -> optuna.storages.InMemoryStorage:
    draft = optuna.storages.InMemoryStorage()
    study_id = draft.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
    draft.set_study_user_attr(study_id, "batchlr_format", 6)
    draft.set_study_system_attr(study_id, LABELS_ATTR, "fingerprint")
    draft.set_study_system_attr(study_id, "other", 1)
    return draft


def test_a_study_created_stepwise_is_whole_once_its_last_attr_is_written(monkeypatch):
    # Through a proxy, as on any storage without transactions: the marker last.
    storage = optuna.storages.InMemoryStorage()
    assert create_study_from(storage, _draft("s"), "s", LABELS_ATTR)
    assert not create_study_from(storage, _draft("s"), "s", LABELS_ATTR)  # another's first
    assert list(storage.get_study_system_attrs(0)) == [CREATING_ATTR, "other", LABELS_ATTR]
    # a creator that died before its last write leaves a study readers call unfinished
    half = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "half")
    storage.set_study_system_attr(half, CREATING_ATTR, True)
    storage.set_study_user_attr(half, "dataset", "digits")
    with pytest.raises(UnfinishedStudy, match="batchlr run --study half"):
        load_spec(storage, "half")
    # show, export and report read its settings no more than a run does; studies marks it
    with pytest.raises(UnfinishedStudy, match="batchlr run --study half"):
        study_spec_or_none(optuna.load_study(study_name="half", storage=storage))
    table = studies_table(list_studies(storage)).splitlines()
    assert table[1].startswith("half") and table[1].endswith("creation was interrupted)")
    assert table[2].startswith("s ") and "unfinished" not in table[2]
    # and the next run, once no one finishes it in time, removes it to create it anew
    monkeypatch.setattr("batchlr.studies.store.study_creation.CREATION_WAIT", 0.0)
    settle_unfinished(storage, "half", LABELS_ATTR)
    assert [study.study_name for study in storage.get_all_studies()] == ["s"]


def test_a_study_of_someone_else_is_never_taken_for_unfinished(monkeypatch):
    monkeypatch.setattr("batchlr.studies.store.study_creation.FIRST_WRITE_WAIT", 0.2)
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="empty")
    with pytest.raises(Exception, match="not made by batchlr run"):
        load_spec(storage, "empty")  # after its short wait for a first write
    study = optuna.create_study(storage=storage, study_name="theirs")
    study.set_user_attr("owner", "optuna")
    with pytest.raises(Exception, match="not made by batchlr run"):
        load_spec(storage, "theirs")
    settle_unfinished(storage, "theirs", LABELS_ATTR)  # returns at once, removes nothing
    assert [s.study_name for s in storage.get_all_studies()] == ["empty", "theirs"]
