"""Data loading from real files: the CIFAR-10 subset as an ImageFolder, MNIST IDX, CIFAR python batches.

Every loader gives uint8 pixels exactly as stored; nothing is normalised while loading.
"""

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.data import check_dataset_name, load_dataset
from batchlr.objectives.files import (
    CIFAR10_CLASSES,
    CIFAR_FOLDER,
    CIFAR_TEST_FILE,
    CIFAR_TRAIN_FILES,
)


def test_digits_loads_as_uint8_scaled_to_255_with_no_test_split():
    from sklearn.datasets import load_digits

    data = load_dataset("digits", Path("unused"))
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10 and len(data.labels) == 1797
    assert data.test_images is None and data.images.dtype == torch.uint8
    digits = load_digits()
    expected = np.round(digits.images[:, None] * (255 / 16))
    assert np.array_equal(data.images.numpy(), expected) and data.images.max() == 255
    assert np.array_equal(data.labels.numpy(), digits.target)


def test_imagefolder_reads_the_real_cifar_subset_pixel_for_pixel(shared_data):
    root = shared_data / "cifar10-subset" / "train"
    data = load_dataset(f"imagefolder:{root}", Path("unused"))
    assert data.images.shape == (5085, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.classes == CIFAR10_CLASSES
    assert torch.bincount(data.labels).min() > 400
    for index in (0, 2500, 5084):
        pixels = np.asarray(Image.open(root / data.sources[index]).convert("RGB")).transpose(
            2, 0, 1
        )
        assert np.array_equal(data.images[index].numpy(), pixels)
        assert data.classes[data.labels[index]] == Path(data.sources[index]).parts[0]


def _copy_classes(source: Path, target: Path, per_class: int) -> None:
    for name in ("airplane", "bird"):
        (target / name).mkdir(parents=True)
        for image in sorted((source / name).iterdir())[:per_class]:
            shutil.copy(image, target / name / image.name)


def test_imagefolder_names_an_undecodable_image(shared_data, tmp_path):
    _copy_classes(shared_data / "cifar10-subset" / "train", tmp_path, 3)
    (tmp_path / "bird" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(BatchlrError, match=r"broken\.png"):
        load_dataset(f"imagefolder:{tmp_path}", Path("unused"))


def test_imagefolder_of_one_class_is_a_clear_error(shared_data):
    # The subset's parent holds only "train": every image would get one label and score 100 %.
    with pytest.raises(BatchlrError, match="one class folder"):
        load_dataset(f"imagefolder:{shared_data / 'cifar10-subset'}", Path("unused"))


def test_imagefolder_path_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_dataset_name("imagefolder:pets") == f"imagefolder:{tmp_path.resolve() / 'pets'}"
    assert check_dataset_name("digits") == "digits"


def test_imagefolder_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(BatchlrError, match="not a directory"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}", Path("unused"))


def _write_idx(path: Path, array: np.ndarray) -> None:
    # IDX: zero bytes, type 0x08 (uint8), rank, then big-endian sizes and the raw bytes.
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_idx_files_and_keeps_the_test_split_apart(shared_data, tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    real_raw = shared_data / "mnist" / "MNIST" / "raw"
    images = read_image_file(str(real_raw / "t10k-images-idx3-ubyte")).numpy()
    labels = read_label_file(str(real_raw / "t10k-labels-idx1-ubyte")).numpy()
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, part in (("train", slice(0, 600)), ("t10k", slice(600, 800))):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[part])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[part])
    data = load_dataset("mnist", tmp_path)
    assert data.images.shape == (600, 1, 28, 28) and data.test_images.shape == (200, 1, 28, 28)
    assert np.array_equal(data.images[:, 0].numpy(), images[:600]) and np.array_equal(
        data.test_images[:, 0].numpy(), images[600:800]
    )
    assert torch.equal(data.test_labels, torch.from_numpy(labels[600:800].astype(np.int64)))


def _write_cifar(root: Path, per_batch: int, protocol: int) -> np.ndarray:
    """Write CIFAR-10's six python batch files of random pixels; returns the training labels."""
    return _write_cifar_pixels(root, per_batch, protocol)[1]


def _write_cifar_pixels(root: Path, per_batch: int, protocol: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_write_cifar`, returning the training split's rows of 3072 pixels too."""
    folder = root / CIFAR_FOLDER
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    all_pixels, all_labels = [], []
    for name in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE):
        labels = np.arange(per_batch) % 10
        pixels = generator.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        with (folder / name).open("wb") as handle:
            pickle.dump({"data": pixels, "labels": labels.tolist()}, handle, protocol=protocol)
        all_pixels.append(pixels)
        all_labels.append(labels)
    return np.concatenate(all_pixels[:5]), np.concatenate(all_labels[:5])


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_reads_python_batches_written_here(tmp_path, protocol):
    pixels, labels = _write_cifar_pixels(tmp_path, per_batch=20, protocol=protocol)
    data = load_dataset("cifar10", tmp_path)
    assert data.images.shape == (100, 3, 32, 32) and data.test_images.shape == (20, 3, 32, 32)
    assert data.images.dtype == data.test_images.dtype == torch.uint8
    assert np.array_equal(data.images.reshape(100, -1).numpy(), pixels)
    assert torch.equal(data.labels, torch.from_numpy(labels))


def test_cifar2_keeps_airplanes_and_birds_relabelled(tmp_path):
    _write_cifar(tmp_path, per_batch=20, protocol=2)
    data = load_dataset("cifar2", tmp_path)
    assert data.classes == ("airplane", "bird")
    assert len(data.labels) == 20 and set(data.labels.tolist()) == {0, 1}


class _RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/batchlr-pwned"),))


def test_cifar_batches_cannot_run_code(tmp_path):
    _write_cifar(tmp_path, per_batch=20, protocol=2)
    with (tmp_path / CIFAR_FOLDER / "data_batch_3").open("wb") as handle:
        pickle.dump({"data": _RunsCode(), "labels": []}, handle)
    with pytest.raises(BatchlrError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)
    assert not Path("/tmp/batchlr-pwned").exists()


def test_missing_data_without_network_says_where_files_belong_and_leaves_no_empty_folders(tmp_path):
    with pytest.raises(
        BatchlrError,
        match=r"FashionMNIST/raw lacks train-images-idx3-ubyte, .*t10k-labels-idx1-ubyte",
    ):
        load_dataset("fashion-mnist", tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BatchlrError, match="could not be downloaded"):
        load_dataset("cifar10", tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_mnist_test_files_alone_are_named_as_not_enough(shared_data, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for path in (shared_data / "mnist" / "MNIST" / "raw").glob("t10k-*-ubyte"):
        shutil.copy(path, raw)
    with pytest.raises(BatchlrError) as error:
        load_dataset("mnist", tmp_path)
    assert (
        "lacks train-images-idx3-ubyte, train-labels-idx1-ubyte (it needs its training and test files)"
        in str(error.value)
    )
    assert "t10k" not in str(error.value).split("lacks")[1].split("(")[0]
    assert sorted(path.name for path in raw.iterdir()) == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]


@pytest.mark.parametrize("name", ["nosuchset", "imagefolder:", "CIFAR10"])
def test_unknown_data_set_names_are_usage_errors(name):
    with pytest.raises(BatchlrUsageError, match="--dataset"):
        check_dataset_name(name)
