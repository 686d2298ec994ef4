"""Files the CLI reads and writes for the user: errors become one-line InputErrors."""

from __future__ import annotations

import sys
from pathlib import Path

from netsim.errors import InputError


def write_output(path: str, data: str | bytes, flag: str) -> None:
    """Write a command's output file; an unwritable path is bad input, not a crash."""
    try:
        if isinstance(data, bytes):
            Path(path).write_bytes(data)
        else:
            Path(path).write_text(data)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}", obj="command line",
                         field=flag) from None


def read_input_text(path: str, flag: str) -> str:
    """A file the user names (- for stdin)."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"cannot read {path}: {reason}", obj="command line",
                         field=flag) from None
