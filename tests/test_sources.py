"""Reading manifests: documents, List items and their origin (file, document, item, line).

Document and line numbering follow the YAML 1.2 stream model (every `---` starts a document,
even an empty one; a leading `---` does not add one) and kubectl's `kind: List` wrapper.
"""

from __future__ import annotations

import io
import json

import pytest

from netsim.errors import InputError, Source
from netsim.sources import parse_text, read_input, read_inputs


def docs(text: str, name: str = "m.yaml", **kwargs) -> list[tuple[object, Source]]:
    return [(d.data.get("kind"), d.source) for d in parse_text(text, name, **kwargs)]


def test_multi_document_lines_and_indexes():
    text = (
        "# leading comment\n"  # 1
        "apiVersion: v1\n"  # 2  document 1
        "kind: A\n"  # 3
        "---\n"  # 4
        "apiVersion: v1\n"  # 5  document 2
        "kind: B\n"  # 6
        "---\n"  # 7  document 3: empty
        "---\n"  # 8  document 4: a comment only
        "# nothing here\n"  # 9
        "---\n"  # 10
        "\n"  # 11
        "kind: C\n"  # 12 document 5
        "...\n"  # 13
    )
    assert docs(text) == [
        ("A", Source("m.yaml", 1, line=2)),
        ("B", Source("m.yaml", 2, line=5)),
        ("C", Source("m.yaml", 5, line=12)),
    ]


def test_leading_separator_starts_no_empty_document():
    assert docs("---\nkind: A\n---\nkind: B\n") == [
        ("A", Source("m.yaml", 1, line=2)),
        ("B", Source("m.yaml", 2, line=4)),
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "---\n---\n...\n"])
def test_empty_streams_hold_no_objects(text):
    assert docs(text) == []


def test_list_items_carry_their_index_and_line():
    text = (
        "apiVersion: v1\n"  # 1
        "kind: List\n"  # 2
        "items:\n"  # 3
        "- apiVersion: v1\n"  # 4  items[0]
        "  kind: Namespace\n"  # 5
        "  metadata: {name: a}\n"  # 6
        "- {apiVersion: v1, kind: Service}\n"  # 7  items[1]
        "-\n"  # 8
        "  apiVersion: v1\n"  # 9  items[2]: its mapping starts here
        "  kind: Pod\n"  # 10
        "---\n"  # 11
        "kind: After\n"  # 12 document 2
    )
    assert docs(text) == [
        ("Namespace", Source("m.yaml", 1, 0, 4)),
        ("Service", Source("m.yaml", 1, 1, 7)),
        ("Pod", Source("m.yaml", 1, 2, 9)),
        ("After", Source("m.yaml", 2, line=12)),
    ]


def test_typed_lists_are_unwrapped_and_empty_lists_hold_nothing():
    text = "kind: PodList\napiVersion: v1\nitems:\n- {kind: Pod}\n---\nkind: List\napiVersion: v1\n"
    assert [k for k, _ in docs(text)] == ["Pod"]
    assert docs("kind: List\napiVersion: v1\nitems: []\n") == []


def test_a_kind_ending_in_list_without_items_is_an_object():
    # e.g. a custom resource kind named "AllowList": only a list wrapper has `items`
    assert [k for k, _ in docs("kind: AllowList\napiVersion: example.com/v1\nspec: {}\n")] == [
        "AllowList"
    ]


@pytest.mark.parametrize("kind", ["null", "5", "[a]", "{a: b}"])
def test_odd_kinds_are_left_to_the_parser(kind):
    # The reader does not judge kinds; it must not crash on them (the parser reports them).
    assert len(docs(f"kind: {kind}\napiVersion: v1\n")) == 1


def test_json_object_array_and_list():
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
    assert docs(json.dumps(obj), "m.json", as_json=True) == [("Namespace", Source("m.json", 1))]
    array = json.dumps([obj, {**obj, "kind": "Service"}])
    assert docs(array, "m.json", as_json=True) == [
        ("Namespace", Source("m.json", 1)),
        ("Service", Source("m.json", 2)),
    ]
    wrapped = json.dumps({"apiVersion": "v1", "kind": "List", "items": [obj, obj]}, indent=2)
    assert docs(wrapped, "m.json", as_json=True) == [
        ("Namespace", Source("m.json", 1, 0)),
        ("Namespace", Source("m.json", 1, 1)),
    ]


