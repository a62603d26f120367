"""Image folders as users have them: mixed sizes resized, grey kept one channel, decoded on every
core, cached between runs, and refused before decoding when they would not fit in memory."""

from __future__ import annotations

import io
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from batchlr.errors import BatchlrError
from batchlr.objectives.data import load_dataset, memory
from batchlr.objectives.files import image_cache, readers


@pytest.fixture(autouse=True)
def _fresh_loads():
    """load_dataset keeps what it loaded; these tests load the same folder again on purpose."""
    load_dataset.cache_clear()
    yield
    load_dataset.cache_clear()


def _save(path: Path, height: int, width: int, mode: str = "RGB", seed: int = 0) -> np.ndarray:
    """Write a random image of ``mode`` at ``path``; returns its pixels as PIL holds them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(
            mode
        )
    image.save(path)
    return np.asarray(image)


def _load(root: Path, image_size=None, **options):
    return load_dataset(f"imagefolder:{root}", Path("unused"), image_size, **options)


def _mixed_folder(root: Path) -> Path:
    """Two classes of 32x32, 40x48 and 64x64 images (height x width), in colour and grey."""
    for index, (height, width, mode) in enumerate(
        [(32, 32, "RGB"), (40, 48, "L"), (64, 64, "RGB"), (32, 32, "L"), (64, 64, "RGBA")]
    ):
        for name in ("cat", "dog"):
            _save(root / name / f"{index}.png", height, width, mode, seed=index + 10 * len(name))
    return root


def test_a_folder_of_mixed_sizes_and_modes_loads_resized_as_rgb(tmp_path):
    root = _mixed_folder(tmp_path / "pets")
    data = _load(root, (32, 32))
    assert data.images.shape == (10, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.input_shape == (3, 32, 32)
    # A grey image already 32x32 becomes three equal channels of its pixels.
    grey = np.asarray(Image.open(root / "cat" / "3.png"))
    index = data.sources.index("cat/3.png")
    assert all(np.array_equal(data.images[index, channel].numpy(), grey) for channel in range(3))
    # An RGBA image loses its alpha and keeps its colours.
    rgba = np.asarray(
        Image.open(root / "dog" / "4.png").resize((32, 32), Image.Resampling.BILINEAR)
    )
    assert np.array_equal(
        data.images[data.sources.index("dog/4.png")].numpy(), rgba[..., :3].transpose(2, 0, 1)
    )


def test_a_folder_of_mixed_sizes_without_an_image_size_is_one_line_listing_them(tmp_path):
    root = _mixed_folder(tmp_path / "pets")
    for index in range(3):
        _save(root / "cat" / f"extra{index}.png", 40, 48)
    with pytest.raises(BatchlrError) as raised:
        _load(root)
    assert str(raised.value) == (
        f"imagefolder: {root} holds images of 3 sizes (height x width): 40x48 (5 images), 32x32 (4), 64x64 (4); "
        "give --image-size N or HxW to resize them while loading"
    )
    for side in (8, 9, 10):
        _save(root / "dog" / f"side{side}.png", side, side)
    with pytest.raises(
        BatchlrError,
        match=r"holds images of 6 sizes \(height x width\): .*, 8x8 \(1\) and 2 more; give --image-size",
    ):
        _load(root)


def test_a_folder_of_one_size_loads_as_it_is(tmp_path):
    pixels = _save(tmp_path / "pets" / "cat" / "a.png", 40, 48)
    _save(tmp_path / "pets" / "dog" / "b.png", 40, 48, seed=1)
    data = _load(tmp_path / "pets")
    assert data.input_shape == (3, 40, 48)
    assert np.array_equal(data.images[0].numpy(), pixels.transpose(2, 0, 1))


def test_a_grey_folder_loads_as_one_channel(tmp_path):
    root = tmp_path / "scans"
    for index, mode in enumerate(["L", "1", "LA", "I;16"]):
        _save(root / "a" / f"{index}.png", 16, 16, mode, seed=index)
        _save(root / "b" / f"{index}.png", 16, 16, "L", seed=10 + index)
    data = _load(root)
    assert data.input_shape == (1, 16, 16) and data.images.dtype == torch.uint8
    # A palette image counts as colour, whatever its palette.
    _save(root / "b" / "palette.png", 16, 16, "P")
    load_dataset.cache_clear()
    assert _load(root).input_shape == (3, 16, 16)


def _unsigned_32_bit_tiff(path: Path, pixels: np.ndarray) -> None:
    """Write grey ``pixels`` as an uncompressed little-endian TIFF of unsigned 32-bit samples
    (PIL writes its 32-bit images as signed)."""
    height, width = pixels.shape
    tags = [
        (256, width),
        (257, height),
        (258, 32),
        (259, 1),
        (262, 1),
        (273, 0),
        (277, 1),
        (278, height),
        (279, pixels.nbytes),
        (339, 1),
    ]
    start = 8 + 2 + 12 * len(tags) + 4  # the pixels follow the header and the one directory
    entries = b"".join(
        struct.pack("<HHII", tag, 4, 1, start if tag == 273 else value) for tag, value in tags
    )
    path.write_bytes(
        b"II*\0"
        + struct.pack("<IH", 8, len(tags))
        + entries
        + bytes(4)
        + pixels.astype("<u4").tobytes()
    )


def test_grey_of_more_than_8_bits_is_scaled_by_its_types_range_and_floats_from_0_to_1(tmp_path):
    root = tmp_path / "scans"
    sixteen = np.array([[0, 128, 129, 257, 30000, 65535]], dtype=np.uint16)
    (root / "a").mkdir(parents=True)
    Image.fromarray(sixteen).save(root / "a" / "16.png")
    Image.fromarray(sixteen).save(root / "a" / "16.pgm")  # PIL reads it as mode "I"
    Image.fromarray(
        np.array([[0, -5, 1 << 23, 1 << 30, 2**31 - 1, 2**31 - 1]], dtype=np.int32)
    ).save(root / "a" / "32.tif")
    _unsigned_32_bit_tiff(
        root / "a" / "u32.tif",
        np.array([[0, 1 << 23, 1 << 31, 3 << 30, 2**32 - 1, 0]], dtype=np.uint32),
    )
    Image.fromarray(np.array([[0, 0.5, 1, 2, -1, np.nan]], dtype=np.float32)).save(
        root / "a" / "float.tif"
    )
    _save(root / "b" / "grey.png", 1, 6, "L")
    data = _load(root)
    pixels = {
        source: data.images[index, 0, 0].tolist() for index, source in enumerate(data.sources)
    }
    # divided by 257, rounded
    assert pixels["a/16.png"] == pixels["a/16.pgm"] == [0, 0, 1, 1, 117, 255]
    assert pixels["a/32.tif"] == [0, 0, 1, 128, 255, 255]  # 0..2**31-1, negatives as 0
    assert pixels["a/u32.tif"] == [0, 0, 128, 191, 255, 0]
    assert pixels["a/float.tif"] == [0, 128, 255, 255, 0, 0]  # clipped to 0..1, NaN as 0


def test_a_deep_image_cropped_first_keeps_its_files_range(tmp_path, monkeypatch):
    # A crop is no TIFF: the range must be read off the file, not the crop (it wrapped to 95).
    path = tmp_path / "32.tif"
    Image.fromarray(np.full((1, 50), 2_000_000_000, dtype=np.int32)).save(path)
    whole = readers.decode_files([str(path)], 1, (8, 8))
    monkeypatch.setattr(readers, "_WHOLE_SCALED_PIXELS", 0)  # crop first, as for 1x20,000,000
    cropped = readers.decode_files([str(path)], 1, (8, 8))
    assert (whole == round(2e9 * 255 / (2**31 - 1))).all() and np.array_equal(cropped, whole)


def test_resizing_scales_the_shorter_side_then_crops_the_centre():
    # 32 high, 64 wide; its quarters from left to right are 10, 20, 30 and 40.
    quarters = np.repeat(np.array([10, 20, 30, 40], dtype=np.uint8), 16)
    image = Image.fromarray(np.tile(quarters, (32, 1)))
    assert np.array_equal(
        np.asarray(readers.fit_image(image, (32, 32))), np.tile(quarters[16:48], (32, 1))
    )
    # Halved, the crop keeps the two middle quarters again: the antialiasing filter blends
    # neighbours only at the borders, the outer quarters into the edge columns.
    halved = np.asarray(readers.fit_image(image, (16, 16)))
    assert (
        halved.shape == (16, 16) and (halved[:, 1:7] == 20).all() and (halved[:, 9:15] == 30).all()
    )
    assert (halved[:, 0] > 15).all() and (halved[:, 15] < 35).all()
    # Wider than tall asked of a tall image: the width decides the scale, the crop takes the middle rows.
    tall = Image.fromarray(
        np.repeat(np.array([1, 2, 3, 4], dtype=np.uint8), 16)[:, None].repeat(8, axis=1)
    )
    assert np.array_equal(
        np.asarray(readers.fit_image(tall, (4, 2))), [[2, 2], [2, 2], [3, 3], [3, 3]]
    )


@pytest.mark.parametrize(("height", "width"), [(64, 64), (48, 80), (90, 37), (20, 20), (33, 100)])
def test_resizing_a_square_matches_torchvisions_resize_then_centre_crop(height, width):
    from torchvision import transforms

    image = Image.fromarray(
        np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    )
    expected = transforms.CenterCrop(32)(transforms.Resize(32, antialias=True)(image))
    assert np.array_equal(np.asarray(readers.fit_image(image, (32, 32))), np.asarray(expected))


def test_a_narrow_image_is_cropped_before_it_is_scaled_up(tmp_path, monkeypatch):
    # 1 pixel high, 20,000,000 wide, 200 in the middle: fitted to 32x32, the middle scaled up.
    pixels = np.zeros((1, 20_000_000), dtype=np.uint8)
    pixels[0, 9_999_000:10_001_000] = 200
    (tmp_path / "lines" / "a").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / "lines" / "a" / "wide.png")
    _save(tmp_path / "lines" / "b" / "small.png", 8, 8, "L")
    made = []
    resize = Image.Image.resize

    def recording_resize(image, size, *args, **kwargs):
        made.append(size[0] * size[1])
        assert made[-1] <= 32 * 32, f"scaled to {size} before cropping"
        return resize(image, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", recording_resize)
    with_channels = readers._with_channels

    def recording_conversion(image, channels, largest):
        # only the part the crop covers: converting 20,000,000 16-bit pixels took 230 MB
        assert image.width * image.height <= 64, f"converted {image.size} whole"
        return with_channels(image, channels, largest)

    monkeypatch.setattr(readers, "_with_channels", recording_conversion)
    # as predict reads it
    fitted = readers.decode_files([str(tmp_path / "lines" / "a" / "wide.png")], 1, (32, 32))
    assert fitted.shape == (1, 1, 32, 32) and (fitted == 200).all()
    data = _load(tmp_path / "lines", (32, 32))
    assert (
        torch.equal(data.images[data.sources.index("a/wide.png")], torch.from_numpy(fitted[0]))
        and made
    )


def test_cropping_first_stays_within_one_level_of_torchvisions_pixels(monkeypatch):
    from torchvision import transforms

    # crop first even where the scaled image is small
    monkeypatch.setattr(readers, "_WHOLE_SCALED_PIXELS", 0)
    rng = np.random.default_rng(3)
    for height, width in [(5, 90), (90, 7), (20, 33), (1, 100)]:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        expected = np.asarray(
            transforms.CenterCrop(32)(transforms.Resize(32, antialias=True)(image))
        )
        fitted = np.asarray(readers.fit_image(image, (32, 32)))
        assert fitted.shape == expected.shape and np.abs(fitted.astype(int) - expected).max() <= 1


def test_built_in_sets_resize_with_the_same_function():
    data = load_dataset("digits", Path("unused"), (16, 16))
    original = load_dataset("digits", Path("unused"))
    assert data.input_shape == (1, 16, 16) and data.images.dtype == torch.uint8
    expected = np.asarray(
        readers.fit_image(Image.fromarray(original.images[5, 0].numpy()), (16, 16))
    )
    assert np.array_equal(data.images[5, 0].numpy(), expected)
    assert load_dataset("digits", Path("unused"), (8, 8)).images.equal(original.images)


def _cache_files(cache: Path) -> list[str]:
    return sorted(path.name for path in cache.iterdir())


def test_a_cached_folder_loads_without_decoding_and_gives_the_same_arrays(tmp_path, monkeypatch):
    root, cache = _mixed_folder(tmp_path / "pets"), tmp_path / "cache"
    first = _load(root, (32, 32), cache_dir=cache)
    assert len(_cache_files(cache)) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("a cached folder was decoded")

    monkeypatch.setattr(readers, "_read_headers", refuse)
    monkeypatch.setattr(readers, "decode_files", refuse)
    load_dataset.cache_clear()
    again = _load(root, (32, 32), cache_dir=cache)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert again.sources == first.sources and again.classes == first.classes


def test_the_default_cache_is_under_the_cache_home_unless_batchlr_cache_dir_says(
    tmp_path, monkeypatch
):
    assert image_cache.default_cache_dir() == Path(os.environ["XDG_CACHE_HOME"]) / "batchlr"
    _load(_mixed_folder(tmp_path / "pets"), (32, 32))
    assert len(_cache_files(Path(os.environ["XDG_CACHE_HOME"]) / "batchlr")) == 1
    monkeypatch.setenv(image_cache.CACHE_ENV, str(tmp_path / "mine"))
    assert image_cache.default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(image_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # ignored, as the XDG specification says
    assert image_cache.default_cache_dir() == Path.home() / ".cache" / "batchlr"


def test_a_changed_file_is_decoded_again_and_replaces_the_stale_entry(tmp_path):
    root, cache = _mixed_folder(tmp_path / "pets"), tmp_path / "cache"
    before = _load(root, (32, 32), cache_dir=cache)
    stale = _cache_files(cache)
    changed = _save(root / "dog" / "0.png", 32, 32, seed=99)
    status = os.stat(root / "dog" / "0.png")
    # a rewrite within the clock's tick
    os.utime(root / "dog" / "0.png", ns=(status.st_atime_ns, status.st_mtime_ns + 1))
    load_dataset.cache_clear()
    after = _load(root, (32, 32), cache_dir=cache)
    index = after.sources.index("dog/0.png")
    assert np.array_equal(after.images[index].numpy(), changed.transpose(2, 0, 1))
    assert not torch.equal(after.images[index], before.images[index])
    assert len(_cache_files(cache)) == 1 and _cache_files(cache) != stale


def test_a_file_rewritten_at_the_same_size_with_its_modification_time_put_back_is_decoded_again(
    tmp_path,
):
    root, cache = _mixed_folder(tmp_path / "pets"), tmp_path / "cache"
    path = root / "dog" / "0.png"
    before = _load(root, (32, 32), cache_dir=cache)
    original = os.stat(path)
    replacement = Image.fromarray(255 - np.asarray(Image.open(path)))
    deadline = time.monotonic() + 60
    # until the clock has moved on since the listing
    while os.stat(path).st_ctime_ns == original.st_ctime_ns:
        assert time.monotonic() < deadline, "the status change time never changed"
        with path.open("r+b") as handle:  # in place: the same inode
            handle.write(_png_bytes(replacement, len(path.read_bytes())))
        os.utime(path, ns=(original.st_atime_ns, original.st_mtime_ns))
    assert (
        os.stat(path).st_size == original.st_size
        and os.stat(path).st_mtime_ns == original.st_mtime_ns
    )
    load_dataset.cache_clear()
    after = _load(root, (32, 32), cache_dir=cache)
    index = after.sources.index("dog/0.png")
    assert np.array_equal(after.images[index].numpy(), np.asarray(replacement).transpose(2, 0, 1))
    assert not torch.equal(after.images[index], before.images[index])


def _png_bytes(image: Image.Image, size: int) -> bytes:
    """``image`` as PNG bytes padded to ``size`` bytes (PIL ignores what follows the end chunk)."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=0)
    encoded = buffer.getvalue()
    assert len(encoded) <= size
    return encoded + bytes(size - len(encoded))


