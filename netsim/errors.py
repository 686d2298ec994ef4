"""The one exception type for bad input, naming where in the input the problem is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Source:
    """Where an object came from: file, 1-based document, item index in a List, line."""

    file: str
    document: int = 1
    item: int | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        where += f": document {self.document}"
        if self.item is not None:
            where += f" items[{self.item}]"
        return where


class InputError(Exception):
    """Bad input: a message naming the file, document, object and field path.

    The CLI prints str(error) on one line and exits 2; nothing else catches it.
    """

    def __init__(
        self,
        message: str,
        *,
        source: Source | None = None,
        obj: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.obj = obj
        self.field = field

    def __str__(self) -> str:
        parts = [str(self.source)] if self.source else []
        if self.obj:
            parts.append(self.obj)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)

    def at(self, *, source: Source | None = None, obj: str | None = None) -> InputError:
        """The same error with the location filled in where it was missing."""
        return InputError(
            self.message,
            source=self.source or source,
            obj=self.obj or obj,
            field=self.field,
        )
