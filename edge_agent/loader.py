"""Load a YAML config into ``AgentConfig`` and explain every mistake as ``file:line: key: problem. Fix: ...``.

Why not just ``model_validate``: an operator on a line PC gets a pydantic dump with tuple
locations and no line numbers. Here each problem names the file, the line, the dotted key and
a fix (with the nearest valid key for typos), and all problems are reported at once.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from connectors.modbus.config import ModbusTag
from connectors.opcua.config import OpcUaTag
from edge_agent.config import AgentConfig
from edge_agent.errors import ConfigError

Location = tuple[str | int, ...]
_REFERENCE = re.compile(r"\$\{([^}]*)\}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1}); remove one of them",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_index(node: yaml.Node, path: Location = ()) -> Iterator[tuple[Location, int]]:
    """Yield (location, 1-based line) for every key and item of the YAML tree."""
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            yield (*path, key), key_node.start_mark.line + 1
            for sub_path, line in _line_index(value_node, (*path, key)):
                if sub_path != (*path, key):
                    yield sub_path, line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _line_index(item, (*path, index))


def _resolve_reference(expression: str, where: str) -> str:
    """``NAME`` or ``NAME:-default`` from the environment, or ``file:/path`` contents."""
    if expression.startswith("file:"):
        path = Path(expression[5:])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(
                f"{where}: cannot read secret file {str(path)!r} ({exc.strerror}). Fix: create it or correct the path"
            ) from exc
    name, has_default, default = expression.partition(":-")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"{where}: ${{{expression}}} is not a valid reference. Fix: use ${{NAME}} or ${{file:/path}}")
    if name in os.environ:
        return os.environ[name]
    if has_default:
        return default
    raise ValueError(
        f"{where}: environment variable {name} is not set. Fix: export {name}=... "
        f"(or write ${{{name}:-default}} to give a default)"
    )


def _expand(data: Any, path: Location, problems: list[tuple[Location, str]]) -> Any:
    """Replace ``${...}`` references in every string; collect problems instead of stopping at the first."""
    if isinstance(data, dict):
        return {key: _expand(value, (*path, key), problems) for key, value in data.items()}
    if isinstance(data, list):
        return [_expand(value, (*path, index), problems) for index, value in enumerate(data)]
    if isinstance(data, str) and "${" in data:
        try:
            return _REFERENCE.sub(lambda m: _resolve_reference(m.group(1), _dotted(path)), data)
        except ValueError as exc:
            problems.append((path, str(exc).split(": ", 1)[1]))
            return data
    return data


def _dotted(location: Location) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types behind Optional / Union / Annotated / list[...] of a field."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [t for arg in get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _model_at(location: Location) -> tuple[type[BaseModel] | None, Location]:
    owner, clean, _ = _walk(location)
    return owner, clean


def _value_model(location: Location) -> type[BaseModel] | None:
    """The model that the value at ``location`` must be (e.g. ModbusTag for machines[0].tags[1])."""
    _, _, candidates = _walk(location)
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _walk(location: Location) -> tuple[type[BaseModel] | None, Location, list[Any]]:
    """Walk the config models along a pydantic error location.

    Returns the model owning the last key, and the location with pydantic's discriminator
    entries (e.g. 'modbus' after a machine index) removed, so it matches the YAML.
    """
    candidates: list[Any] = [AgentConfig]
    clean: list[str | int] = []
    owner: type[BaseModel] | None = AgentConfig
    for part in location:
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if isinstance(part, int):
            items = [get_args(c)[0] for c in candidates if get_origin(c) is list]
            candidates = [t for item in items for t in _unwrap(item)]
            clean.append(part)
            continue
        tagged = [m for m in models if _type_literal(m) == part]
        if tagged and len(models) > 1:
            candidates = tagged
            owner = tagged[0]
            continue
        clean.append(part)
        owner = models[0] if models else None
        field = owner.model_fields.get(part) if owner else None
        candidates = _unwrap(field.annotation) if field else []
    return owner, tuple(clean), candidates


def _type_literal(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None:
        return None
    args = get_args(field.annotation)
    return str(args[0]) if args else None


def _describe(error: ErrorDetails) -> tuple[Location, str]:
    """One pydantic error as (YAML location, 'problem. Fix: ...')."""
    owner, location = _model_at(tuple(error["loc"]))
    kind = error["type"]
    key = location[-1] if location else ""
    if kind == "extra_forbidden":
        parent = _value_model(tuple(error["loc"])[:-1])
        valid = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
        fix = f"did you mean {close[0]!r}?" if close else f"valid keys here: {', '.join(valid)}"
        return location, f"unknown key {key!r}. Fix: {fix}"
    if kind == "missing":
        description = owner.model_fields[str(key)].description if owner and str(key) in owner.model_fields else None
        hint = f" ({description})" if description else ""
        return location, f"required key {key!r} is missing{hint}. Fix: add it"
    if kind == "union_tag_invalid":
        return location, f"{error['msg']}. Fix: set type to one of the listed protocols"
    if kind == "union_tag_not_found":
        return location, "this machine has no 'type'. Fix: add type: opcua or type: modbus"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
        location = _named_key(location, tuple(error["loc"]), message)
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) or "Fix:" in message else f" (got {got!r})"
    fix = "" if "Fix:" in message else f". Fix: {_FIXES.get(kind, 'correct the value')}"
    return location, f"{message}{shown}{fix}"


def _named_key(location: Location, loc: Location, message: str) -> Location:
    """A check across a section's keys (a model validator) reports at the section; when its message
    starts with one of the section's keys ("learn_after 150s gives ..."), report at that key."""
    model = _value_model(loc)
    key = message.split(" ", 1)[0]
    if model is not None and key in model.model_fields:
        return (*location, key)
    return location


