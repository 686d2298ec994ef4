"""Typed reads of one manifest: wrong shapes become InputErrors that name the field path."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any

from netsim.errors import InputError, Source

_MISSING: Any = object()
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "a mapping",
               list: "a list"}


class FrozenDict(dict):
    """A dict that refuses changes and can be hashed: labels and other maps in the model."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("netsim model objects are read-only")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


EMPTY = FrozenDict()


def freeze(value: Any) -> Any:
    """Deep-freeze parsed YAML/JSON: mappings to FrozenDict, lists to tuples."""
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of freeze: plain dicts and lists again, for reading a kept-raw object's
    body with Fields (which reports the field path of anything wrong)."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


class Fields:
    """A read view of a mapping inside one object, remembering its path for error messages."""

    __slots__ = ("data", "obj", "path", "source")

    def __init__(self, data: Any, source: Source | None, obj: str | None, path: str = "") -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(f"must be a mapping, got {_describe(data)}", source=source, obj=obj,
                             field=path or None)
        self.data = data
        self.source = source
        self.obj = obj
        self.path = path

    def error(self, key: str | None, message: str) -> InputError:
        return InputError(message, source=self.source, obj=self.obj, field=self._join(key))

    def _join(self, key: str | None) -> str | None:
        if key is None:
            return self.path or None
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _get(self, key: str, kind: type | tuple[type, ...], required: bool, default: Any) -> Any:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(key, "required field is missing")
            return default
        if isinstance(value, bool) and kind is int:
            raise self.error(key, f"must be an integer, got {_describe(value)}")
        if not isinstance(value, kind):
            want = _TYPE_NAMES.get(kind, str(kind)) if isinstance(kind, type) else "a scalar"
            raise self.error(key, f"must be {want}, got {_describe(value)}")
        return value

    def str(self, key: str, *, required: bool = False, default: Any = None) -> Any:
        return self._get(key, str, required, default)

    def bool(self, key: str, *, default: bool = False) -> bool:
        return self._get(key, bool, False, default)

    def int(self, key: str, *, required: bool = False, default: Any = None,
            lo: int | None = None, hi: int | None = None) -> Any:
        value = self._get(key, int, required, default)
        if value is not None and value is not default:
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise self.error(key, f"must be between {lo} and {hi}, got {value}")
        return value

    def enum(self, key: str, allowed: tuple[str, ...], *, default: Any = None,
             required: bool = False) -> Any:
        value = self.str(key, required=required, default=default)
        if value is not None and value not in allowed:
            raise self.error(key, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def int_or_str(self, key: str, *, required: bool = False) -> int | str | None:
        """An IntOrString port: a number 1-65535 or an IANA service name."""
        value = self._get(key, (int, str), required, None)
        if value is None:
            return None
        if isinstance(value, bool):
            raise self.error(key, f"must be a port number or name, got {_describe(value)}")
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int):
            if not 1 <= value <= 65535:
                raise self.error(key, f"must be between 1 and 65535, got {value}")
            return value
        if not (len(value) <= 15 and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", value)
                and re.search(r"[a-z]", value) and "--" not in value):
            raise self.error(key, f"must be a port number or an IANA port name, got {value!r}")
        return value

    def sub(self, key: str) -> Fields:
        """A nested mapping (empty when absent)."""
        return Fields(self._get(key, dict, False, {}), self.source, self.obj, self._join(key))

    def opt_sub(self, key: str) -> Fields | None:
        """A nested mapping, or None when absent (for API fields where null differs from {})."""
        if self.data.get(key) is None:
            return None
        return self.sub(key)

    def list(self, key: str, *, required: bool = False) -> list:
        return self._get(key, list, required, [])

    def items(self, key: str, *, required: bool = False) -> Iterator[Fields]:
        """Each mapping in a list field, as Fields with the index in its path."""
        base = self._join(key)
        for i, item in enumerate(self.list(key, required=required)):
            if not isinstance(item, dict):
                raise InputError(f"must be a mapping, got {_describe(item)}", source=self.source,
                                 obj=self.obj, field=f"{base}[{i}]")
            yield Fields(item, self.source, self.obj, f"{base}[{i}]")

    def str_list(self, key: str) -> tuple[str, ...]:
        values = self.list(key)
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise self.error(f"{key}[{i}]", f"must be a string, got {_describe(v)}")
        return tuple(values)

    def ip(self, key: str, *, required: bool = False) -> str | None:
        """An IP address; an empty string means unset, as the API server reads it."""
        value = self.str(key, required=required)
        if value == "" and not required:
            return None
        return None if value is None else self.check_ip(key, value)

    def check_ip(self, key: str, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise self.error(key, f"must be an IP address, got {value!r}") from None

    def ip_list(self, key: str) -> tuple[str, ...]:
        return tuple(self.check_ip(f"{key}[{i}]", v) for i, v in enumerate(self.str_list(key)))

    def cidr(self, key: str, value: str, *, strict: bool = False) -> str:
        try:
            return str(ipaddress.ip_network(value, strict=strict))
        except ValueError as exc:
            raise self.error(key, f"must be a CIDR, got {value!r} ({exc})") from None

    def cidr_list(self, key: str, *, strict: bool = False) -> tuple[str, ...]:
        return tuple(self.cidr(f"{key}[{i}]", v, strict=strict)
                     for i, v in enumerate(self.str_list(key)))

    def string_map(self, key: str) -> FrozenDict:
        """A map of strings to strings (annotations, nodeSelector)."""
        raw = self._get(key, dict, False, None)
        if not raw:
            return EMPTY
        for k, v in raw.items():
            if not isinstance(v, str):
                raise self.error(f"{key}.{k}", f"must be a string, got {_describe(v)} "
                                 "(quote it in YAML)")
        return FrozenDict(raw)

    def labels(self, key: str) -> FrozenDict:
        """A label map, validated as the API server does (name/value syntax and length)."""
        labels = self.string_map(key)
        for k, v in labels.items():
            prefix, _, name = k.rpartition("/")
            if (not _LABEL_NAME.match(name) or len(name) > 63
                    or (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)))):
                raise self.error(f"{key}.{k}", "invalid label key")
            if len(v) > 63 or not _LABEL_VALUE.match(v):
                raise self.error(f"{key}.{k}", f"invalid label value {v!r}")
        return labels


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {value}"
    for kind, name in ((dict, "a mapping"), (list, "a list"), (str, "string"),
                       (int, "integer"), (float, "number")):
        if isinstance(value, kind):
            return name if kind in (dict, list) else f"{name} {value!r}"
    return type(value).__name__
