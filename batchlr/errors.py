"""Exceptions for problems a user can cause and fix."""

from __future__ import annotations


class BatchlrError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The message says what is wrong and how to fix it. The CLI prints it without a
    traceback and exits 1; anything else that escapes is a bug.
    """


class BatchlrUsageError(BatchlrError):
    """A bad option value or combination of options; the CLI exits 2, as click does for usage errors."""
