"""A storage password never shows in what batchlr prints, writes or stores, whatever its form."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import optuna
import pytest
import sqlalchemy

from batchlr.studies.render import dashboard_address
from batchlr.studies.store import mask_command_line, mask_url, redact

SECRET = "Hunter2Secret"
SERVER = "127.0.0.1:5432/test"  # only masked, never connected to


def batchlr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "batchlr", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{SECRET}@{SERVER}",
        f"postgresql://postgres:{SECRET}x@y@{SERVER}",  # an '@' inside the password
        f"postgresql://postgres@{SERVER}?password={SECRET}",
        f"postgresql://postgres@{SERVER}?sslmode=disable&PassWord={SECRET}",
        f"postgresql://postgres:{SECRET}@127.0.0.1:notaport/test",  # malformed: make_url fails
        f"mysql+pymysql://root:{SECRET}@127.0.0.1/test?charset=utf8",
        f"sqlite://user:{SECRET}@//tmp/x.db",
    ],
)
def test_every_url_form_is_masked(url):
    assert SECRET not in mask_url(url)
    assert SECRET not in mask_command_line(["batchlr", "run", f"--storage={url}"])
    assert SECRET not in redact(f"a driver echoed {SECRET} back")


@pytest.mark.process
def test_a_password_stays_out_of_output_and_storage_in_every_form(postgres_url, tmp_path):
    server = postgres_url.removeprefix("postgresql://postgres@")
    study = f"secret-{uuid.uuid4().hex[:8]}"
    query_form = f"postgresql://postgres@{server}?password={SECRET}"
    run = [
        "run",
        "--study",
        study,
        "--dataset",
        "digits",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--n-trials",
        "1",
        "--device",
        "cpu",
    ]
    config = tmp_path / "study.toml"
    config.write_text(f'storage = "postgresql://postgres:{SECRET}@{server}"\n', encoding="utf-8")
    outputs = [
        batchlr(
            *run, "--storage", f"postgresql://postgres:{SECRET}@{server}"
        ),  # user:password@ on the command line
        batchlr(*run, env={"BATCHLR_STORAGE": query_form}),  # a query parameter, in the environment
        batchlr(*run, "--config", str(config)),  # a study file
    ]
    try:
        storage_flag = ["--storage", f"postgresql://postgres:{SECRET}@{server}"]
        outputs += [
            batchlr("show", study, *storage_flag, "--as-config"),
            batchlr("show", study, *storage_flag, "--json"),
            batchlr("studies", *storage_flag),
            batchlr("export", study, *storage_flag, "--output", str(tmp_path / "best.json")),
            batchlr("report", study, *storage_flag, "--output", str(tmp_path / "report")),
            batchlr(
                "studies", "--storage", f"postgresql://postgres:{SECRET}@127.0.0.1:1/test"
            ),  # an error naming the URL
            batchlr("run", "--storage", f"postgresql://postgres:{SECRET}@127.0.0.1:notaport/test"),
        ]
        for output in outputs:
            assert SECRET not in output.stdout + output.stderr
            assert "unexpected" not in output.stderr
        assert [output.returncode for output in outputs] == [0] * 8 + [1, 2], [
            output.stderr for output in outputs
        ]
        assert "storage = " in outputs[3].stdout and "***" in outputs[3].stdout
        assert optuna.load_study(study_name=study, storage=f"postgresql://postgres@{server}").trials
        for written in [tmp_path / "best.json", *(tmp_path / "report").iterdir()]:
            assert SECRET.encode() not in written.read_bytes(), written
        engine = sqlalchemy.create_engine(f"postgresql+psycopg://postgres@{server}")
        with engine.connect() as connection:
            for table in (
                "study_user_attributes",
                "study_system_attributes",
                "trial_user_attributes",
                "trial_system_attributes",
            ):
                leaks = connection.execute(
                    sqlalchemy.text(f"SELECT count(*) FROM {table} WHERE value_json LIKE :secret"),
                    {"secret": f"%{SECRET}%"},
                ).scalar()
                assert leaks == 0, table
    finally:
        optuna.delete_study(study_name=study, storage=f"postgresql://postgres@{server}")


@pytest.mark.process
@pytest.mark.parametrize(
    ("form", "code"),
    [
        ("sqlite://user:{secret}@/{path}", 1),
        ("sqlite:///{path}?password={secret}", 0),
    ],  # SQLAlchemy refuses, or ignores it
)
def test_a_sqlite_url_with_a_password_masks_it_and_stores_nothing(tmp_path, form, code):
    database = tmp_path / "s.db"
    result = batchlr(
        "run",
        "--storage",
        form.format(secret=SECRET, path=database),
        "--dataset",
        "digits",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--n-trials",
        "1",
        "--device",
        "cpu",
    )
    assert result.returncode == code, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert not database.exists() or SECRET.encode() not in database.read_bytes()


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("127.0.0.1", False),
        ("localhost", False),
        ("::1", False),
        ("0.0.0.0", True),
        ("192.168.1.5", True),
    ],
)
def test_a_dashboard_served_beyond_loopback_warns_that_it_has_no_authentication(host, warned):
    _, warning = dashboard_address("sqlite:///x.db", host, 8080)
    assert (warning is not None and "no authentication" in warning) == warned
