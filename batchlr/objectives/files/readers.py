"""Readers of image folders (the built-in data sets' files: :mod:`.dataset_files`).

Each reader returns ``(images, labels)`` as NumPy arrays: images uint8 in N×C×H×W,
labels int64. Nothing here normalises, caches or moves data; :mod:`batchlr.objectives.data.datasets`
does.

An image folder is read in two passes over its files: their headers first (size and mode,
without decoding pixels), so that the array's shape, and whether it fits in memory, are known
before any pixel is decoded; then the pixels, straight into one preallocated array. A large
folder is read by worker processes on every core. They import this module, which therefore
imports nothing heavier than NumPy and PIL: a worker starts in a fraction of a second and
holds no torch state.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import math
import multiprocessing
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from batchlr.errors import BatchlrError
from batchlr.files import file_kind
from batchlr.objectives.files.dataset_files import Arrays
from batchlr.objectives.files.image_files import ImageFolder, list_image_folder
from batchlr.objectives.settings import MAX_IMAGE_SIDE

# PIL's modes of one grey channel, with or without alpha; a palette image ("P") counts as colour.
_DEEP_GREY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})  # more than 8 bits
GREY_MODES = frozenset({"1", "L", "LA", "La", *_DEEP_GREY_MODES})
# Files per worker task: enough that sending it costs little, few enough that progress shows;
# and at most 4 MiB of decoded pixels, so that blocks in flight take little memory.
_CHUNK_FILES, _CHUNK_BYTES = 256, 4 << 20
# Reading takes 40 to 70 ns per byte of PNG or JPEG file (100 us for a 2 KB 32x32 PNG) and
# starting worker processes about 0.25 s, so with 2 cores the workers pay off from about 8 MB.
PARALLEL_FROM_BYTES = 8 << 20
# The most pixels fit_image scales an image up to whole before cropping (12 MB in RGB).
_WHOLE_SCALED_PIXELS = 4 << 20
_SIZES_SHOWN = 4  # by the error about a folder of mixed sizes, the commonest first

Workers = concurrent.futures.Executor | None


def read_image_folder(
    root: Path, image_size: tuple[int, int] | None = None
) -> tuple[Arrays, tuple[str, ...], tuple[str, ...]]:
    """Read a class-per-folder tree of images (:func:`list_image_folder`, :func:`image_shape`,
    :func:`decode_images`; no cache, no memory check): the images and labels, the class names,
    and each image's path relative to ``root``."""
    folder = list_image_folder(root)
    with decoding_workers(folder) as workers:
        images = decode_images(folder, image_shape(folder, image_size, workers), workers)
    return (images, folder.labels), folder.classes, folder.sources


@contextlib.contextmanager
def decoding_workers(folder: ImageFolder) -> Iterator[Workers]:
    """Worker processes, one per usable core, to read ``folder``'s files; None (read them in this
    process) when they are too few bytes to repay starting workers, or there is one core.

    Workers start from a fresh interpreter ('spawn': no torch state is forked; as with any
    'spawn', a script that loads a large folder needs ``if __name__ == "__main__":``). They
    leave Ctrl-C to this process and end when it ends, however it ends.
    """
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    if folder.file_bytes.sum() < PARALLEL_FROM_BYTES or cores < 2:
        yield None
        return
    pool = concurrent.futures.ProcessPoolExecutor(
        cores, mp_context=multiprocessing.get_context("spawn"), initializer=_serve_parent
    )
    try:
        yield pool
    finally:
        # After an error, chunks not yet started are dropped: the error is all the caller gets.
        pool.shutdown(cancel_futures=True)


