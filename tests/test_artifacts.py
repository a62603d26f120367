"""Refit and report attach their files to the study with Optuna's artifact store."""

import errno
import json
import re
import shutil
import uuid
from pathlib import Path

import optuna
import sqlalchemy
from click.testing import CliRunner
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

from batchlr.cli import main
from tests.test_results import _study_of_fold_scores


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_refit_and_report_attach_the_model_and_figures_beside_a_sqlite_file(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    invoke(
        "run",
        "--storage",
        storage,
        "--study",
        "a",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--n-trials",
        "3",
        "--device",
        "cpu",
        "--quiet",
    )
    refit = invoke(
        "refit", "a", "--storage", storage, "--output", str(tmp_path / "m.pt"), "--device", "cpu"
    )
    report = invoke("report", "a", "--storage", storage, "--output", str(tmp_path / "report"))
    store_dir = tmp_path / "studies-artifacts"
    assert f"attached the model to study a's artifacts in {store_dir}" in refit.output
    assert f"attached the report to study a's artifacts in {store_dir}" in report.output
    metas = get_all_artifact_meta(optuna.load_study(study_name="a", storage=storage))
    by_name = {meta.filename: meta for meta in metas}
    assert (
        "m.pt" in by_name
        and "index.html" in by_name
        and sum(name.endswith(".png") for name in by_name) >= 5
    )
    assert (
        by_name["m.pt"].mimetype == "application/octet-stream"
        and by_name["index.html"].mimetype == "text/html"
    )
    png = next(meta for meta in metas if meta.filename.endswith(".png"))
    assert png.mimetype == "image/png"
    download_artifact(
        artifact_store=FileSystemArtifactStore(str(store_dir)),
        artifact_id=png.artifact_id,
        file_path=str(tmp_path / "got.png"),
    )
    assert (tmp_path / "got.png").read_bytes() == (tmp_path / "report" / png.filename).read_bytes()


def test_a_postgresql_study_attaches_only_to_a_given_store_and_says_how(postgres_url, tmp_path):
    study = f"pg-artifacts-{uuid.uuid4().hex[:8]}"
    invoke(
        "run",
        "--storage",
        postgres_url,
        "--study",
        study,
        "--folds",
        "2",
        "--epochs",
        "1",
        "--n-trials",
        "2",
        "--device",
        "cpu",
        "--quiet",
    )
    how = (
        "the storage has no artifact store: give --artifacts DIR (a store every worker reaches) "
        "to attach files to a study on a server storage"
    )
    refit = invoke(
        "refit",
        study,
        "--storage",
        postgres_url,
        "--output",
        str(tmp_path / "m.pt"),
        "--device",
        "cpu",
    )
    assert (
        f"warning: not attached to the study's artifacts: m.pt; {how}" in refit.stderr
        and (tmp_path / "m.pt").is_file()
    )
    plain = invoke("report", study, "--storage", postgres_url, "--output", str(tmp_path / "r1"))
    assert (
        "warning: not attached to the study's artifacts: index.html, a-lr-over-batch-size.png"
        in plain.stderr
        and how in plain.stderr
    )
    given = invoke(
        "report",
        study,
        "--storage",
        postgres_url,
        "--output",
        str(tmp_path / "r2"),
        "--artifacts",
        str(tmp_path / "shared"),
    )
    assert (
        f"attached the report to study {study}'s artifacts in {tmp_path / 'shared'}" in given.output
    )
    assert len(
        get_all_artifact_meta(optuna.load_study(study_name=study, storage=postgres_url))
    ) == len(list((tmp_path / "r2").iterdir()))


def test_lr_find_and_noise_scale_attach_their_curves_to_a_study_that_exists(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    invoke(
        "run",
        "--storage",
        storage,
        "--study",
        "p",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--n-trials",
        "1",
        "--device",
        "cpu",
        "--quiet",
    )
    found = invoke(
        "lr-find", "--study", "p", "--storage", storage, "--device", "cpu", "--lr-count", "20"
    )
    noise = invoke(
        "noise-scale",
        "--study",
        "p",
        "--storage",
        storage,
        "--device",
        "cpu",
        "--repeats",
        "5",
        "--big-batch",
        "256",
        "--json",
    )
    assert "attached the LR range test to study p's artifacts" in found.stdout
    # study p's lr range is fixed: the search it suggests is a new study's, of adam alone
    assert re.search(
        r"^search around it in a new study: batchlr run --study NAME --optimizers adam --lr \S+:\S+$",
        found.stdout,
        re.M,
    )
    # Under --json, stdout is the record alone.
    assert json.loads(noise.stdout)["noise_scale"] > 0
    assert "attached the noise-scale curve" in noise.stderr
    names = {
        meta.filename: meta.mimetype
        for meta in get_all_artifact_meta(optuna.load_study(study_name="p", storage=storage))
    }
    assert names == {"lr-find.png": "image/png", "noise-scale.png": "image/png"}
    missing = CliRunner().invoke(
        main, ["lr-find", "--study", "nope", "--storage", storage, "--device", "cpu"]
    )
    assert (
        missing.exit_code == 1
        and "no study 'nope'" in missing.output
        and "suggested lr" not in missing.output
    )


def test_refit_keeps_its_model_and_warns_when_the_store_cannot_be_written(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    invoke(
        "run",
        "--storage",
        storage,
        "--study",
        "w",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--n-trials",
        "1",
        "--device",
        "cpu",
        "--quiet",
    )
    (tmp_path / "blocked").write_text("a file where the store's directory would go")
    result = CliRunner().invoke(
        main,
        [
            "refit",
            "w",
            "--storage",
            storage,
            "--output",
            str(tmp_path / "m.pt"),
            "--device",
            "cpu",
            "--artifacts",
            str(tmp_path / "blocked" / "store"),
        ],
    )
    assert (
        result.exit_code == 0
        and "warning: not attached to the study's artifacts: m.pt; cannot create the artifact directory"
        in result.output
    )
    assert (tmp_path / "m.pt").is_file() and "Traceback" not in result.output


def test_a_store_that_fails_midway_keeps_no_partial_file_and_the_warning_names_what_was_attached(
    tmp_path, monkeypatch
):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    invoke(
        "run",
        "--storage",
        storage,
        "--study",
        "f",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--n-trials",
        "3",
        "--device",
        "cpu",
        "--quiet",
    )
    store = tmp_path / "store"
    copies = []

    def full_after_the_first_file(source, destination, *args):
        """Copy as shutil does, but the store's second file runs out of space after 64 KB."""
        if Path(destination.name).parent == store:
            copies.append(destination.name)
            if len(copies) == 2:
                destination.write(b"x" * 65536)
                raise OSError(errno.ENOSPC, "No space left on device")
        copy_file(source, destination, *args)

    copy_file = shutil.copyfileobj
    monkeypatch.setattr(shutil, "copyfileobj", full_after_the_first_file)
    result = CliRunner().invoke(
        main,
        [
            "report",
            "f",
            "--storage",
            storage,
            "--output",
            str(tmp_path / "report"),
            "--artifacts",
            str(store),
        ],
    )
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    warning = result.stderr.strip().splitlines()[-1]
    assert warning.startswith(
        f"warning: attached 1 of 7 files to the study's artifacts in {store}: index.html; "
        "not attached: a-lr-over-batch-size.png, "
    ), warning
    assert "No space left on device" in warning
    metas = get_all_artifact_meta(optuna.load_study(study_name="f", storage=storage))
    assert [meta.filename for meta in metas] == ["index.html"]
    # no partial file, no temporary one
    assert sorted(path.name for path in store.iterdir()) == [metas[0].artifact_id]
    assert (store / metas[0].artifact_id).read_bytes() == (
        tmp_path / "report" / "index.html"
    ).read_bytes()


def test_a_read_only_postgresql_storage_keeps_the_report_and_leaves_no_file_in_the_store(
    postgres_url, tmp_path
):
    study, role = (
        f"pg-read-only-{uuid.uuid4().hex[:8]}",
        f"batchlr_read_only_{uuid.uuid4().hex[:8]}",
    )
    _study_of_fold_scores(postgres_url, [[0.9, 0.9], [0.8, 0.8]], name=study)
    admin = sqlalchemy.create_engine(
        postgres_url.replace("postgresql:", "postgresql+psycopg:"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"ALTER ROLE {role} SET default_transaction_read_only = on")
            # Privileges to write, so that what refuses is the read-only session, not a missing grant.
            connection.exec_driver_sql(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
            )
            connection.exec_driver_sql(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        store, report = tmp_path / "store", tmp_path / "report"
        storage = postgres_url.replace("postgres@", f"{role}@")
        result = CliRunner().invoke(
            main,
            [
                "report",
                study,
                "--storage",
                storage,
                "--output",
                str(report),
                "--artifacts",
                str(store),
            ],
        )
        assert result.exit_code == 0, result.output
        assert f"wrote {report / 'index.html'} and 6 PNGs in {report}" in result.stdout
        warning = result.stderr.strip()
        assert warning.startswith(
            "warning: not attached to the study's artifacts: index.html, a-lr-over-batch-size.png, "
        ), warning
        assert "the database is read-only" in warning and "running trial" not in warning
        # the file written before the link was refused is gone
        assert not store.exists() or list(store.iterdir()) == []
        assert (
            get_all_artifact_meta(optuna.load_study(study_name=study, storage=postgres_url)) == []
        )
    finally:
        with admin.connect() as connection:
            # its grants, which DROP ROLE refuses to leave
            connection.exec_driver_sql(f"DROP OWNED BY {role}")
            connection.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()
        optuna.delete_study(study_name=study, storage=postgres_url)
