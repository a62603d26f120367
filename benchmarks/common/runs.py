"""Running one study with ``batchlr run`` in a child process, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def run_batchlr(study: str, storage: str, options: list[str], threads: int | None = None) -> float:
    """Run study ``study`` in ``storage`` to its end with ``batchlr run --quiet`` and ``options``
    (on ``threads`` CPU threads, where given and ``OMP_NUM_THREADS`` is not already set: a caller
    that shares the cores with other work has said how many to take); returns its wall-clock
    seconds.

    Raises:
        SystemExit: with the last line ``batchlr run`` printed, when it fails.
    """
    command = [sys.executable, "-m", "batchlr", "run", "--study", study, "--storage", storage]
    environment = dict(os.environ)
    if threads:
        environment.setdefault("OMP_NUM_THREADS", str(threads))
    started = time.perf_counter()
    finished = subprocess.run(
        [*command, "--quiet", *options], capture_output=True, text=True, env=environment
    )
    if finished.returncode:
        lines = finished.stderr.strip().splitlines() or [f"exit status {finished.returncode}"]
        raise SystemExit(f"{study}: batchlr run failed: {lines[-1]}")
    return time.perf_counter() - started
