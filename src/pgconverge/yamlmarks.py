"""YAML loading that remembers where every value came from (line:col), for errors a user can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]
MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class Mark:
    line: int
    col: int


class YamlError(Exception):
    def __init__(self, message: str, mark: Mark | None = None):
        super().__init__(message)
        self.message = message
        self.mark = mark


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def load_with_marks(text: str) -> tuple[Any, dict[Path, Mark]]:
    """Parse one YAML document into plain data plus a map from data path to the mark of its value.

    Keys are also recorded, under the path of their value with the last element ``("key", name)``
    wrapped, so an unknown key can be pointed at exactly.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlError(f"file is larger than {MAX_BYTES} bytes — split it or remove unused content")
    try:
        # Anchors and aliases let a few lines expand into millions of nodes; a desired-state file needs none.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                m = event.start_mark
                assert m is not None
                raise YamlError(
                    "YAML anchors and aliases are not allowed — write the value out in full",
                    Mark(m.line + 1, m.column + 1),
                )
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        found = exc.problem_mark or exc.context_mark
        where = Mark(found.line + 1, found.column + 1) if found else None
        raise YamlError(f"invalid YAML: {exc.problem or exc.context} — fix the syntax", where) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc} — fix the syntax") from None
    if len(documents) != 1 or documents[0] is None:
        raise YamlError("expected exactly one YAML document with a mapping at the top — see phases.yml in the repo")
    marks: dict[Path, Mark] = {}
    return _to_data(documents[0], (), marks), marks


def _to_data(node: yaml.Node, path: Path, marks: dict[Path, Mark]) -> Any:
    marks[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError("a mapping key must be a plain word", _mark(key_node))
            # Keys are names: YAML 1.1 would read `on:` as True, so take the key's text as written.
            key = str(key_node.value)
            if key in result:
                raise YamlError(f"duplicate key '{key}' — keep one of them", _mark(key_node))
            marks[(*path, ("key", key))] = _mark(key_node)  # type: ignore[arg-type]
            result[key] = _to_data(value_node, (*path, key), marks)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(item, (*path, i), marks) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    try:
        return yaml.SafeLoader(stream="").construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise YamlError(f"cannot read value: {exc} — quote it", _mark(node)) from None
