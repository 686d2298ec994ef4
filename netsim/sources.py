"""Read manifests from files, directories and stdin into plain objects that know their origin."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from netsim.errors import InputError, Source

try:  # PyYAML's C loader is ~10x faster; fall back to the pure-Python one
    _BaseLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _BaseLoader = yaml.SafeLoader

_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """YAML as kubectl reads it: an unquoted timestamp stays a string.

    go-yaml v2 (under sigs.k8s.io/yaml) keeps timestamp-looking scalars as strings when it
    decodes into interface{}, so `labels: {built: 2024-01-01}` is a valid label there.
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class RawDoc:
    """One Kubernetes object as parsed, with where it came from."""

    data: dict
    source: Source


def read_inputs(paths: list[str], stdin: Any = None) -> list[list[RawDoc]]:
    """One list of objects per input, in apply order.

    Each file is one input, and a directory gives one input per file in path order, as
    `kubectl apply -f dir/` applies its files one after another: a later file may replace
    an object of an earlier one (alternative manifests kept side by side in one folder).
    """
    return [list(docs) for p in paths for docs in _inputs_of(p, stdin)]


def _inputs_of(path: str, stdin: Any) -> Iterator[Iterator[RawDoc]]:
    if path == "-":
        yield parse_text((stdin or sys.stdin).read(), "<stdin>")
        return
    p = Path(path)
    if p.is_dir():
        # hidden folders and files (.git, .github/workflows) hold no cluster's manifests
        files = sorted(f for f in p.rglob("*") if f.suffix in MANIFEST_SUFFIXES and f.is_file()
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
        if not files:
            raise InputError("directory holds no .yaml, .yml or .json files",
                             source=Source(str(p)))
        for f in files:
            yield _read_file(f)
    elif p.exists():
        yield _read_file(p)
    else:
        raise InputError("no such file or directory", source=Source(path))


def read_input(path: str, stdin: Any = None) -> Iterator[RawDoc]:
    """Every object of one -f argument (all files of a directory, in path order)."""
    for docs in _inputs_of(path, stdin):
        yield from docs


def _read_file(path: Path) -> Iterator[RawDoc]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is no content
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", source=Source(str(path))) from None
    yield from parse_text(text, str(path), as_json=path.suffix == ".json")


def parse_text(text: str, name: str, as_json: bool = False) -> Iterator[RawDoc]:
    """Every object in a YAML stream or JSON text, unwrapping `kind: List`."""
    if as_json or text.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if as_json:
                raise InputError(f"invalid JSON at line {exc.lineno} column {exc.colno}: "
                                 f"{exc.msg}", source=Source(name, line=exc.lineno)) from None
        else:
            docs = data if isinstance(data, list) else [data]
            for i, doc in enumerate(docs, 1):
                yield from _objects(doc, Source(name, i), None)
            return
    loader = _Loader(text)
    try:
        index = 0  # documents read so far: an error is in document index + 1
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)  # may fail too (an unknown !tag)
            index += 1
            yield from _objects(data, Source(name, index, line=node.start_mark.line + 1), node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        where = f" at line {line} column {mark.column + 1}" if mark else ""
        raise InputError(f"invalid YAML{where}: {exc.problem or exc.context}",
                         source=Source(name, index + 1, line=line)) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", source=Source(name, index + 1)) from None
    finally:
        loader.dispose()


def _objects(data: Any, source: Source, node: Any) -> Iterator[RawDoc]:
    if data is None:  # an empty document (a stray ---) is no object
        return
    if not isinstance(data, dict):
        raise InputError(f"a manifest must be a mapping, got {type(data).__name__}",
                         source=source)
    kind = data.get("kind")
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List")
                          and isinstance(data.get("items"), list)):
        items = data.get("items")
        if items is None:  # an empty List (`items` omitted or null)
            items = []
        if not isinstance(items, list):
            raise InputError("must be a list", source=source, field="items")
        lines = _item_lines(node)
        for i, item in enumerate(items):
            line = lines[i] if i < len(lines) else source.line
            item_source = Source(source.file, source.document, i, line)
            if not isinstance(item, dict):
                raise InputError(f"must be a mapping, got {type(item).__name__}",
                                 source=item_source)
            if item.get("kind") == "List":  # kubectl flattens nested Lists
                yield from _objects(item, item_source, None)
            else:
                yield RawDoc(item, item_source)
        return
    yield RawDoc(data, source)


def _item_lines(node: Any) -> list[int]:
    """The line each element of a List's `items` starts on (YAML only)."""
    if node is None or not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if getattr(key, "value", None) == "items" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []
