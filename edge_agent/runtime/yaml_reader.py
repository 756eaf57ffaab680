"""Read a config file's YAML without letting the file take the process down.

A config is written by people and sometimes by scripts, and ``check-config`` is the first thing
run on a file of unknown origin. Plain ``yaml.safe_load`` is safe from code execution but not
from resource exhaustion or crashes: nine aliases of nine aliases ("billion laughs") expand to a
billion values when anything walks the result, an alias inside its own anchor makes a loop that
every walker recurses into until ``RecursionError``, deep nesting overflows the recursive
composer, a NUL byte raises a ``ReaderError`` that is no ``MarkedYAMLError``, and a malformed
timestamp or a 5000-digit number raises a bare ``ValueError``. Here each of these is bounded or
caught and becomes a ``YamlProblem`` with the line, so the loader reports it like any other
mistake. Aliases stay allowed (sharing a tag list between machines is legitimate), up to a budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Location = tuple[str | int, ...]

MAX_FILE_BYTES = 8 * 1024 * 1024
"""A config with thousands of tags is a few hundred kB; more is not a config (or is /dev/zero)."""

MAX_DEPTH = 64
"""Nesting levels; the deepest real key (alerts.machines.<id>.state.codes.<code>) is 6 down."""

MAX_ALIAS_WEIGHT = 100_000
"""Values (and every 64 characters of text) that aliases may add to the file by repeating nodes."""


class YamlProblem(Exception):
    """The file is not YAML the loader can use; ``line`` is 1-based (0 when unknown)."""

    def __init__(self, line: int, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message

    @property
    def where(self) -> str:
        """'line 3, column 4' (or 'line 3'), for the start of the message."""
        return f"line {self.line}, column {self.column}" if self.column else f"line {self.line}"


def read_config_text(path: str | Path) -> str:
    """The file as text: at most ``MAX_FILE_BYTES``, UTF-8. Raises OSError or ``YamlProblem``."""
    with Path(path).open("rb") as handle:
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise YamlProblem(
            1,
            f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, far more than a config. "
            "Fix: check the path",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise YamlProblem(
            line,
            "not UTF-8 text. Fix: save the file as UTF-8 (it may be UTF-16, Latin-1 or not a text file at all)",
            column,
        ) from None


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader with duplicate keys refused, and nesting and alias expansion bounded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._alias_weight = 0
        self._open_anchors: set[str] = set()
        self._weights: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"alias *{event.anchor} is inside the value it refers to, a loop without end. "
                    "Fix: refer to the anchor only after its value has ended",
                    mark,
                )
            node = super().compose_node(parent, index)
            self._alias_weight += self._weights.get(id(node), 1)
            if self._alias_weight > MAX_ALIAS_WEIGHT:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"the aliases up to *{event.anchor} repeat more than {MAX_ALIAS_WEIGHT} values, which is a "
                    "YAML bomb rather than a config. Fix: write the values out, or use fewer aliases",
                    mark,
                )
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"values are nested more than {MAX_DEPTH} levels deep. Fix: check the brackets and indentation",
                mark,
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor or "")
        if node is not None:
            self._weights[id(node)] = self._weight(node)
        return node

    def _weight(self, node: yaml.Node) -> int:
        if isinstance(node, yaml.ScalarNode):
            return 1 + len(node.value) // 64
        pairs = isinstance(node, yaml.MappingNode)
        children = [part for pair in node.value for part in pair] if pairs else node.value
        return 1 + sum(self._weights.get(id(child), 1) for child in children)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Turn a bare ValueError of a constructor (a date like 2024-13-45, a 5000-digit int) into a located one."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as exc:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read this value ({type(exc).__name__}). Fix: quote it to make it text",
                node.start_mark,
            ) from None


def _construct_mapping(loader: _ConfigLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    """Refuse duplicate keys (PyYAML silently keeps the last one) and keys that are lists or mappings."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key is a list or mapping. Fix: write a plain key before the ':'", key_node.start_mark
            ) from None
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {first + 1}). Fix: remove one of them",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """The data and its node tree (for line numbers). Raises ``YamlProblem``, never another error."""
    loader: _ConfigLoader | None = None
    try:
        loader = _ConfigLoader(text)  # the reader checks every character here
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "not valid YAML"
        fix = "" if "Fix:" in problem else ". Fix: check indentation and quoting"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 0)
        raise YamlProblem(line, f"not valid YAML: {problem}{fix}", column) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise YamlProblem(
            line,
            f"character U+{exc.character:04X} is not allowed in YAML. Fix: remove it (NUL and other control "
            "characters cannot appear in a config, even quoted; write a visible value)",
            column,
        ) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, f"not valid YAML: {type(exc).__name__}. Fix: check indentation and quoting") from None
    except RecursionError:
        raise YamlProblem(1, "values are nested too deeply. Fix: check the brackets and indentation") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, node


def _key_of(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{type(node).__name__} key>"


def line_index(node: yaml.Node, path: Location = ()) -> Iterator[tuple[Location, int]]:
    """Yield (location, 1-based line) for every key and item of the YAML tree."""
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = _key_of(key_node)
            yield (*path, key), key_node.start_mark.line + 1
            for sub_path, line in line_index(value_node, (*path, key)):
                if sub_path != (*path, key):
                    yield sub_path, line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from line_index(item, (*path, index))