def image_shape(
    folder: ImageFolder, image_size: tuple[int, int] | None, workers: Workers
) -> tuple[int, int, int]:
    """The (channels, height, width) the folder's images load as, read from their headers alone.

    One channel when every image is grey (see :data:`GREY_MODES`), else three (RGB). The
    height and width are ``image_size`` when given, else the one size of all the images.

    Raises:
        BatchlrError: when a file is not an image, or, without ``image_size``, the images have
            several sizes or a side over :data:`~batchlr.objectives.settings.MAX_IMAGE_SIDE`
            (a model trained on them could not be loaded).
    """
    headers = np.empty((len(folder.paths), 3), dtype=np.int64)
    _fill(
        headers, _run(_read_headers, folder.paths, _CHUNK_FILES, workers), "reading image headers"
    )
    channels = 1 if headers[:, 2].all() else 3
    if image_size is not None:
        return channels, *image_size
    sizes, counts = np.unique(headers[:, :2], axis=0, return_counts=True)
    if len(sizes) > 1:
        commonest = np.argsort(-counts, kind="stable")[:_SIZES_SHOWN]
        listed = ", ".join(
            f"{sizes[i, 0]}x{sizes[i, 1]} ({counts[i]}{' images' if i == commonest[0] else ''})"
            for i in commonest
        )
        more = f" and {len(sizes) - _SIZES_SHOWN} more" if len(sizes) > _SIZES_SHOWN else ""
        raise BatchlrError(
            f"imagefolder: {folder.root} holds images of {len(sizes)} sizes (height x width): {listed}{more}; "
            "give --image-size N or HxW to resize them while loading"
        )
    height, width = int(sizes[0, 0]), int(sizes[0, 1])
    if max(height, width) > MAX_IMAGE_SIDE:
        raise BatchlrError(
            f"imagefolder: {folder.root} holds images of {height}x{width} (height x width), larger "
            f"than the {MAX_IMAGE_SIDE} pixels a side batchlr trains on; give --image-size N or "
            f"HxW (sides up to {MAX_IMAGE_SIDE}) to resize them while loading"
        )
    return channels, height, width


def decode_images(folder: ImageFolder, shape: tuple[int, int, int], workers: Workers) -> np.ndarray:
    """Decode every image of ``folder`` into one new uint8 array of ``(len(folder.paths), *shape)``.

    Each image becomes grey or RGB as ``shape``'s channels say (alpha dropped; grey of more
    than 8 bits scaled by its type's range, see :func:`_eight_bit`), then is fitted to
    ``shape``'s height and width by :func:`fit_image`.
    """
    images = np.empty((len(folder.paths), *shape), dtype=np.uint8)
    decode = functools.partial(decode_files, channels=shape[0], size=(shape[1], shape[2]))
    chunk_files = min(_CHUNK_FILES, max(1, _CHUNK_BYTES // images[0].nbytes))
    _fill(images, _run(decode, folder.paths, chunk_files, workers), "decoding images")
    return images


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """N×C×H×W uint8 images (C 1 or 3) fitted one by one to ``size`` by :func:`fit_image`, in a new array."""
    resized = np.empty((len(images), images.shape[1], *size), dtype=np.uint8)
    for row, pixels in enumerate(images):
        image = Image.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0))
        resized[row] = _channels_first(np.asarray(fit_image(image, size)))
    return resized


