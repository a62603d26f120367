"""The ``batchlr`` group: how its commands print, and any error as one line and an exit code."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from batchlr.errors import (
    ERROR_PREFIX,
    BatchlrError,
    BatchlrUsageError,
    Interrupted,
    SettingError,
)
from batchlr.studies.store import (
    FAULT_REMEDY,
    RETRY_REMEDY,
    STORAGE_ENV,
    option_name,
    redact,
    remember_secrets,
    storage_fault,
)


class BatchlrGroup(click.Group):
    """Turns :class:`BatchlrError` into one line and its exit code; ``--debug`` shows tracebacks."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Keep the arguments as given: the study note records them, and --workers passes them on."""
        arguments = list(args)
        for text in (*arguments, os.environ.get(STORAGE_ENV, "")):
            remember_secrets(text)
        ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta["batchlr.arguments"] = ["batchlr", *arguments]
        return ctx

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Print every error as the single line ``Error: ...``, without click's usage block."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        if isinstance(sys.stdout, io.TextIOWrapper):
            # A file or class name need not be UTF-8 (Python escapes its odd bytes as surrogates):
            # print its bytes as they are, as `ls` does, rather than fail under a strict locale.
            sys.stdout.reconfigure(errors="surrogateescape")
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as error:
            click.echo(f"{ERROR_PREFIX}{redact(error.format_message())}", err=True)
            code = error.exit_code
        except click.Abort:
            # Ctrl-C before a run's trials take signals over, or in any other command: nothing
            # was half written (files and studies are written whole), so it can simply be rerun.
            click.echo(f"{ERROR_PREFIX}interrupted; run the same command again", err=True)
            code = Interrupted.exit_code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # A reader such as `head` closed our output: stop quietly, as Unix tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(141) from None
        except SystemExit as error:
            # batchlr raises errors, it never exits inside a command: this is a model's code
            # (a --model function, a trusted model file's), and its status would hide the failure.
            if ctx.meta.get("batchlr.debug"):
                raise
            raise click.ClickException(
                f"a model's code called exit({error.code!r}); a model function must return a torch.nn.Module and "
                "its forward pass return logits or raise (run with --debug for the traceback)"
            ) from None
        except Exception as error:
            if ctx.meta.get("batchlr.debug"):
                raise
            if not isinstance(error, BatchlrError):
                remedy = FAULT_REMEDY if ctx.invoked_subcommand == "run" else RETRY_REMEDY
                error = storage_fault(error, ctx.meta.get("batchlr.storage", ""), remedy) or error
            if isinstance(error, SettingError):
                raise click.UsageError(error.naming(option_name(error.key))) from None
            if isinstance(error, BatchlrUsageError):
                raise click.UsageError(str(error)) from None
            if isinstance(error, BatchlrError):
                failure = click.ClickException(str(error))
                # click types exit_code as a ClassVar, yet reads it from the exception it catches
                failure.exit_code = error.exit_code  # type: ignore[misc]
                raise failure from None
            raise click.ClickException(
                f"unexpected {type(error).__name__}: {error} (run with --debug for the traceback)"
            ) from None


def echo_lines(lines: list[str], warning: str | None = None) -> None:
    """Print ``lines`` to stdout, and ``warning``, if any, to stderr."""
    click.echo("\n".join(lines))
    if warning:
        click.echo(warning, err=True)
