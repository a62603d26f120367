"""Peak resident memory per image of `batchlr run` on an image folder.

    python benchmarks/memory.py
    python benchmarks/memory.py --sizes 2000,12000 --repeats 3 --checkout /tmp/before

Writes one synthetic folder of 10 classes of random RGB PNG images per size into a temporary
directory, runs `python -m batchlr run` on each (2 folds, 1 epoch, 1 trial) as a child process
of the checkout given, and prints each child's peak resident memory (the median of the repeats)
and the slope between the smallest and the largest size in KiB per image, the figure of merit:
a 32x32 RGB image holds 3 KiB of pixels and the goal is at most 4.5 KiB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10


def write_folder(root: Path, images: int, side: int, seed: int) -> None:
    """Write ``images`` random side x side RGB PNGs, dealt in turn to ``CLASSES`` class folders."""
    rng = np.random.default_rng(seed)
    for label in range(CLASSES):
        (root / f"class{label}").mkdir(parents=True)
    for index in range(images):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"class{index % CLASSES}" / f"{index:06d}.png")


def last_line(stderr: str, returncode: int) -> str:
    """A failed child's error: the last line of its stderr (batchlr's one-line error), else its exit status."""
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {returncode}"


def peak_rss_kib(command: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Run ``command`` and return its peak resident set size in KiB; exit with its last error line if it fails."""
    errors = cwd / "stderr.txt"
    with errors.open("w") as stderr:
        child = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
        # Popen.wait reaps the child without its resource usage; wait4 returns both.
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(
            f"memory: batchlr run in {cwd.name} failed: {last_line(errors.read_text(), child.returncode)}"
        )
    return usage.ru_maxrss  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="2000,12000", help="comma-separated image counts, at least two"
    )
    parser.add_argument(
        "--image-size", type=int, default=32, help="side of the generated square images"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per size; the table shows their median"
    )
    parser.add_argument(
        "--checkout",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="the batchlr source tree to measure",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the pixels")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    if len(sizes) < 2 or args.repeats < 1:
        parser.error("give at least two --sizes and one --repeats")
    if not (args.checkout / "batchlr" / "__init__.py").is_file():
        # Without it the child would silently import the installed batchlr instead.
        parser.error(f"--checkout {args.checkout} holds no batchlr package")

    # The child imports batchlr from the checkout and runs in the temporary directory, so that
    # nothing it writes lands in a source tree.
    env = {**os.environ, "PYTHONPATH": str(args.checkout.resolve())}
    batchlr_run = [sys.executable, "-m", "batchlr", "run"]
    with tempfile.TemporaryDirectory(prefix="batchlr-memory-") as temporary:
        work = Path(temporary)
        usage = subprocess.run(
            [*batchlr_run, "--help"], cwd=work, env=env, capture_output=True, text=True
        )
        if usage.returncode != 0:
            sys.exit(
                f"memory: batchlr from {args.checkout} does not start: {last_line(usage.stderr, usage.returncode)}"
            )
        # a checkout that caches decoded folders must not write the user's cache
        caches = "--cache-dir" in usage.stdout
        print(
            f"batchlr from {args.checkout}; {args.image_size}x{args.image_size} RGB PNGs; "
            f"{args.repeats} run(s) per size"
        )
        print(f"{'images':>7}  {'peak RSS MiB':>12}  runs")
        medians = []
        for size in sizes:
            folder = work / f"images{size}"
            write_folder(folder, size, args.image_size, args.seed)
            runs = []
            for repeat in range(args.repeats):
                # A fresh database and cache per run: every run creates its study and decodes the folder.
                run_dir = work / f"run{size}-{repeat}"
                run_dir.mkdir()
                command = [
                    *batchlr_run,
                    "--dataset",
                    f"imagefolder:{folder}",
                    "--model",
                    "convnet",
                    "--folds",
                    "2",
                    "--epochs",
                    "1",
                    "--n-trials",
                    "1",
                    "--batch-size",
                    "64:64",
                    "--storage",
                    f"sqlite:///{run_dir / 'x.db'}",
                    "--quiet",
                ]
                if caches:
                    command += ["--cache-dir", str(run_dir / "cache")]
                runs.append(peak_rss_kib(command, run_dir, env) / 1024)
            medians.append(statistics.median(runs))
            print(f"{size:>7}  {medians[-1]:>12.1f}  {' '.join(f'{run:.1f}' for run in runs)}")
    slope = (medians[-1] - medians[0]) * 1024 / (sizes[-1] - sizes[0])
    print(f"slope {sizes[0]} to {sizes[-1]} images: {slope:.2f} KiB per image")


if __name__ == "__main__":
    main()