def test_an_entry_of_another_folder_or_image_size_under_this_ones_name_is_not_loaded(tmp_path):
    cache = tmp_path / "cache"
    pets, others = _mixed_folder(tmp_path / "pets"), tmp_path / "others"
    for index, (height, width, mode) in enumerate(
        [(32, 32, "RGB"), (40, 48, "L"), (64, 64, "RGB"), (32, 32, "L"), (64, 64, "RGB")]
    ):
        for name in ("cat", "dog"):  # the same names, labels and classes as pets, other pixels
            _save(
                others / name / f"{index}.png",
                height,
                width,
                mode,
                seed=100 + index + 10 * len(name),
            )
    expected = _load(others, (32, 32), cache_dir=cache).images
    small = _load(pets, (16, 16), cache_dir=cache)
    entry = image_cache.CacheEntry.of(readers.list_image_folder(others), (32, 32), cache).path
    for impostor in (
        image_cache.CacheEntry.of(readers.list_image_folder(pets), size, cache).path
        for size in [(32, 32), (16, 16)]
    ):
        _load(pets, (32, 32), cache_dir=cache)
        # another folder's entry, then one of another image size
        entry.write_bytes(impostor.read_bytes())
        load_dataset.cache_clear()
        loaded = _load(others, (32, 32), cache_dir=cache)
        assert loaded.input_shape == (3, 32, 32) and torch.equal(loaded.images, expected)
    assert small.input_shape == (3, 16, 16)