def fit_image(
    image: Image.Image,
    size: tuple[int, int],
    convert: Callable[[Image.Image], Image.Image] = lambda image: image,
) -> Image.Image:
    """``convert(image)`` scaled so that it covers ``size`` (height, width), keeping its aspect
    ratio, then cropped to ``size`` about its centre: for a square ``size``, torchvision's
    ``Resize(side)`` then ``CenterCrop(side)``, whose bilinear resampling PIL antialiases when
    it shrinks. ``convert`` is a pixel-wise conversion (channels, bit depth).

    The scaled image is made whole, as torchvision does, only while it is no larger than
    ``image`` or :data:`_WHOLE_SCALED_PIXELS`; beyond (a narrow image scaled up: 1x20,000,000
    to 32x32 would be 32x640,000,000 first) only the crop is made, from the part of ``image``
    it covers, and only that part is converted, so memory holds ``image`` and the output
    alone. PIL takes that part's corners as 32-bit floats, so a pixel may then differ from
    torchvision's by one level.
    """
    height, width = size
    # scaling the height to `height` leaves the width at least `width`
    if height * image.width >= width * image.height:
        scaled = (image.width * height // image.height, height)
    else:
        scaled = (width, image.height * width // image.width)
    left, top = round((scaled[0] - width) / 2), round((scaled[1] - height) / 2)
    crop = (left, top, left + width, top + height)
    if scaled[0] * scaled[1] <= max(image.width * image.height, _WHOLE_SCALED_PIXELS):
        image = convert(image)
        if scaled != image.size:
            image = image.resize(scaled, Image.Resampling.BILINEAR)
        return image if scaled == (width, height) else image.crop(crop)
    x_scale, y_scale = image.width / scaled[0], image.height / scaled[1]
    box = (crop[0] * x_scale, crop[1] * y_scale, crop[2] * x_scale, crop[3] * y_scale)
    # Scaled up (this path only), bilinear reads a pixel either side of the box: a margin of
    # two keeps every pixel the resampling reads, so the part gives what the whole would.
    part = (
        max(0, math.floor(box[0]) - 2),
        max(0, math.floor(box[1]) - 2),
        min(image.width, math.ceil(box[2]) + 2),
        min(image.height, math.ceil(box[3]) + 2),
    )
    shifted = (box[0] - part[0], box[1] - part[1], box[2] - part[0], box[3] - part[1])
    return convert(image.crop(part)).resize((width, height), Image.Resampling.BILINEAR, box=shifted)


def _run(
    task: Callable[[Sequence[str]], np.ndarray],
    paths: Sequence[str],
    chunk_files: int,
    workers: Workers,
) -> Iterator[np.ndarray]:
    """``task``'s blocks for successive chunks of ``chunk_files`` of ``paths``, in order, from
    ``workers`` or this process."""
    chunks = [paths[start : start + chunk_files] for start in range(0, len(paths), chunk_files)]
    return workers.map(task, chunks) if workers is not None else map(task, chunks)


def _fill(array: np.ndarray, blocks: Iterable[np.ndarray], label: str) -> None:
    """Copy ``blocks`` one after another into ``array``; on a terminal, one line counts them meanwhile."""
    shown = sys.stderr.isatty()
    filled = 0
    try:
        for block in blocks:
            array[filled : filled + len(block)] = block
            filled += len(block)
            if shown:
                sys.stderr.write(f"\r{label}: {filled:,}/{len(array):,}")
                sys.stderr.flush()
    finally:
        if shown:  # clear the line, so that what comes next is written where it stood
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _read_headers(paths: Sequence[str]) -> np.ndarray:
    """Each file's height, width and whether it is grey (1 or 0), from its header alone."""
    headers = np.empty((len(paths), 3), dtype=np.int64)
    for row, path in enumerate(paths):
        with _opened(path) as image:
            headers[row] = image.height, image.width, image.mode in GREY_MODES
    return headers


def decode_files(paths: Sequence[str], channels: int, size: tuple[int, int]) -> np.ndarray:
    """The images at ``paths`` with ``channels`` channels (1 or 3), fitted to ``size``, as one uint8 block."""
    block = np.empty((len(paths), channels, *size), dtype=np.uint8)
    for row, path in enumerate(paths):
        with _opened(path) as image:
            # The file's sample range is read off the whole image: a crop of it is no TIFF.
            largest = _largest_value(image) if image.mode in _DEEP_GREY_MODES else 0
            convert = functools.partial(_with_channels, channels=channels, largest=largest)
            pixels = np.asarray(fit_image(image, size, convert))
        block[row] = _channels_first(pixels)
    return block


@contextlib.contextmanager
def _opened(path: str) -> Iterator[Image.Image]:
    """The image at ``path``, opened (PIL reads its header, not its pixels); a failure to read it,
    or a path that is not a regular file, is one line naming it."""
    with os.fdopen(_open_regular(path), "rb") as handle:
        try:
            with Image.open(handle) as image:
                yield image
        # What PIL raises for a file it cannot read: UnidentifiedImageError and truncation are
        # OSErrors, a header with impossible values is a ValueError, a huge image a bomb error.
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            # PIL names a file it cannot identify by its handle (<_io.BufferedReader name=3>):
            # the path is named already.
            reason = (
                "not an image format PIL reads"
                if isinstance(error, UnidentifiedImageError)
                else error
            )
            raise BatchlrError(
                f"cannot decode image file {path} ({reason}); remove it or replace it with an image file"
            ) from error


def _open_regular(path: str) -> int:
    """A descriptor of ``path`` open for reading, once it is known to be a regular file.

    Opened without blocking, then checked by the descriptor's own status: a check of the path
    before opening it would leave a moment in which a FIFO put in its place blocks the open
    until a writer comes. O_NONBLOCK changes nothing for reading a regular file.

    Raises:
        BatchlrError: when the file cannot be opened, or is a FIFO, device, socket or directory.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise BatchlrError(
            f"cannot open image file {path} ({error.strerror}); make it readable or remove it"
        ) from error
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise BatchlrError(
            f"image file {path} is {file_kind(mode)}, not a regular file; remove it or replace it with an image file"
        )
    return descriptor


def _with_channels(image: Image.Image, channels: int, largest: int) -> Image.Image:
    """``image`` as 8-bit grey (``channels`` 1) or RGB (3), without alpha; grey of more than 8
    bits first made 8-bit by :func:`_eight_bit` (``largest``: its file's largest sample value,
    see :func:`_largest_value`), where PIL's conversion would clip it at 255."""
    if image.mode in _DEEP_GREY_MODES:
        image = _eight_bit(image, largest)
    mode = "L" if channels == 1 else "RGB"
    return image if image.mode == mode else image.convert(mode)


def _eight_bit(image: Image.Image, largest: int) -> Image.Image:
    """Grey ``image`` of integers wider than 8 bits or of floats as 8-bit grey: integers mapped
    from their type's range (0 to ``largest``, negatives as 0) onto 0..255, rounded, so
    16-bit grey is divided by 257; floats clipped to 0..1 (NaN as 0), then scaled to 0..255."""
    pixels = np.asarray(image)
    if image.mode == "F":
        return Image.fromarray(np.rint(np.clip(np.nan_to_num(pixels), 0, 1) * 255).astype(np.uint8))
    # PIL holds unsigned 32-bit samples in its signed mode "I"
    if largest == np.iinfo(np.uint32).max:
        pixels = pixels.view(np.uint32)
    # 32-bit values times 255 need 40 bits
    wide = np.clip(pixels, 0, None).astype(np.uint64 if largest >> 16 else np.uint32)
    return Image.fromarray(((wide * 255 + largest // 2) // largest).astype(np.uint8))


def _largest_value(image: Image.Image) -> int:
    """The largest value of the integer type ``image``'s file holds its samples in.

    PIL reads 16-bit grey as "I;16" (PNG, TIFF) or as "I" scaled to 0..65535 (PGM, of any
    maximum value); "I" from a TIFF holds integers of its BitsPerSample tag (258), signed
    when its SampleFormat tag (339) is 2.
    """
    if image.mode == "I" and image.format == "TIFF":
        from PIL.TiffImagePlugin import TiffImageFile  # loaded already: it read this image

        assert isinstance(image, TiffImageFile)  # the one class of format "TIFF"
        bits: int = image.tag_v2.get(258, (32,))[0]
        signed: bool = image.tag_v2.get(339, (1,))[0] == 2
        return (1 << (bits - signed)) - 1
    return int(np.iinfo(np.uint16).max)


def _channels_first(pixels: np.ndarray) -> np.ndarray:
    """H×W or H×W×C pixels as C×H×W."""
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _serve_parent() -> None:
    """Set up a decoding worker: Ctrl-C is for its parent to handle, and it ends when the parent ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_exit_with, args=(multiprocessing.parent_process(),), daemon=True
    ).start()


def _exit_with(parent: BaseProcess) -> None:
    parent.join()  # returns once the parent has ended, even killed
    os._exit(1)
