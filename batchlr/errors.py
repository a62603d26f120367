"""Exceptions for problems a user can cause and fix."""

from __future__ import annotations

ERROR_PREFIX = "Error: "
"""How the CLI starts the one line it prints for an error (the ``--workers`` process finds its workers' by it)."""


class BatchlrError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The message says what is wrong and how to fix it. The CLI prints it without a
    traceback and exits with ``exit_code``; anything else that escapes is a bug.
    """

    exit_code = 1


class BatchlrUsageError(BatchlrError):
    """A bad option value or combination of options; the CLI exits 2, as click does for usage errors."""


class Interrupted(BatchlrError):
    """The user stopped a run (Ctrl-C, SIGTERM); the message says how to resume it."""

    exit_code = 130  # as a shell reports a process ended by SIGINT
