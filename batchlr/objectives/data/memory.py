"""Whether a data set's images fit in memory, checked before any of them is decoded.

The images are uint8, so a data set needs N×C×H×W bytes on the host, plus its labels and file
names, and as much again on a CUDA device that training copies them to.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from batchlr.errors import BatchlrError

# Host bytes per image besides its pixels: its label, its path and its name relative to the
# folder as Python strings, and the cache's copy of those names while it is written.
HOST_BYTES_PER_IMAGE = 512
# Device bytes per image besides its pixels: its int64 label.
DEVICE_BYTES_PER_IMAGE = 8
CGROUP_ROOT = Path("/sys/fs/cgroup")


def check_fits(
    name: str, count: int, shape: tuple[int, int, int], device: torch.device | None, *, folder: bool
) -> None:
    """Raise one line saying what to change when ``count`` images of ``shape`` (C, H, W) do not
    fit in the host's available memory or, when ``device`` is CUDA, in its free memory.

    ``folder`` says whether the images come from an image folder, of which the user can take a
    subset.
    """
    spaces = [("memory", available_host_memory(), "is available", HOST_BYTES_PER_IMAGE)]
    if device is not None and device.type == "cuda":
        spaces.append(
            (
                f"memory on {device}",
                torch.cuda.mem_get_info(device)[0],
                "is free",
                DEVICE_BYTES_PER_IMAGE,
            )
        )
    for where, available, state, overhead in spaces:
        needed = count * (math.prod(shape) + overhead)
        if needed <= available:
            continue
        side = _side_that_fits(available // count - overhead, shape)
        remedies = [f"give a smaller --image-size (e.g. {side})"] if side else []
        if folder:
            remedies.append("use a subset of the folder")
        raise BatchlrError(
            f"{name}: {count:,} images of {'x'.join(map(str, shape))} need {_bytes(needed)} of {where} but "
            f"{_bytes(available)} {state}; {' or '.join(remedies) or 'free some memory'}"
        )


def available_host_memory() -> int:
    """Bytes this process can still allocate: the kernel's estimate of available memory, bounded
    by what the cgroup (v2) memory limits of this process leave."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        available = (
            int(
                next(
                    line.split()[1]
                    for line in meminfo.splitlines()
                    if line.startswith("MemAvailable:")
                )
            )
            * 1024
        )
    except (OSError, StopIteration):  # not Linux: free pages, which leave out reclaimable caches
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    headroom = _cgroup_headroom()
    return available if headroom is None else min(available, headroom)


def _cgroup_headroom() -> int | None:
    """Bytes left under the tightest cgroup v2 memory limit of this process's cgroup and its
    ancestors, or None where none is set.

    Inactive page cache counts as free: the kernel reclaims it before it refuses memory.
    """
    try:
        cgroup = next(
            line[3:]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
    except (OSError, StopIteration):
        return None
    headrooms = []
    folder = CGROUP_ROOT / cgroup.strip().lstrip("/")
    for level in (folder, *folder.parents):
        try:
            limit = (level / "memory.max").read_text().strip()
            if limit != "max":
                stat = dict(
                    line.split() for line in (level / "memory.stat").read_text().splitlines()
                )
                used = int((level / "memory.current").read_text()) - int(
                    stat.get("inactive_file", 0)
                )
                headrooms.append(max(0, int(limit) - used))
        except (OSError, ValueError):  # a level without the memory controller, or not mounted here
            pass
        if level == CGROUP_ROOT:
            break
    return min(headrooms, default=None)


def _side_that_fits(pixel_bytes: int, shape: tuple[int, int, int]) -> int | None:
    """The largest multiple of 8, below the images' shorter side, whose square images of
    ``shape``'s channels take at most ``pixel_bytes`` each; None when not even 8x8 does."""
    channels, height, width = shape
    side = min(math.isqrt(max(pixel_bytes, 0) // channels), min(height, width) - 1) // 8 * 8
    return side or None


def _bytes(size: int) -> str:
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB"
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
