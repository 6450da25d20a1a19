"""Read a YAML document as a node tree and report problems by line and field.

PyYAML's ``compose`` gives nodes that carry their position in the file
(``start_mark``); a :class:`Reader` walks those nodes for a schema, turning
them into plain values and recording an :class:`~kumoflow.net.errors.Issue`
(file, line, field path, message) for anything wrong instead of stopping at
the first problem. The caller raises once, with every issue.

Field paths read like ``links[3].dst``. Strings are taken from the text as
written, so ``mac: 10:00:00:00:00:01`` stays a string instead of YAML 1.1's
base-60 integer. Duplicate keys are errors (PyYAML keeps the last silently);
merge keys (``<<: *anchor``) are expanded.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kumoflow.net.errors import Issue

_TAG = "tag:yaml.org,2002:"
_NULL, _BOOL, _INT, _STR = _TAG + "null", _TAG + "bool", _TAG + "int", _TAG + "str"


def field_key(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def field_index(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


def line_of(node: Node | None) -> int:
    """1-based line where ``node`` starts (0 when unknown)."""
    return node.start_mark.line + 1 if node is not None else 0


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return repr(node.value)


class Reader:
    """Collects issues for one file while reading its nodes."""

    def __init__(self, filename: str):
        self.filename = filename
        self.issues: list[Issue] = []
        self._constructor = SafeConstructor()
        self._merged: dict[int, int] = {}

    # -- reporting ----------------------------------------------------------

    def error(self, where: Node | int | None, field: str, message: str) -> None:
        line = where if isinstance(where, int) else line_of(where)
        self.issues.append(Issue(self.filename, line, field, message))

    # -- document -----------------------------------------------------------

    def parse(self, text: str) -> Node | None:
        """Compose ``text``; None (with an issue) when it is not valid YAML."""
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 0
            problem = " ".join(p for p in (exc.context, exc.problem) if p)
            self.error(line, "", f"invalid YAML: {problem}")
            return None
        except yaml.YAMLError as exc:
            self.error(0, "", f"invalid YAML: {exc}")
            return None
        if node is None:
            self.error(1, "", "the file is empty")
        return node

    # -- containers ---------------------------------------------------------

    def mapping(
        self,
        node: Node,
        field: str,
        required: Iterable[str] = (),
        optional: Iterable[str] = (),
    ) -> dict[str, Node] | None:
        """The keys of a mapping node, checked against the allowed keys.

        Unknown keys, duplicate keys and missing required keys are reported;
        the returned dict holds only the allowed keys that are present.
        """
        if not isinstance(node, MappingNode):
            self.error(node, field, f"expected a mapping, got {_describe(node)}")
            return None
        merged = self._flatten(node, field)
        if merged is None:
            return None
        required, optional = list(required), list(optional)
        allowed = required + optional
        found: dict[str, Node] = {}
        seen: set[str] = set()
        explicit_line: dict[str, int] = {}
        for position, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, ScalarNode) or key_node.tag == _NULL:
                self.error(key_node, field, f"keys must be names, got {_describe(key_node)}")
                continue
            key = key_node.value
            path = field_key(field, key)
            if position >= merged:  # written in this mapping, not merged in
                if key in explicit_line:
                    self.error(key_node, path, f"duplicate key (first given on line {explicit_line[key]})")
                    continue
                explicit_line[key] = line_of(key_node)
            if key not in allowed:
                if key not in seen:
                    self.error(key_node, path, _unknown_key_message(key, allowed))
                seen.add(key)
                continue
            seen.add(key)
            found[key] = value_node  # later entries win: explicit over merged
        for key in required:
            if key not in seen:
                self.error(node, field_key(field, key), "missing required field")
        return found

    def _flatten(self, node: MappingNode, field: str) -> int | None:
        """Expand merge keys in place; return how many leading entries of
        ``node.value`` came from merges (remembered: aliases revisit nodes)."""
        if id(node) in self._merged:
            return self._merged[id(node)]
        explicit = sum(1 for k, _ in node.value if k.tag != _TAG + "merge")
        try:
            self._constructor.flatten_mapping(node)
        except ConstructorError as exc:
            mark = exc.problem_mark
            self.error(mark.line + 1 if mark else line_of(node), field, str(exc.problem))
            return None
        self._merged[id(node)] = len(node.value) - explicit
        return self._merged[id(node)]

    def sequence(self, node: Node, field: str) -> list[Node] | None:
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            return []
        if not isinstance(node, SequenceNode):
            self.error(node, field, f"expected a list, got {_describe(node)}")
            return None
        return list(node.value)

    # -- scalars ------------------------------------------------------------

    def string(self, node: Node, field: str) -> str | None:
        """The scalar's text as written (never converted to a number or date)."""
        if not isinstance(node, ScalarNode):
            self.error(node, field, f"expected a string, got {_describe(node)}")
            return None
        if node.tag == _NULL:
            self.error(node, field, "missing value")
            return None
        return node.value

    def is_null(self, node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == _NULL

    def integer(
        self,
        node: Node,
        field: str,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        if not isinstance(node, ScalarNode) or node.tag != _INT:
            self.error(node, field, f"expected an integer, got {_describe(node)}")
            return None
        value = self._constructor.construct_yaml_int(node)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.error(node, field, f"{value} is out of range {minimum}..{maximum}")
            return None
        return value

    def boolean(self, node: Node, field: str) -> bool | None:
        if not isinstance(node, ScalarNode) or node.tag != _BOOL:
            self.error(node, field, f"expected true or false, got {_describe(node)}")
            return None
        return self._constructor.construct_yaml_bool(node)

    def is_int(self, node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == _INT


def _unknown_key_message(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field (allowed: {', '.join(allowed)}){hint}"
