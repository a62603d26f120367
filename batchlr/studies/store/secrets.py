"""Passwords kept out of every message: masked in URLs, and redacted where others quote them."""

from __future__ import annotations

import re

import sqlalchemy.exc
from sqlalchemy.engine import make_url

# Query parameters whose values are secrets (libpq's password, tokens of cloud drivers).
_SECRET_PARAMETER = re.compile(
    r"(?i)\b([\w.-]*(?:pass|pwd|secret|token|credential)[\w.-]*)=([^&;\s]*)"
)
# user:SECRET@ in anything that looks like a URL, parsable or not; the password may hold '@' and ':'.
_USER_PASSWORD = re.compile(r"(://[^/\s:@]*:)([^\s/]*)(@)")
_known_secrets: set[str] = set()


def mask_url(url: str) -> str:
    """``url`` with every password in it replaced by ``***``: after ``user:``, and in query
    parameters such as ``password=``, whether or not the URL parses.

    The secrets found are remembered (see :func:`remember_secrets`), so that :func:`redact`
    can take them out of messages that others (a database driver, say) wrote.
    """
    remember_secrets(url)
    return redact(_SECRET_PARAMETER.sub(r"\1=***", _USER_PASSWORD.sub(r"\1***\3", url)))


def remember_secrets(url: str) -> None:
    """Note the passwords in ``url`` (any of the forms :func:`mask_url` masks) for :func:`redact`."""
    for pattern in (_USER_PASSWORD, _SECRET_PARAMETER):
        for match in pattern.finditer(url):
            _remember(match.group(2))
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        parsed = None
    if parsed is not None:
        _remember(parsed.password)
        for key, value in parsed.query.items():
            if _SECRET_PARAMETER.fullmatch(f"{key}=x"):
                _remember(*([value] if isinstance(value, str) else value))


def redact(text: str) -> str:
    """``text`` with every secret that :func:`mask_url` has seen in this process replaced by ``***``."""
    for secret in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _remember(*secrets: object) -> None:
    # Very short "secrets" (a password "x") would mask ordinary letters in every message.
    _known_secrets.update(
        str(secret)
        for secret in secrets
        if secret is not None and len(str(secret)) >= 3 and str(secret) != "***"
    )


def mask_command_line(arguments: list[str]) -> str:
    """The command line with the password of every URL in it (``--storage URL`` or ``--storage=URL``) masked."""
    return " ".join(mask_url(argument) for argument in arguments)
