"""Starting several local worker processes on one study, and stopping them gracefully."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

from batchlr.errors import ERROR_PREFIX, BatchlrError, Interrupted
from batchlr.search.space import offset_seed

INTERRUPTED_EXIT = Interrupted.exit_code
# The pid of the `batchlr run --workers N` process, in its workers' environment.
PARENT_ENV = "BATCHLR_PARENT_PID"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# What a worker is sent once its parent is gone. Linux sends it again as each of the dead
# parent's threads exits, so it stops a worker gracefully, and a repeat is ignored rather than
# taken, as a second SIGTERM is, for a demand to exit at once (which would leave the trial RUNNING).
PARENT_GONE = signal.SIGHUP
# Seconds between two looks of the `--workers` process at its workers and the study.
POLL_SECONDS = 1.0


def worker_arguments(argv: Sequence[str]) -> list[str]:
    """The options of one worker: those after ``run`` on this command line, less ``--workers``."""
    kept, skip = [], False
    for argument in argv[list(argv).index("run") + 1 :]:
        if not skip and argument != "--workers" and not argument.startswith("--workers="):
            kept.append(argument)
        skip = argument == "--workers"
    return kept


def worker_environments(count: int, device: str) -> list[dict[str, str]]:
    """Environments for ``count`` workers: one GPU each when several are visible, else a share of the cores.

    Splitting the cores keeps workers from running more compute threads than there are cores.
    """
    import torch

    base = dict(os.environ)
    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    if gpus > 1:
        return [{**base, "CUDA_VISIBLE_DEVICES": str(index % gpus)} for index in range(count)]
    threads = str(max(1, (os.cpu_count() or 1) // count))
    return [{**base, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} for _ in range(count)]


class WorkerFailed(BatchlrError):
    """A worker of ``run --workers`` failed: its error line, said once for all of them, and its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Worker:
    """A worker process whose stderr is passed on as it comes, less its error line (see
    :class:`batchlr.cli_group.BatchlrGroup`), which is kept for the parent to say once."""

    def __init__(self, command: list[str], environment: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command,
            env=environment,
            start_new_session=True,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.error: str | None = None
        self.reader = threading.Thread(target=self._read, name="batchlr-worker-stderr", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if line.startswith(ERROR_PREFIX):
                self.error = line.removeprefix(ERROR_PREFIX).rstrip("\n")
            else:
                sys.stderr.write(line)
                sys.stderr.flush()

    def failure(self) -> WorkerFailed | None:
        """Why the ended worker failed, or None when it succeeded."""
        code = self.process.wait()
        self.reader.join()
        if not code:
            return None
        if code > 0:
            return WorkerFailed(
                self.error or f"a worker (pid {self.process.pid}) exited with {code}", code
            )
        # Killed by a signal: exit as a shell reports it (128 + signum).
        return WorkerFailed(
            f"a worker (pid {self.process.pid}) was killed by {signal.Signals(-code).name}; completed trials are kept, "
            "and its trial is retried by the other workers, or by the same command run again",
            128 - code,
        )


def run_workers(
    arguments: Sequence[str], count: int, device: str, seed: int, on_poll: Callable[[], None]
) -> None:
    """Run ``batchlr run ARGUMENTS`` in ``count`` processes and wait for all, calling
    ``on_poll`` every :data:`POLL_SECONDS` meanwhile.

    Worker i gets ``--seed SEED+i`` (modulo 2**32) so the workers' samplers do not propose the same trials.
    The workers run in their own process groups: a Ctrl-C or SIGTERM here is passed on to
    each of them once (they end their running trials as FAIL, reason ``interrupted``), and a
    second one passes on again, which makes them exit at once.

    Raises:
        WorkerFailed: with the error line and exit code of the first worker that failed
            (the others' error lines, the same more often than not, are not repeated).
    """
    workers = [
        _Worker(
            # "--workers 1" last: a study file given with --config may ask for workers too.
            [
                sys.executable,
                "-m",
                "batchlr",
                "run",
                *arguments,
                "--seed",
                str(offset_seed(seed, index)),
                "--workers",
                "1",
            ],
            {**environment, PARENT_ENV: str(os.getpid())},
        )
        for index, environment in enumerate(worker_environments(count, device))
    ]

    def forward(signum: int, frame: FrameType | None) -> None:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signum)

    previous = {
        signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while any(worker.process.poll() is None for worker in workers):
            on_poll()
            time.sleep(POLL_SECONDS)
        failure = next(filter(None, (worker.failure() for worker in workers)), None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failure:
        raise failure


def watch_parent() -> bool:
    """In a worker that :func:`run_workers` started: stop gracefully (:data:`PARENT_GONE`) once the
    parent is gone, however it died (SIGKILL, SIGHUP, a crash), so that no worker outlives it.
    Returns whether this process is such a worker (its parent speaks for it).

    Linux tells the worker at once (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread checks
    every second whether the parent still runs. Does nothing in a process that no
    ``run --workers`` started.
    """
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None:
        return False
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, PARENT_GONE)
        if os.getppid() != int(parent):  # it died before prctl could ask to be told
            os.kill(os.getpid(), PARENT_GONE)
        return True

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1)
        os.kill(os.getpid(), PARENT_GONE)

    threading.Thread(target=watch, name="batchlr-parent-watch", daemon=True).start()
    return True


class Interrupts:
    """How a process that runs trials stops on SIGINT, SIGTERM or :data:`PARENT_GONE`: gracefully,
    and only where that is safe.

    An exception raised by a signal handler lands between any two bytecodes, also while a lock
    of the storage's (Optuna's cache, SQLAlchemy's pool) is taken and before its release is
    set up, and the cleanup that then fails the trial waits for that lock for ever. So the first
    signal raises KeyboardInterrupt at once only inside :meth:`computing` (a trial's training
    and validation, which hold no such lock); elsewhere it is noted, and :meth:`check` raises it
    (call it where a trial may stop: its start, each round, the run's end). A later SIGINT or
    SIGTERM exits at once; a later :data:`PARENT_GONE` is ignored.
    """

    def __init__(self) -> None:
        self.received = threading.Event()
        self._computing = False

    def install(self) -> Interrupts:
        """Take SIGINT, SIGTERM and :data:`PARENT_GONE` over in this process."""
        report_unraisable = sys.unraisablehook

        def drop_lost_interrupt(unraisable: sys.UnraisableHookArgs) -> None:
            # Python drops an exception raised while a finalizer runs (a weakref callback of the
            # garbage collector, say); :meth:`check` raises it again, so it is no error to show.
            if not (self.received.is_set() and isinstance(unraisable.exc_value, KeyboardInterrupt)):
                report_unraisable(unraisable)

        sys.unraisablehook = drop_lost_interrupt
        for signum in (signal.SIGINT, signal.SIGTERM, PARENT_GONE):
            signal.signal(signum, self._interrupt)
        return self

    def check(self) -> None:
        """Raise KeyboardInterrupt once a signal came."""
        if self.received.is_set():
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        """A block where a signal raises KeyboardInterrupt at once: it takes no lock that the
        cleanup of an interrupted trial needs."""
        self._computing = True
        try:
            self.check()  # a signal that came before the block began
            yield
        finally:
            self._computing = False

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        self.received.set()
        signal.signal(signal.SIGINT, _exit_now)
        signal.signal(signal.SIGTERM, _exit_now)
        signal.signal(PARENT_GONE, signal.SIG_IGN)
        if self._computing:
            raise KeyboardInterrupt


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(INTERRUPTED_EXIT)


def stop_gracefully_on_signals() -> Interrupts:
    """Stop this process gracefully on signals from now on (see :class:`Interrupts`)."""
    return Interrupts().install()
