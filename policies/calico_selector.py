"""Calico's label selector language: parse, evaluate and print selector expressions.

Grammar (libcalico-go lib/selector/parser, the tokenizer in lib/selector/tokenizer):
`k == 'v'`, `k != 'v'` (true when k is absent), `k in {'a', 'b'}`, `k not in {...}`,
`has(k)`, `!has(k)`, `k contains 's'`, `k starts with 's'`, `k ends with 's'`, `all()`,
`global()`, `&&`, `||`, `!` and parentheses; `!` binds tightest, then `&&`, then `||`.
Strings take single or double quotes. Printing follows the parser's String() forms
(`k == "v"`, `(a && b)`, `k in {"a", "b"}` with the set sorted), which is what felix hashes
into IP set names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


class SelectorError(ValueError):
    """A selector that does not parse; the message names the position."""


class Expr:
    """A parsed selector: `matches(labels)` and its canonical text (str)."""

    __slots__ = ()

    def matches(self, labels: Mapping[str, str]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class All(Expr):
    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True, slots=True)
class Global(Expr):
    """global(): matches non-namespaced resources (no workload endpoint has no namespace)."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return "projectcalico.org/namespace" not in labels

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True, slots=True)
class Has(Expr):
    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True, slots=True)
class Compare(Expr):
    """key OP value for ==, !=, contains, starts with, ends with."""

    key: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.key)
        if self.op == "!=":  # true when the label is absent (libcalico-go LabelNeValueNode)
            return have != self.value
        if have is None:
            return False
        if self.op == "==":
            return have == self.value
        if self.op == "contains":
            return self.value in have
        if self.op == "starts with":
            return have.startswith(self.value)
        return have.endswith(self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.op} {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class InSet(Expr):
    key: str
    values: tuple[str, ...]  # sorted, distinct
    negated: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.key)
        if self.negated:  # `not in` is true when the label is absent
            return have is None or have not in self.values
        return have is not None and have in self.values

    def __str__(self) -> str:
        values = ", ".join(_quote(v) for v in self.values)
        return f"{self.key} {'not in' if self.negated else 'in'} {{{values}}}"


@dataclass(frozen=True, slots=True)
class Not(Expr):
    inner: Expr

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.inner.matches(labels)

    def __str__(self) -> str:
        return f"!{self.inner}"


@dataclass(frozen=True, slots=True)
class And(Expr):
    parts: tuple[Expr, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(p.matches(labels) for p in self.parts)

    def __str__(self) -> str:
        return "(" + " && ".join(str(p) for p in self.parts) + ")"


@dataclass(frozen=True, slots=True)
class Or(Expr):
    parts: tuple[Expr, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(p.matches(labels) for p in self.parts)

    def __str__(self) -> str:
        return "(" + " || ".join(str(p) for p in self.parts) + ")"


def _quote(value: str) -> str:
    return '"' + value + '"' if '"' not in value else "'" + value + "'"


def conjunction(*parts: Expr) -> Expr:
    """The AND of expressions, flattening nested ANDs and dropping all() terms."""
    flat: list[Expr] = []
    for p in parts:
        if isinstance(p, All):
            continue
        flat.extend(p.parts if isinstance(p, And) else (p,))
    if not flat:
        return All()
    return flat[0] if len(flat) == 1 else And(tuple(flat))


# ---------------------------------------------------------------- tokenizer and parser

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>"[^"]*"|'[^']*')
    | (?P<op>==|!=|&&|\|\||[!(){},])
    | (?P<kw>(?:has|all|global)\s*\()
    | (?P<word>[A-Za-z0-9_./\-]+)
    )""", re.X)
_KEY = re.compile(r"[A-Za-z0-9_.\-/]+\Z")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SelectorError(f"unexpected character {text[pos:].lstrip()[:1]!r} at "
                                f"position {pos}")
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "kw":
            value = value.rstrip("( \t")
        out.append((kind, value, m.start(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str, int] | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise SelectorError("unexpected end of selector")
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        tok = self.take()
        if tok[1] != value:
            raise SelectorError(f"expected {value!r} at position {tok[2]}, got {tok[1]!r}")

    def error(self, what: str) -> SelectorError:
        tok = self.peek()
        where = f"position {tok[2]} ({tok[1]!r})" if tok else "the end"
        return SelectorError(f"expected {what} at {where}")

    def parse(self) -> Expr:
        if not self.tokens:
            return All()  # the empty selector selects everything
        expr = self.or_expr()
        if self.peek() is not None:
            raise self.error("&&, || or the end")
        return expr

    def or_expr(self) -> Expr:
        parts = [self.and_expr()]
        while (tok := self.peek()) is not None and tok[1] == "||":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Expr:
        parts = [self.unary()]
        while (tok := self.peek()) is not None and tok[1] == "&&":
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise self.error("an expression")
        kind, value, _ = tok
        if value == "!":
            self.take()
            return Not(self.unary())
        if value == "(":
            self.take()
            inner = self.or_expr()
            self.expect(")")
            return inner
        if kind == "kw":
            self.take()
            if value == "has":
                key = self.take()
                if key[0] != "word" or not _KEY.match(key[1]):
                    raise SelectorError(f"has() needs a label key at position {key[2]}")
                self.expect(")")
                return Has(key[1])
            self.expect(")")
            return All() if value == "all" else Global()
        if kind != "word":
            raise self.error("a label key, has(), all() or (")
        return self.comparison()

    def comparison(self) -> Expr:
        key = self.take()[1]
        tok = self.take()
        op = tok[1]
        if op in ("==", "!="):
            return Compare(key, op, self.string())
        if op == "in":
            return InSet(key, self.set_literal())
        if op == "not":
            self.expect("in")
            return InSet(key, self.set_literal(), negated=True)
        if op == "contains":
            return Compare(key, "contains", self.string())
        if op in ("starts", "ends"):
            self.expect("with")
            return Compare(key, f"{op} with", self.string())
        raise SelectorError(f"expected an operator after {key!r} at position {tok[2]}, "
                            f"got {op!r}")

    def string(self) -> str:
        tok = self.take()
        if tok[0] != "str":
            raise SelectorError(f"expected a quoted string at position {tok[2]}")
        return tok[1][1:-1]

    def set_literal(self) -> tuple[str, ...]:
        self.expect("{")
        values: list[str] = []
        if (tok := self.peek()) is not None and tok[1] == "}":
            self.take()
            return ()
        while True:
            values.append(self.string())
            tok = self.take()
            if tok[1] == "}":
                break
            if tok[1] != ",":
                raise SelectorError(f"expected , or }} at position {tok[2]}")
        return tuple(sorted(set(values)))


def parse(text: str) -> Expr:
    """The expression of a selector string; SelectorError (a ValueError) if it is invalid."""
    return _Parser(text).parse()


def canonical(text: str) -> str:
    """The selector as libcalico-go prints it after parsing (what felix hashes)."""
    return str(parse(text))
