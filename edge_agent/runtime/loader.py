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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from connectors import TagConfig
from edge_agent.core.errors import ConfigError
from edge_agent.runtime.config import AgentConfig
from edge_agent.runtime.references import Expansion, expand
from edge_agent.runtime.yaml_reader import Location, YamlProblem, line_index, load_yaml, read_config_text


def _dotted(location: Location) -> str:
    text = ""
    for part in location:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
            continue
        shown = part if isinstance(part, str) and part.isprintable() else repr(part)
        text += f".{shown}" if text else shown
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


def _is_secret(location: Location) -> bool:
    """Whether the YAML key at ``location`` holds a secret (a ``SecretStr`` in any model it may be)."""
    candidates: list[Any] = [AgentConfig]
    for part in location:
        if isinstance(part, int):
            items = [get_args(c)[0] for c in candidates if get_origin(c) is list]
            candidates = [t for item in items for t in _unwrap(item)]
            continue
        mappings = [get_args(c)[1] for c in candidates if get_origin(c) is dict]
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        candidates = [t for f in fields for t in _unwrap(f.annotation)] + [t for v in mappings for t in _unwrap(v)]
    return SecretStr in candidates


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


def _describe(error: ErrorDetails, expansion: Expansion) -> tuple[Location, str]:
    """One pydantic error as (YAML location, 'problem. Fix: ...'), never echoing a secret or a reference's value."""
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
    private = location in expansion.substituted or _is_secret(location)
    shown = "" if private or isinstance(got, dict | list) or "Fix:" in message else f" (got {_short(got)})"
    pattern = str(error.get("ctx", {}).get("pattern", ""))
    advice = _URL_FIXES.get(pattern) or _FIXES.get(kind, "correct the value")
    fix = "" if "Fix:" in message else f". Fix: {advice}"
    return location, f"{message}{shown}{fix}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


_URL_FIXES = {
    r"^https?://": "write a URL such as http://influxdb.plant.lan:8086 (https:// for TLS)",
    r"^opc\.tcp://": "write the endpoint as opc.tcp://host:4840/path",
}

_USERINFO = re.compile(r"(?<=://)[^/@\s'\"]*@")
"""The ``user:password@`` of a URL quoted in a message, which is never shown."""


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
    "finite_number": "write a finite number (not nan or inf)",
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
        tags: Sequence[TagConfig] = machine.tags
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


CHECKER_FAILED = "the checker failed on a value of an unexpected type"
CHECKER_FIX = "Fix: look for a list or mapping where a single value belongs, and report this as a bug"


def load_config(path: str | Path) -> AgentConfig:
    """Read, expand and validate a config file. Raises ``ConfigError`` listing every problem."""
    file = str(path)
    try:
        text = read_config_text(path)
    except OSError as exc:
        raise ConfigError(file, [f"cannot read the file: {exc.strerror}. Fix: check the path and permissions"]) from exc
    except YamlProblem as exc:
        raise ConfigError(file, [f"{exc.where}: {exc.message}"]) from None
    return parse_config(text, file)


def parse_config(text: str, file: str = "<config>") -> AgentConfig:
    """Validate config text; ``file`` is only used in messages."""
    try:
        data, node = load_yaml(text)
    except YamlProblem as exc:
        raise ConfigError(file, [f"{exc.where}: {exc.message}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, ["line 1: the file must be a mapping of keys (site:, machines:, mqtt:, ...)"])
    lines = dict(line_index(node)) if node is not None else {}
    expansion = expand(data, _is_secret)

    def located(location: Location, message: str) -> str:
        line = _line_of(lines, location) or 1
        # One line per problem: a value with a line break must not start a line of its own.
        text = _USERINFO.sub("[hidden]@", expansion.redact(f"line {line}: {_dotted(location)}: {message}"))
        return text.replace("\n", "\\n")

    if expansion.problems:
        raise ConfigError(file, [located(loc, msg) for loc, msg in expansion.problems])
    try:
        config = AgentConfig.model_validate(expansion.data)
    except ValidationError as exc:
        described = sorted(
            (_describe(error, expansion) for error in exc.errors()), key=lambda item: _line_of(lines, item[0])
        )
        raise ConfigError(file, [located(loc, msg) for loc, msg in described]) from None
    except (TypeError, AttributeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        # A validator tripped over a value of a type it did not expect: still an answer, not a traceback.
        raise ConfigError(file, [located((), f"{CHECKER_FAILED} ({type(exc).__name__}). {CHECKER_FIX}")]) from exc
    semantic = _semantic_problems(config)
    if semantic:
        raise ConfigError(file, [located(loc, msg) for loc, msg in semantic])
    return config