def test_a_fifo_as_a_cache_entry_is_replaced_without_being_opened(tmp_path):
    root, cache = _mixed_folder(tmp_path / "pets"), tmp_path / "cache"
    cache.mkdir()
    entry = image_cache.CacheEntry.of(readers.list_image_folder(root), (32, 32), cache).path
    os.mkfifo(entry)  # opening it would block until a writer came
    loaded: list = []
    loader = threading.Thread(
        target=lambda: loaded.append(_load(root, (32, 32), cache_dir=cache)), daemon=True
    )
    loader.start()
    loader.join(timeout=60)
    assert loaded, "loading blocked on the FIFO"
    assert loaded[0].images.shape == (10, 3, 32, 32) and entry.is_file()


def test_file_and_class_names_that_are_not_utf_8_are_read_and_cached(tmp_path):
    root, cache = tmp_path / "scans", tmp_path / "cache"
    café, odd = os.fsdecode(b"caf\xe9"), os.fsdecode(b"\xff\xfe.png")  # Latin-1 bytes: not UTF-8
    _save(root / café / odd, 8, 8)
    _save(root / "dog" / "a.png", 8, 8, seed=1)
    first = _load(root, cache_dir=cache)
    assert first.classes == (café, "dog") and f"{café}/{odd}" in first.sources
    load_dataset.cache_clear()
    again = _load(root, cache_dir=cache)
    assert (
        torch.equal(again.images, first.images)
        and again.sources == first.sources
        and len(_cache_files(cache)) == 1
    )


