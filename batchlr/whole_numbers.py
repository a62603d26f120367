"""Reading whole numbers typed in option text (``--image-size 32``, ``lr=12``, ``--max-micro-batch 64``)."""

from __future__ import annotations


def whole_number(text: str) -> int | None:
    """The number that ``text``'s ASCII digits spell (spaces around allowed), else ``None``.

    ``str.isdigit()`` also accepts superscripts such as ``²``, which ``int()`` then refuses
    with a ValueError; and ``int()`` refuses more than 4,300 digits. Both are ``None`` here,
    so that each option says what it takes instead.
    """
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        return None
    try:
        return int(digits)
    except ValueError:  # beyond int()'s digit limit
        return None
