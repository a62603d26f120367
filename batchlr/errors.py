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


class SettingError(BatchlrUsageError):
    """A setting outside its rule. ``key`` names it as records, study files and the storage do
    (``label_smoothing``); the CLI names its flag instead (``--label-smoothing``), so that each
    rule is written once, in the record that holds the setting."""

    def __init__(self, key: str, value: object, problem: str) -> None:
        self.key, self.value, self.problem = key, value, problem
        super().__init__(self.naming(key))

    def naming(self, name: str) -> str:
        """The message with the setting called ``name``: ``label_smoothing 1.5: ...`` or
        ``--label-smoothing 1.5: ...``."""
        return (
            f"{name} {_shown(self.value, 'x' if self.key == 'image_size' else ':')}: {self.problem}"
        )


def _shown(value: object, joiner: str) -> str:
    """A setting's value as its option would spell it: ``16:512`` for a range (``joiner``
    between a pair of numbers: ``48x64`` for an image size), ``sgd,adam`` for names."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, str) for item in value):
        return ",".join(value)
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in value)
    ):
        return joiner.join(str(item) if isinstance(item, int) else f"{item:g}" for item in value)
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Interrupted(BatchlrError):
    """The user stopped a run (Ctrl-C, SIGTERM); the message says how to resume it."""

    exit_code = 130  # as a shell reports a process ended by SIGINT