def test_another_image_size_is_another_entry_and_both_stay(tmp_path):
    root, cache = _mixed_folder(tmp_path / "pets"), tmp_path / "cache"
    small, large = _load(root, (16, 16), cache_dir=cache), _load(root, (24, 40), cache_dir=cache)
    assert small.input_shape == (3, 16, 16) and large.input_shape == (3, 24, 40)
    assert len(_cache_files(cache)) == 2
    load_dataset.cache_clear()
    assert torch.equal(_load(root, (16, 16), cache_dir=cache).images, small.images)


def test_a_damaged_entry_is_ignored_and_rewritten(tmp_path):
    root, cache = _mixed_folder(tmp_path / "pets"), tmp_path / "cache"
    first = _load(root, (32, 32), cache_dir=cache)
    (entry,) = cache.iterdir()
    intact = entry.read_bytes()
    entry.write_bytes(intact[: len(intact) // 2])
    load_dataset.cache_clear()
    assert torch.equal(_load(root, (32, 32), cache_dir=cache).images, first.images)
    assert entry.read_bytes() == intact


def test_a_cache_directory_that_cannot_be_written_costs_one_warning(tmp_path, capsys):
    root = _mixed_folder(tmp_path / "pets")
    (tmp_path / "a-file").write_text("")
    data = _load(root, (32, 32), cache_dir=tmp_path / "a-file" / "cache")
    assert data.images.shape == (10, 3, 32, 32)
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and warning.startswith(
        "warning: not caching the decoded images: cannot create"
    )


def _with_truncated_image(root: Path) -> Path:
    """``root`` with a PNG whose header reads but whose pixels do not decode."""
    _mixed_folder(root)
    whole = (root / "cat" / "0.png").read_bytes()
    (root / "cat" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    return root


def test_a_folder_too_big_for_memory_is_refused_before_any_image_is_decoded(tmp_path, monkeypatch):
    root = _with_truncated_image(tmp_path / "pets")
    with pytest.raises(BatchlrError, match=r"cannot decode .*truncated\.png"):
        _load(root, (32, 32))
    monkeypatch.setattr(memory, "available_host_memory", lambda: 20_000)
    with pytest.raises(BatchlrError) as raised:
        _load(root, (32, 32))
    assert str(raised.value) == (
        "imagefolder: 11 images of 3x32x32 need 39 kB of memory but 20 kB is available; "
        "give a smaller --image-size (e.g. 16) or use a subset of the folder"
    )


def test_a_cached_folder_too_big_for_memory_is_refused_too(tmp_path, monkeypatch):
    root = _mixed_folder(tmp_path / "pets")
    _load(root, (32, 32))
    load_dataset.cache_clear()
    monkeypatch.setattr(memory, "available_host_memory", lambda: 20_000)
    with pytest.raises(
        BatchlrError,
        match=r"^imagefolder: 10 images of 3x32x32 need 36 kB of memory but 20 kB is available",
    ):
        _load(root, (32, 32))


def test_memory_figures_and_the_device_check(monkeypatch):
    monkeypatch.setattr(memory, "available_host_memory", lambda: 4_100_000_000)
    with pytest.raises(BatchlrError) as raised:
        memory.check_fits("imagefolder", 50_000, (3, 224, 224), None, folder=True)
    assert str(raised.value) == (
        "imagefolder: 50,000 images of 3x224x224 need 7.6 GB of memory but 4.1 GB is available; "
        "give a smaller --image-size (e.g. 160) or use a subset of the folder"
    )
    memory.check_fits("cifar10", 50_000, (3, 32, 32), torch.device("cpu"), folder=False)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (100_000_000, 80_000_000_000))
    with pytest.raises(
        BatchlrError,
        match=r"^cifar10: 50,000 images of 3x32x32 need 154 MB of memory on cuda:0 but 100 MB is free; "
        r"give a smaller --image-size \(e\.g\. 24\)$",
    ):
        memory.check_fits("cifar10", 50_000, (3, 32, 32), torch.device("cuda:0"), folder=False)


def test_available_host_memory_is_positive_and_below_the_machines():
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < memory.available_host_memory() <= total


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="worker processes are used only with two cores or more"
)
def test_worker_processes_give_exactly_the_array_this_process_gives(tmp_path, monkeypatch):
    root = _mixed_folder(tmp_path / "pets")
    monkeypatch.setattr(readers, "_CHUNK_FILES", 3)  # several tasks even for a small folder
    spawned = []
    pool = readers.concurrent.futures.ProcessPoolExecutor

    def recording_pool(*args, **kwargs):
        spawned.append(args)
        return pool(*args, **kwargs)

    monkeypatch.setattr(readers.concurrent.futures, "ProcessPoolExecutor", recording_pool)
    monkeypatch.setattr(readers, "PARALLEL_FROM_BYTES", 1 << 60)
    (here, labels), _, _ = readers.read_image_folder(root, (24, 24))
    assert not spawned
    monkeypatch.setattr(readers, "PARALLEL_FROM_BYTES", 0)
    (there, same_labels), _, _ = readers.read_image_folder(root, (24, 24))
    assert spawned and np.array_equal(here, there) and np.array_equal(labels, same_labels)
    # A file that does not decode is the same one line from a worker.
    _with_truncated_image(tmp_path / "broken")
    with pytest.raises(BatchlrError, match=r"cannot decode .*truncated\.png"):
        readers.read_image_folder(tmp_path / "broken", (24, 24))


WORKERS_OF_A_KILLED_PARENT = """
import os, sys
from pathlib import Path
from batchlr.objectives.files import readers

if __name__ == "__main__":
    readers.PARALLEL_FROM_BYTES = 0
    folder = readers.list_image_folder(Path(sys.argv[1]))
    with readers.decoding_workers(folder) as workers:
        pids = {workers.submit(os.getpid).result() for _ in range(20)}
        print(*pids, flush=True)
        sys.stdin.read()  # until killed
"""


@pytest.mark.process
@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="worker processes are used only with two cores or more"
)
def test_worker_processes_end_when_their_parent_is_killed(tmp_path):
    root = _mixed_folder(tmp_path / "pets")
    parent = subprocess.Popen(
        [sys.executable, "-c", WORKERS_OF_A_KILLED_PARENT, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    assert pids and all(_running(pid) for pid in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in pids):
        assert time.monotonic() < deadline, "a decoding worker outlived its parent"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_line_on_a_terminal_and_nothing_elsewhere(tmp_path, monkeypatch, capsys):
    root = _mixed_folder(tmp_path / "pets")
    readers.read_image_folder(root, (16, 16))
    assert capsys.readouterr().err == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    readers.read_image_folder(root, (16, 16))
    shown = terminal.getvalue()
    assert "\n" not in shown and "\rdecoding images: 10/10" in shown and shown.endswith("\r\033[K")


def test_a_folder_without_class_folders_is_a_clear_error(tmp_path):
    _save(tmp_path / "loose.png", 8, 8)
    with pytest.raises(
        BatchlrError,
        match=f"^imagefolder: {tmp_path} has no class folder; give the folder whose subfolders are the classes$",
    ):
        _load(tmp_path)


def test_sources_are_relative_to_the_root_however_it_is_written(tmp_path, monkeypatch):
    _mixed_folder(tmp_path / "pets")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    folder = readers.list_image_folder(Path("..//pets/"))
    assert folder.sources == tuple(
        os.path.relpath(path, tmp_path / "pets") for path in folder.paths
    )
    assert folder.sources[0] == "cat/0.png"


def test_without_an_image_size_a_side_over_the_model_files_bound_is_one_line_pointing_at_image_size(
    tmp_path, monkeypatch
):
    from batchlr.objectives.settings import MAX_IMAGE_SIDE
    from batchlr.studies.deploy.model_file import _info_problem

    # The widest images batchlr trains on at their own size make a model file load_model reads.
    for name in ("a", "b"):
        _save(tmp_path / "widest" / name / "0.png", 1, MAX_IMAGE_SIDE, "L")
    shape = list(_load(tmp_path / "widest").input_shape)
    assert (
        shape == [1, 1, MAX_IMAGE_SIDE]
        and _info_problem(
            {"model": "m", "input_shape": shape, "classes": ["a", "b"], "mean": [0.5], "std": [0.5]}
        )
        is None
    )
    root = tmp_path / "wide"
    for name in ("a", "b"):
        _save(root / name / "0.png", 8, MAX_IMAGE_SIDE + 1, "L")
    message = (
        f"imagefolder: {root} holds images of 8x{MAX_IMAGE_SIDE + 1} (height x width), "
        f"larger than the {MAX_IMAGE_SIDE} pixels a side batchlr trains on; "
        f"give --image-size N or HxW (sides up to {MAX_IMAGE_SIDE}) to resize them while loading"
    )
    with pytest.raises(BatchlrError, match=f"^{re.escape(message)}$"):
        _load(root)
    assert _load(root, (8, 64)).input_shape == (1, 8, 64)
    # An entry a batchlr without the bound cached is not loaded in its place.
    monkeypatch.setattr(readers, "MAX_IMAGE_SIDE", MAX_IMAGE_SIDE + 1)
    _load(root, cache_dir=tmp_path / "cache")
    monkeypatch.undo()
    load_dataset.cache_clear()
    with pytest.raises(BatchlrError, match=re.escape(message)):
        _load(root, cache_dir=tmp_path / "cache")


def test_more_class_folders_than_a_model_file_may_name_are_refused(tmp_path, monkeypatch):
    from batchlr.objectives.files import image_files
    from batchlr.studies.deploy import model_file

    assert model_file.MAX_CLASSES is image_files.MAX_CLASSES  # one bound: what trains, loads
    monkeypatch.setattr(image_files, "MAX_CLASSES", 2)
    for name in ("a", "b", "c"):
        _save(tmp_path / "many" / name / "0.png", 8, 8)
    with pytest.raises(
        BatchlrError,
        match=rf"^imagefolder: {re.escape(str(tmp_path))}/many has 3 class folders, "
        r"more than the 2 classes batchlr trains on; "
        r"give the folder whose subfolders are the classes, or merge classes$",
    ):
        _load(tmp_path / "many")