def test_json_text_is_recognised_without_the_suffix():
    # `kubectl get -o json > dump.yaml` or JSON on stdin
    text = '\n  {"apiVersion": "v1", "kind": "List", "items": [{"kind": "Pod"}]}\n'
    assert [k for k, _ in docs(text, "dump.yaml")] == ["Pod"]
    assert [k for k, _ in docs('[{"kind": "A"}, {"kind": "B"}]', "<stdin>")] == ["A", "B"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('{\n  "kind": "Pod",\n  "metadata": {"name": "a",}\n}\n', 3),
        ('[\n{"kind": "A"},\n\n{"kind": "B"}\n', 5),
    ],
)
def test_invalid_json_reports_its_line(text, line):
    with pytest.raises(InputError) as info:
        list(parse_text(text, "m.json", as_json=True))
    assert info.value.source.line == line
    assert f"m.json:{line}: document 1: invalid JSON at line {line}" in str(info.value)


@pytest.mark.parametrize(
    ("text", "document", "line"),
    [
        ("kind: A\n---\nkind: B\nmetadata:\n  name: x\n   bad: y\n", 2, 6),
        ("kind: A\nmetadata: [a, b\n", 1, 3),
        ("kind: A\n---\nkind: B\ndata: !Custom x\n", 2, 4),
        ("a: 1\n\tb: 2\n", 1, 2),
    ],
)
def test_invalid_yaml_reports_document_and_line(text, document, line):
    with pytest.raises(InputError) as info:
        list(parse_text(text, "m.yaml"))
    assert (info.value.source.document, info.value.source.line) == (document, line)
    assert f"invalid YAML at line {line}" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "document 1: a manifest must be a mapping, got list"),
        ("kind: A\n---\n42\n", "document 2: a manifest must be a mapping, got int"),
        ("kind: List\nitems: {a: b}\n", "document 1: items: must be a list"),
        (
            "kind: List\nitems:\n- kind: A\n- just text\n",
            "m.yaml:4: document 1 items[1]: must be a mapping, got str",
        ),
    ],
)
def test_non_mappings_are_errors(text, expected):
    with pytest.raises(InputError) as info:
        list(parse_text(text, "m.yaml"))
    assert expected in str(info.value)


# ---------------------------------------------------------------- inputs: files, dirs, stdin


def test_stdin_is_one_input():
    stdin = io.StringIO("kind: A\n---\nkind: B\n")
    (only,) = read_inputs(["-"], stdin=stdin)
    assert [(d.data["kind"], d.source) for d in only] == [
        ("A", Source("<stdin>", 1, line=1)),
        ("B", Source("<stdin>", 2, line=3)),
    ]


def test_stdin_json():
    (only,) = read_inputs(["-"], stdin=io.StringIO('{"kind": "List", "items": [{"kind": "A"}]}'))
    assert [(d.data["kind"], d.source) for d in only] == [("A", Source("<stdin>", 1, 0))]


def test_each_path_and_each_file_of_a_directory_is_one_input(tmp_path):
    root = tmp_path / "dir"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "b.yaml").write_text("kind: B\n")
    (root / "a.yml").write_text("kind: A1\n---\nkind: A2\n")
    (root / "sub" / "c.json").write_text('[{"kind": "C1"}, {"kind": "C2"}]')
    (root / "sub" / "deeper" / "d.yaml").write_text("kind: D\n")
    (root / "sub" / "notes.txt").write_text("kind: Ignored\n")
    (root / "README.md").write_text("kind: Ignored\n")
    single = tmp_path / "single.yaml"
    single.write_text("kind: S\n")
    inputs = read_inputs([str(single), str(root)])
    # kubectl apply -f dir/ walks the directory in lexical path order, file by file
    assert [[d.data["kind"] for d in docs_] for docs_ in inputs] == [
        ["S"],
        ["A1", "A2"],
        ["B"],
        ["C1", "C2"],
        ["D"],
    ]
    assert inputs[3][1].source == Source(str(root / "sub" / "c.json"), 2)
    assert [d.data["kind"] for d in read_input(str(root))] == ["A1", "A2", "B", "C1", "C2", "D"]


def test_timestamps_stay_strings():
    # go-yaml v2 (kubectl) keeps unquoted timestamps as strings when decoding into interface{}
    (doc,) = parse_text("kind: A\nat: 2024-05-01T10:00:00Z\nday: 2024-05-01\n", "m.yaml")
    assert doc.data["at"] == "2024-05-01T10:00:00Z" and doc.data["day"] == "2024-05-01"


def test_a_json_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "win.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"kind": "A"}).encode())
    (only,) = read_inputs([str(path)])
    assert [d.data["kind"] for d in only] == ["A"]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda p: p / "missing.yaml", "no such file or directory"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "directory holds no .yaml, .yml or .json"),
        (
            lambda p: (p / "bin.yaml").write_bytes(b"kind: \xff\xfe\n") and p / "bin.yaml",
            "cannot read",
        ),
    ],
)
def test_unreadable_inputs(tmp_path, setup, expected):
    path = setup(tmp_path)
    with pytest.raises(InputError) as info:
        read_inputs([str(path)])
    assert expected in str(info.value)
    assert str(path) in str(info.value)