_FIXES = {
    "literal_error": "use one of the values listed",
    "less_than_equal": "use a smaller value within the allowed range",
    "greater_than_equal": "use a larger value within the allowed range",
    "greater_than": "use a larger value",
    "less_than": "use a smaller value",
    "string_pattern_mismatch": "use only letters, digits, '_', '-' and '.' (no '/', '+', '#' or spaces)",
    "too_short": "add at least one entry",
    "bool_parsing": "write true or false",
    "int_parsing": "write a whole number",
    "float_parsing": "write a number",
    "string_type": "write a text value (quote it if it looks like a number)",
    "model_type": "write a mapping of keys here",
    "list_type": "write a list here (lines starting with '- ')",
}


def _semantic_problems(config: AgentConfig) -> list[tuple[Location, str]]:
    """Checks across items that no single model can make."""
    problems: list[tuple[Location, str]] = []
    first_seen: dict[str, int] = {}
    serial_ports: dict[str, int] = {}
    for index, machine in enumerate(config.machines):
        serial = getattr(machine, "serial", None)
        if serial is not None and machine.enabled:
            # The port opens exclusively: a second section would fail with "busy" at every poll.
            device = os.path.realpath(serial.device)
            if device in serial_ports:
                first = config.machines[serial_ports[device]].id
                problems.append(
                    (
                        ("machines", index, "serial", "device"),
                        f"machine {machine.id!r} uses serial port {serial.device} like machine {first!r}; a port "
                        "opens for one section only. Fix: put every device on that line into one machine section, "
                        "with unit_id per tag (or disable one of them)",
                    )
                )
            serial_ports.setdefault(device, index)
        if machine.id in first_seen:
            problems.append(
                (
                    ("machines", index, "id"),
                    f"duplicate machine id {machine.id!r} (also machines[{first_seen[machine.id]}]). "
                    "Fix: give every machine a unique id",
                )
            )
        first_seen.setdefault(machine.id, index)
        names: dict[str, int] = {}
        tags: Sequence[OpcUaTag | ModbusTag] = machine.tags
        for tag_index, tag in enumerate(tags):
            if tag.name in names:
                problems.append(
                    (
                        ("machines", index, "tags", tag_index, "name"),
                        f"duplicate tag name {tag.name!r} in machine {machine.id!r}. Fix: rename one of them",
                    )
                )
            names.setdefault(tag.name, tag_index)
    return problems


def _line_of(lines: dict[Location, int], location: Location) -> int:
    """The line of the deepest part of ``location`` that exists in the YAML (0 if none)."""
    return next((lines[location[:n]] for n in range(len(location), -1, -1) if location[:n] in lines), 0)


def load_config(path: str | Path) -> AgentConfig:
    """Read, expand and validate a config file. Raises ``ConfigError`` listing every problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, [f"cannot read the file: {exc.strerror}. Fix: check the path and permissions"]) from exc
    return parse_config(text, file)


def parse_config(text: str, file: str = "<config>") -> AgentConfig:
    """Validate config text; ``file`` is only used in messages."""
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(
            file, [f"{where}: not valid YAML: {exc.problem}. Fix: check indentation and quoting"]
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, ["line 1: the file must be a mapping of keys (site:, machines:, mqtt:, ...)"])
    lines = dict(_line_index(node)) if node is not None else {}

    def located(location: Location, message: str) -> str:
        line = _line_of(lines, location)
        prefix = f"line {line}: " if line else ""
        return f"{prefix}{_dotted(location)}: {message}"

    expansion_problems: list[tuple[Location, str]] = []
    data = _expand(data, (), expansion_problems)
    if expansion_problems:
        raise ConfigError(file, [located(loc, msg) for loc, msg in expansion_problems])
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        described = sorted((_describe(error) for error in exc.errors()), key=lambda item: _line_of(lines, item[0]))
        raise ConfigError(file, [located(loc, msg) for loc, msg in described]) from None
    semantic = _semantic_problems(config)
    if semantic:
        raise ConfigError(file, [located(loc, msg) for loc, msg in semantic])
    return config
