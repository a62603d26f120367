"""Data integrity: an image folder is read once per file whatever its links, duplicate images
split across folds are reported, and data too small to split is one clear line."""

from __future__ import annotations

import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.model_selection import StratifiedKFold, train_test_split

from batchlr.cli import main
from batchlr.errors import BatchlrError
from batchlr.objectives.data import (
    HOLDOUT,
    HOLDOUT_FRACTION,
    FoldAssignment,
    assign_folds,
    images_needed,
    split_duplicates,
)
from batchlr.objectives.files import decode_files, read_image_folder
from batchlr.studies.deploy import image_paths
from batchlr.studies.store import FOLDS_ATTR
from tests.test_data import _write_cifar

ORIGINALS = ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png", "dog/2.png"]


def _png(path: Path, seed: int, compress_level: int = 6) -> None:
    """An 8x8 RGB PNG whose pixels only ``seed`` decides; the compression changes the file's bytes, not its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, compress_level=compress_level)


def _image_folder(
    root: Path, per_class: int | tuple[int, int], classes: tuple[str, str] = ("cat", "dog")
) -> Path:
    """``root`` with a folder of distinct images per class: ``per_class`` of each, or one count
    per class."""
    counts = (per_class, per_class) if isinstance(per_class, int) else per_class
    for label, (name, count) in enumerate(zip(classes, counts, strict=True)):
        for index in range(count):
            _png(root / name / f"{index}.png", seed=1000 * label + index)
    return root


def _read(root: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """read_image_folder in a thread, failing rather than hanging if a link loop never ends or a FIFO is opened."""
    result: list = []

    def read() -> None:
        try:
            result.append(read_image_folder(root))
        except BatchlrError as error:
            result.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert result, "reading the image folder did not end within 60 s (a link loop? a FIFO opened?)"
    if isinstance(result[0], BatchlrError):
        raise result[0]
    (images, labels), _, sources = result[0]
    return images, labels, sources


def _assert_read_once(images: np.ndarray, sources: tuple[str, ...]) -> None:
    assert len(images) == len(sources) == len(set(sources))
    # Every image the folder holds is distinct, so a file read twice shows as a repeated row.
    assert len(np.unique(images.reshape(len(images), -1), axis=0)) == len(images)


def test_links_to_files_count_each_file_once(tmp_path):
    root = _image_folder(tmp_path / "pets", 3)
    (root / "cat" / "again.png").symlink_to(root / "cat" / "0.png")
    # into another class, relative
    (root / "dog" / "alias.png").symlink_to(Path("..") / "cat" / "1.png")
    os.link(root / "dog" / "0.png", root / "dog" / "hard.png")
    _png(tmp_path / "outside.png", seed=99)
    # outside the root: read, once
    (root / "cat" / "outside.png").symlink_to(tmp_path / "outside.png")
    images, labels, sources = _read(root)
    _assert_read_once(images, sources)
    assert sorted(sources) == sorted([*ORIGINALS, "cat/outside.png"])
    # A link in dog to a cat image leaves it a cat.
    assert labels[sources.index("cat/1.png")] == 0 and labels[sources.index("dog/1.png")] == 1


def test_links_to_folders_enter_each_folder_once(tmp_path):
    root = _image_folder(tmp_path / "pets", 3)
    extra = tmp_path / "extra"
    _png(extra / "a.png", seed=50)
    _png(extra / "b.png", seed=51)
    (root / "cat" / "more").symlink_to(extra)
    (root / "cat" / "more again").symlink_to(extra)
    (root / "dog" / "cats").symlink_to(root / "cat")  # another class's folder
    _png(root / "dog" / "sub" / "s.png", seed=60)
    (root / "cat" / "dog sub").symlink_to(root / "dog" / "sub")  # a folder inside another class
    images, labels, sources = _read(root)
    _assert_read_once(images, sources)
    assert sorted(sources) == sorted(
        [*ORIGINALS, "cat/more/a.png", "cat/more/b.png", "dog/sub/s.png"]
    )
    assert labels[sources.index("dog/sub/s.png")] == 1 and labels[sources.index("cat/0.png")] == 0


def test_links_to_ancestors_end_and_add_nothing(tmp_path):
    root = _image_folder(tmp_path / "pets", 3)
    (root / "cat" / "root").symlink_to(root)
    (root / "cat" / "self").symlink_to(".")
    (root / "dog" / "deep").mkdir()
    (root / "dog" / "deep" / "up").symlink_to("..")
    (root / "dog" / "deep" / "top").symlink_to(Path("..") / "..")
    (root / "dog" / "deep" / "pets").symlink_to(tmp_path)  # the root's parent, which holds the root
    images, _, sources = _read(root)
    _assert_read_once(images, sources)
    assert sorted(sources) == ORIGINALS


def test_a_class_folder_that_links_to_another_class_is_a_clear_error(tmp_path):
    root = _image_folder(tmp_path / "pets", 3)
    (root / "kitten").symlink_to(root / "cat")
    with pytest.raises(BatchlrError, match=r"class folder kitten .* holds no image of its own"):
        read_image_folder(root)


def test_class_folders_named_alike_in_two_unicode_forms_are_a_clear_error(tmp_path):
    # é, and e with an accent
    root = _image_folder(tmp_path / "menu", 3, classes=("caf\u00e9", "cafe\u0301"))
    with pytest.raises(
        BatchlrError,
        match=r"^imagefolder: class folders 'cafe\\u0301' and 'caf\\xe9' in .* have the same name "
        r"in different Unicode forms; rename one$",
    ):
        read_image_folder(root)


@pytest.mark.parametrize(("name", "problem"), [(" ", "is blank"), ("a\tb", "holds a control")])
def test_a_class_folder_no_model_file_could_name_is_a_clear_error(tmp_path, name, problem):
    # refit would write a model file that load_model then refuses for this name
    root = _image_folder(tmp_path / "pets", 3, classes=("cat", name))
    with pytest.raises(
        BatchlrError, match=f"^imagefolder: class folder {re.escape(ascii(name))} .* {problem}"
    ):
        read_image_folder(root)


def test_predict_lists_a_folder_exactly_as_training_reads_it(tmp_path):
    root = _image_folder(tmp_path / "pets", 3)
    extra = tmp_path / "extra"
    _png(extra / "a.png", seed=50)
    (root / "cat" / "more").symlink_to(extra)  # a linked sub-folder: training reads it
    (root / "dog" / "alias.png").symlink_to(root / "cat" / "1.png")  # the same file twice: once
    (root / "cat" / "root").symlink_to(root)  # a loop
    _, _, sources = _read(root)
    listed = image_paths([root / "cat", root / "dog"])
    assert [os.path.relpath(path, root) for path in listed] == list(sources)
    assert "cat/more/a.png" in sources
    # A file named is listed as named, before or after the folders.
    assert image_paths([extra / "a.png", root / "dog"]) == [
        extra / "a.png",
        *(root / "dog" / name for name in ("0.png", "1.png", "2.png", "alias.png")),
    ]


def test_a_fifo_with_an_image_name_is_refused_before_it_is_opened(tmp_path):
    root = _image_folder(tmp_path / "pets", 3)
    os.mkfifo(root / "dog" / "pipe.png")  # opening it would block until a writer came
    with pytest.raises(
        BatchlrError,
        match=rf"^image file {re.escape(str(root))}/dog/pipe\.png is a FIFO, not a regular file; "
        r"remove it or replace it with an image file$",
    ):
        _read(root)
    # predict: named, it is refused at once; in a folder, when its images are read.
    with pytest.raises(BatchlrError, match=r"pipe\.png is a FIFO, not a regular file"):
        image_paths([root / "dog" / "pipe.png"])
    with pytest.raises(BatchlrError, match=r"pipe\.png is a FIFO, not a regular file"):
        decode_files([str(path) for path in image_paths([root / "dog"])], 3, (8, 8))


def test_a_fifo_put_in_an_images_place_after_any_check_is_refused_without_blocking(
    tmp_path, monkeypatch
):
    _png(tmp_path / "image.png", seed=0)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    # The FIFO is swapped in after whatever check of the path ran: the path's status says image.
    real_stat = os.stat
    monkeypatch.setattr(
        os,
        "stat",
        lambda path, *args, **kwargs: real_stat(
            tmp_path / "image.png" if str(path) == str(fifo) else path, *args, **kwargs
        ),
    )
    result: list = []

    def decode() -> None:
        try:
            result.append(decode_files([str(fifo)], 3, (8, 8)))
        except BatchlrError as error:
            result.append(error)

    reader = threading.Thread(target=decode, daemon=True)
    reader.start()
    reader.join(timeout=60)
    # the FIFO was opened for reading: a writer lets the open return and the thread end
    if not result:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("decoding opened the FIFO and blocked")
    assert (
        str(result[0])
        == f"image file {fifo} is a FIFO, not a regular file; remove it or replace it with an image file"
    )


def test_predict_words_a_bad_image_a_missing_path_and_an_unreadable_folder_for_what_they_are(
    tmp_path, monkeypatch
):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(
        BatchlrError,
        match=rf"^cannot decode image file {re.escape(str(bad))} \(not an image format PIL reads\); "
        r"remove it or replace it with an image file$",
    ):
        decode_files([str(bad)], 3, (8, 8))
    with pytest.raises(
        BatchlrError,
        match=f"^{tmp_path}/nosuchdir: no such file or folder; give image files or folders of them$",
    ):
        image_paths([Path(f"{tmp_path}/nosuchdir/")])
    (tmp_path / "locked").mkdir()

    # as scandir does for a folder without read permission (the tests may run as root)
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked"))

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(
        BatchlrError,
        match=f"^cannot read {tmp_path}/locked: Permission denied; make it readable or leave it out$",
    ):
        image_paths([tmp_path / "locked"])


def _run(tmp_path: Path, dataset: str, *extra: str):
    arguments = [
        "run",
        "--storage",
        f"sqlite:///{tmp_path}/s.db",
        "--dataset",
        dataset,
        "--folds",
        "2",
        "--epochs",
        "1",
    ]
    arguments += ["--n-trials", "1", "--batch-size", "4:4", "--device", "cpu", "--quiet", *extra]
    return CliRunner().invoke(main, arguments)


def _stored_folds(tmp_path: Path, study: str) -> FoldAssignment:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/s.db")
    return FoldAssignment.decode(
        storage.get_study_system_attrs(storage.get_study_id_from_name(study))[FOLDS_ATTR]
    )


def test_duplicates_across_folds_are_reported_once_when_the_study_is_created(tmp_path):
    root = _image_folder(tmp_path / "pets", 12)
    for index in range(6):  # the same pixels in a file of other bytes
        _png(root / "cat" / f"copy-{index}.png", seed=index, compress_level=0)
    # Seed 1 splits four of the six pairs (seed 0, by chance, none).
    result = _run(tmp_path, f"imagefolder:{root}", "--study", "dups", "--seed", "1")
    assert result.exit_code == 0, result.output
    # Which pairs the folds split, worked out from the stored folds rather than by batchlr.
    _, _, sources = read_image_folder(root)
    fold_of = _stored_folds(tmp_path, "dups").fold_of
    parts = {name: fold_of[index] for index, name in enumerate(sources)}
    split = [
        index for index in range(6) if parts[f"cat/{index}.png"] != parts[f"cat/copy-{index}.png"]
    ]
    assert split, "the seed split no pair: the data no longer tests the warning"
    lines = [line for line in result.stderr.splitlines() if "identical" in line]
    assert len(lines) == 1 and lines[0].startswith(
        f"warning: {2 * len(split)} training images have an identical copy"
    )
    assert (
        "validation then scores images that training saw" in lines[0]
        and "remove the duplicate images" in lines[0]
    )
    first, copy = re.search(r"e\.g\. (\S+) and (\S+)\)", lines[0]).groups()
    assert {first, copy} == {f"cat/{split[0]}.png", f"cat/copy-{split[0]}.png"}
    resumed = _run(tmp_path, f"imagefolder:{root}", "--study", "dups")
    assert resumed.exit_code == 0 and "identical" not in resumed.stderr


def test_a_folder_without_duplicates_gets_no_warning(tmp_path):
    result = _run(tmp_path, f"imagefolder:{_image_folder(tmp_path / 'pets', 12)}")
    assert result.exit_code == 0, result.output
    assert "identical" not in result.stderr


def test_duplicates_within_one_part_are_harmless_and_split_ones_are_counted():
    images = np.zeros((6, 1, 2, 2), dtype=np.float32)
    images[:, 0, 0, 0] = [1, 1, 2, 2, 3, 3]  # three pairs
    assert split_duplicates(images, np.array([0, 0, 1, 1, HOLDOUT, HOLDOUT])) is None
    found = split_duplicates(images, np.array([0, 0, 1, HOLDOUT, 1, 0]))
    assert found is not None and found.images == 4 and found.example == (2, 3)


@pytest.mark.parametrize(
    ("per_class", "folds", "needed", "code"),
    [((1, 1), 2, 3, 1), ((2, 2), 2, 3, 1), ((2, 9), 5, 6, 1), ((4, 9), 4, 5, 2), ((3, 9), 5, 6, 2)],
)
def test_folders_too_small_to_split_are_one_line_naming_the_size_needed(
    tmp_path, per_class, folds, needed, code
):
    root = _image_folder(tmp_path / "pets", per_class)
    result = _run(tmp_path, f"imagefolder:{root}", "--folds", str(folds))
    assert result.exit_code == code, result.output
    assert result.output.splitlines() == [result.output.strip()], result.output
    line = result.output.strip()
    assert (
        line.startswith("Error: ")
        and f"at least {needed} images in every class" in line
        and "class 'cat'" in line
    )
    assert "unexpected" not in line and "Traceback" not in line
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path}/s.db") == []


def test_a_built_in_data_set_too_small_for_the_folds_names_the_size_needed(tmp_path):
    # 10 airplanes and 10 birds, with a test split: no hold-out
    _write_cifar(tmp_path, per_batch=20, protocol=2)
    result = _run(tmp_path, "cifar2", "--data-dir", str(tmp_path), "--folds", "11")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        "Error: --folds 11: class 'airplane' has only 10 images: 11 folds need at least 11 images in every class; "
        "use --folds 10 or fewer, or add images"
    )


@pytest.mark.parametrize("holdout", [True, False])
def test_any_class_size_and_fold_count_splits_or_says_what_is_needed(holdout):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns of classes smaller than the folds
        for size in range(13):
            for k in range(2, 11):
                # The other classes' sizes must not change what the small one needs.
                labels = np.repeat(np.arange(3), [size, size + 1, 40])
                needed = images_needed(k, holdout=holdout)
                if size < needed:
                    with pytest.raises(
                        BatchlrError,
                        match=f"class 'a' has only {size} images?: .*at least {needed} images",
                    ):
                        assign_folds(labels, k, seed=size, holdout=holdout, classes=("a", "b", "c"))
                    continue
                _assert_every_class_in_every_fold(
                    labels,
                    assign_folds(labels, k, seed=size, holdout=holdout, classes=("a", "b", "c")),
                    holdout,
                )


def _assert_every_class_in_every_fold(
    labels: np.ndarray, folds: FoldAssignment, holdout: bool
) -> None:
    assert (len(folds.holdout()) > 0) == holdout
    for label in np.unique(labels):
        assert (
            np.bincount(
                folds.fold_of[labels == label][folds.fold_of[labels == label] != HOLDOUT],
                minlength=folds.k,
            ).min()
            >= 1
        )


def test_many_small_classes_split_where_scikit_learn_refuses():
    # Five classes of three: scikit-learn wants a hold-out of at least five images, 20 % is three.
    labels = np.repeat(np.arange(5), 3)
    with pytest.raises(
        ValueError, match=r"test_size = 3 should be greater or equal to the number of classes = 5"
    ):
        train_test_split(np.arange(15), test_size=HOLDOUT_FRACTION, stratify=labels, random_state=0)
    folds = assign_folds(labels, 2, seed=0, holdout=True)
    _assert_every_class_in_every_fold(labels, folds, holdout=True)
    assert np.array_equal(np.bincount(labels[folds.holdout()]), [1] * 5)


def test_a_seed_still_gives_the_folds_it_gave_where_scikit_learn_splits():
    # Studies, benchmarks and the README's numbers rest on these folds: the small-class fix must not move them.
    labels = np.repeat(np.arange(4), [50, 40, 30, 20])
    kept, _ = train_test_split(
        np.arange(len(labels)), test_size=HOLDOUT_FRACTION, stratify=labels, random_state=3
    )
    expected = np.full(len(labels), HOLDOUT)
    for fold, (_, val) in enumerate(
        StratifiedKFold(3, shuffle=True, random_state=3).split(kept, labels[kept])
    ):
        expected[kept[val]] = fold
    assert np.array_equal(assign_folds(labels, 3, seed=3, holdout=True).fold_of, expected)
