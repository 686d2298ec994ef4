"""Split iptables-restore lines into words and quote words back as iptables-save does."""

from __future__ import annotations

# iptables-restore (xshared.c add_param_to_argv): words split on blanks; a double quote opens a
# quoted stretch in which blanks are kept and a backslash escapes `"` or `\` (before any other
# character the backslash stays); the closing quote ends the word, so `""` is an empty word.
# Single quotes are ordinary characters (verified against iptables 1.8.9).


def tokenize(line: str) -> list[str]:
    """The words of one restore line, quotes removed (ValueError on an unterminated quote)."""
    if '"' not in line:
        return line.split()
    if "\\" not in line:
        return _split_quoted(line)
    return _split_escaped(line)


def _split_escaped(line: str) -> list[str]:
    """tokenize() character by character (quotes with backslash escapes)."""
    words: list[str] = []
    buf: list[str] = []
    started = False
    quoted = False
    escaped = False
    for char in line:
        if quoted:
            if escaped:
                if char not in '"\\':
                    buf.append("\\")
                buf.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
                words.append("".join(buf))
                buf.clear()
                started = False
            else:
                buf.append(char)
        elif char == '"':
            quoted = True
            started = True
        elif char in " \t\r\n":
            if started:
                words.append("".join(buf))
                buf.clear()
                started = False
        else:
            buf.append(char)
            started = True
    if quoted:
        raise ValueError("unterminated quoted string")
    if started:
        words.append("".join(buf))
    return words


def _split_quoted(line: str) -> list[str]:
    """tokenize() for a line without backslashes: the text between quotes is taken whole."""
    parts = line.split('"')
    if len(parts) % 2 == 0:
        raise ValueError("unterminated quoted string")
    words: list[str] = []
    last = len(parts) - 1
    for k in range(0, len(parts), 2):
        part = parts[k]
        found = part.split()
        if k < last:
            quoted = parts[k + 1]
            if found and not part[-1].isspace():
                found[-1] += quoted  # `a"b c"` is one word
            else:
                found.append(quoted)
        words.extend(found)
    return words


_BARE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def save_string(value: str) -> str:
    """A string argument as iptables-save prints it (xtables_save_string).

    Bare when it is non-empty and only letters, digits, `_` and `-`; otherwise double-quoted
    with `"`, `\\` and `'` backslash-escaped (verified: `--comment "a:b"`, `--comment x`).
    """
    if value and all(c in _BARE for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")
    return f'"{escaped}"'
