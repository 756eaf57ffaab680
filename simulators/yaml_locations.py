"""Where a key sits in a YAML file, and pydantic errors turned into located problems with a fix.

PyYAML's node tree keeps line numbers that plain ``safe_load`` loses; a scenario error is only
useful if it says which line to fix.
"""

from __future__ import annotations

from typing import Any

import yaml

from simulators.errors import Problem
from simulators.scenario_schema import allowed_keys


def pydantic_problem(error: Any, lines: dict[str, int]) -> Problem:
    key = _dotted(tuple(error["loc"]))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        allowed = allowed_keys(parent)
        message = f"unknown key. Fix: remove it or use one of {allowed}"
    elif error["type"] == "missing":
        message = "is required. Fix: add it"
    elif "Fix:" not in message:
        message = f"{message} (got {error.get('input')!r}). Fix: correct the value"
    return Problem(key, message, line_of(key, lines))


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"list[str]", "dict[str,str]"}:
            continue  # pydantic's union branch names are not keys
        else:
            out += f".{part}" if out else str(part)
    return out


def key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """1-based line of every key and list item in the YAML tree, by dotted key."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            lines[key] = key_node.start_mark.line + 1
            lines.update(key_lines(value_node, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}[{i}]"
            lines[key] = item.start_mark.line + 1
            lines.update(key_lines(item, key))
    return lines


def line_of(key: str, lines: dict[str, int]) -> int | None:
    while key:
        if key in lines:
            return lines[key]
        key = key.rsplit(".", 1)[0] if "." in key else key.rsplit("[", 1)[0] if "[" in key else ""
    return None
