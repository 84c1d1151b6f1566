"""Validation of composed YAML nodes, reporting file, line, field and expectation.

YAML's type guessing is never allowed to change meaning: a plain scalar that YAML
reads as a number, boolean, date or null where a string is expected is an error that
says to quote it.
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from pathlib import Path

import yaml

STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class Checker:
    """Walks composed YAML nodes and collects problems with their line numbers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.suggested: set[str] = set()  # keys offered for a misspelt key

    def problem(self, node: yaml.Node | None, where: str, message: str) -> None:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        self.problems.append(f"{self.path}{line}: {where}: {message}")

    def mapping(
        self, node: yaml.Node, where: str, allowed: tuple[str, ...] | None = None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The pairs of a mapping node by key; unknown keys are reported."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, where, f"expected a mapping, got {kind(node)}")
            return {}
        pairs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.string(key_node, f"{where} key")
            if key is None:
                continue
            name = f"{where}.{key}" if where else key
            if key in pairs:
                self.problem(key_node, name, "appears twice; keep one")
                continue
            if allowed is not None and key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                self.suggested.update(hint)
                fix = (
                    f"did you mean {hint[0]!r}?"
                    if hint
                    else f"allowed: {', '.join(allowed)}"
                )
                self.problem(key_node, name, f"unknown key; {fix}")
                continue
            pairs[key] = (key_node, value_node)
        return pairs

    def string(
        self,
        node: yaml.Node,
        where: str,
        pattern: re.Pattern[str] | None = None,
        expected: str = "a string",
    ) -> str | None:
        """A scalar that YAML read as a string, optionally matching a pattern."""
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, where, f"expected {expected}, got {kind(node)}")
            return None
        if node.tag != STR:
            guessed = kind(node)
            self.problem(
                node,
                where,
                f"expected {expected}, but YAML reads {node.value!r} as {guessed}; "
                f'write it in quotes: "{node.value}"',
            )
            return None
        value: str = node.value
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(node, where, f"expected {expected}, got {value!r}")
            return None
        return value

    def sequence(self, node: yaml.Node, where: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, where, f"expected a list, got {kind(node)}")
            return []
        return list(node.value)

    def inside(self, node: yaml.Node, where: str, kind: str = "file") -> Path | None:
        """A path relative to the spec folder that exists and stays inside it."""
        value = self.string(
            node, where, expected=f"a {kind} path inside the spec folder"
        )
        if value is None:
            return None
        folder = self.path.parent.resolve()
        candidate = (folder / value).resolve()
        if Path(value).is_absolute() or not candidate.is_relative_to(folder):
            self.problem(
                node,
                where,
                f"{value!r} is outside the spec folder {folder}; "
                "copy the file into the folder and name it relative to it",
            )
            return None
        exists = candidate.is_dir() if kind == "folder" else candidate.is_file()
        if not exists:
            self.problem(node, where, f"{kind} {value!r} not found in {folder}")
            return None
        return candidate

    def integer(self, node: yaml.Node, where: str, low: int, high: int) -> int | None:
        """A whole number in [low, high]."""
        if not isinstance(node, yaml.ScalarNode) or node.tag != _INT:
            self.problem(node, where, f"expected a whole number, got {kind(node)}")
            return None
        try:
            if len(node.value) > 1 and node.value.startswith("0"):
                raise ValueError("YAML reads a leading 0 as octal")
            value = int(node.value.replace("_", ""), 10)
        except ValueError:
            self.problem(
                node, where, f"expected a whole number in decimal, got {node.value!r}"
            )
            return None
        if not low <= value <= high:
            self.problem(node, where, f"expected {low} to {high}, got {value}")
            return None
        return value

    def boolean(self, node: yaml.Node, where: str) -> bool | None:
        """true or false."""
        if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
            self.problem(node, where, f"expected true or false, got {kind(node)}")
            return None
        return node.value.lower() in ("true", "yes", "on")

    def day(self, node: yaml.Node, where: str) -> date | None:
        """A calendar date, YYYY-MM-DD (quoted or not)."""
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (STR, _TIMESTAMP):
            self.problem(node, where, f"expected a date YYYY-MM-DD, got {kind(node)}")
            return None
        try:
            return date.fromisoformat(node.value)
        except ValueError:
            self.problem(node, where, f"expected a date YYYY-MM-DD, got {node.value!r}")
            return None

    def strings(
        self,
        node: yaml.Node,
        where: str,
        pattern: re.Pattern[str] | None = None,
        expected: str = "a string",
    ) -> list[str]:
        """A list of strings."""
        found = []
        for i, item in enumerate(self.sequence(node, where)):
            value = self.string(item, f"{where}[{i}]", pattern, expected)
            if value is not None:
                found.append(value)
        return found


def kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return {
        "tag:yaml.org,2002:int": "a number",
        "tag:yaml.org,2002:float": "a number",
        "tag:yaml.org,2002:bool": "a boolean",
        "tag:yaml.org,2002:null": "nothing (null)",
        "tag:yaml.org,2002:timestamp": "a date",
    }.get(node.tag, "a string")
