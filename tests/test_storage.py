"""Storages: SQLite files and the PostgreSQL server on this machine, never a mock."""

import uuid

import optuna
import pytest
from click.testing import CliRunner

from batchlr.cli import main
from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.studies.store import mask_url, open_storage


def test_passwords_are_masked():
    assert (
        mask_url("postgresql://alice:s3cret@db.example/optuna")
        == "postgresql://alice:***@db.example/optuna"
    )
    assert mask_url("sqlite:///batchlr.db") == "sqlite:///batchlr.db"


def test_read_only_commands_never_create_a_file(tmp_path):
    with pytest.raises(BatchlrError, match="no such file"):
        open_storage(f"sqlite:///{tmp_path / 'typo.db'}", access="read")
    assert not (tmp_path / "typo.db").exists()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(BatchlrError, match="cannot open storage"):
        open_storage(f"sqlite:///{path}", access="read")
    assert path.read_text().startswith("these are my notes")


@pytest.mark.parametrize("url", ["notadb://x", "sqlite://", "not a url"])
def test_malformed_urls_are_usage_errors(url):
    with pytest.raises(BatchlrUsageError, match="--storage"):
        open_storage(url, access="create")


def test_unwritable_sqlite_path_is_a_clear_error():
    with pytest.raises(BatchlrError, match="there is no directory /proc/nope; create it first"):
        open_storage("sqlite:////proc/nope/x.db", access="create")


def test_a_study_runs_and_resumes_on_postgresql(postgres_url):
    name = f"batchlr-test-{uuid.uuid4().hex[:8]}"
    args = [
        "run",
        "--storage",
        postgres_url,
        "--study",
        name,
        "--dataset",
        "digits",
        "--folds",
        "2",
        "--epochs",
        "1",
    ]
    args += ["--batch-size", "64:128", "--device", "cpu", "--n-trials", "2"]
    try:
        for seed in ("1", "2"):
            result = CliRunner().invoke(main, [*args, "--seed", seed], catch_exceptions=False)
            assert result.exit_code == 0, result.output
        study = optuna.load_study(study_name=name, storage=postgres_url)
        assert len(study.trials) == 4 and study.user_attrs["folds"] == 2
    finally:
        optuna.delete_study(study_name=name, storage=postgres_url)
