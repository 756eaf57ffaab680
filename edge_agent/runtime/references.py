"""``${NAME}``, ``${NAME:-default}`` and ``${file:/path}`` in config values, and what must never be echoed.

References exist so secrets stay out of the config file; an error message that printed the value
would put them right back, into a terminal, a ticket or the journal. So expansion records every
value that came from a reference and every value of a secret key, and the loader never shows
those. ``${file:...}`` reads files with the agent's rights, so it is allowed only where a secret is
expected: ``host: ${file:/etc/shadow}`` would otherwise print the file in the next error.

Text that reaches MQTT topics, InfluxDB lines and logs is checked here too, once for every key
and value: control characters (NUL included) and unpaired surrogates (a ``"\\ud800"`` escape, or
an undecodable environment variable) are refused instead of crashing a print or a publish later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.runtime.yaml_reader import Location

REFERENCE = re.compile(r"\$\{([^}]*)\}")
MAX_SECRET_FILE_BYTES = 64 * 1024
"""A password, token or key file is small; more is a wrong path (or a device file)."""

_BAD_IN_VALUE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
"""Control characters but tab and line breaks (a multi-line description), and unpaired surrogates."""
_BAD_IN_KEY = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
HIDDEN = "[hidden]"


@dataclass
class Expansion:
    """The data with references replaced, the problems found, and what must not be echoed."""

    data: Any = None
    problems: list[tuple[Location, str]] = field(default_factory=list)
    substituted: set[Location] = field(default_factory=set)
    hidden: set[str] = field(default_factory=set)

    def redact(self, message: str) -> str:
        """``message`` with every hidden value (and its repr) replaced by ``[hidden]``."""
        for value in sorted(self.hidden, key=len, reverse=True):
            message = message.replace(repr(value), HIDDEN)
            if len(value) >= 4:
                message = message.replace(value, HIDDEN)
        return message


def expand(data: Any, is_secret: Callable[[Location], bool]) -> Expansion:
    """Resolve references in every string and check every key and string; collect all problems."""
    result = Expansion()
    result.data = _expand(data, (), is_secret, result)
    return result


def _expand(data: Any, path: Location, is_secret: Callable[[Location], bool], result: Expansion) -> Any:
    if isinstance(data, dict):
        expanded: dict[Any, Any] = {}
        for key, value in data.items():
            if isinstance(key, str) and (bad := _bad_character(key, in_key=True)) is not None:
                result.problems.append(((*path, key), f"the key holds {bad}. Fix: retype the key"))
            expanded[key] = _expand(value, (*path, key), is_secret, result)
        return expanded
    if isinstance(data, list):
        return [_expand(value, (*path, index), is_secret, result) for index, value in enumerate(data)]
    secret = is_secret(path)
    if secret and data is not None and not isinstance(data, bool):
        result.hidden.add(str(data))
    if not isinstance(data, str):
        return data
    if "${" in data:
        data = _substitute(data, path, secret, result)
    bad = _bad_character(data)
    if bad is not None:
        result.problems.append((path, f"the value holds {bad}. Fix: remove it"))
    return data


def _substitute(text: str, path: Location, secret: bool, result: Expansion) -> str:
    resolved: list[str] = []

    def one(match: re.Match[str]) -> str:
        value = _resolve(match.group(1), secret)
        resolved.append(value)
        return value

    try:
        expanded = REFERENCE.sub(one, text)
    except ValueError as exc:
        result.problems.append((path, str(exc)))
        return text
    result.substituted.add(path)
    result.hidden.update(value for value in (*resolved, expanded) if value.strip())
    return expanded


def _resolve(expression: str, secret: bool) -> str:
    """``NAME`` or ``NAME:-default`` from the environment, or ``file:/path`` contents (secrets only)."""
    if expression.startswith("file:"):
        if not secret:
            raise ValueError(
                "${file:...} may only give a secret (a password or token), and this key is not one; the file "
                "would be printed wherever the value is shown. Fix: write the value itself, or ${NAME} "
                "to take it from the environment"
            )
        return _read_secret_file(Path(expression[5:]))
    name, has_default, default = expression.partition(":-")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(
            f"${{{expression}}} is not a valid reference. Fix: use ${{NAME}}, ${{NAME:-default}} or ${{file:/path}}"
            if expression.isprintable() and len(expression) <= 80
            else "this is not a valid reference. Fix: use ${NAME}, ${NAME:-default} or ${file:/path}"
        )
    if name in os.environ:
        return os.environ[name]
    if has_default:
        return default
    raise ValueError(
        f"environment variable {name} is not set. Fix: export {name}=... (or write ${{{name}:-default}} to give a "
        "default)"
    )


def _read_secret_file(path: Path) -> str:
    shown = repr(str(path)) if str(path).isprintable() else "(a path with control characters)"
    try:
        if not path.is_file():
            raise ValueError(
                f"secret file {shown} is missing or not a regular file. Fix: create it or correct the path"
            )
        with path.open("rb") as handle:
            raw = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(
            f"cannot read secret file {shown} ({exc.strerror}). Fix: check the path and the file's permissions"
        ) from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"secret file {shown} is larger than 64 KiB, not a secret. Fix: correct the path")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"secret file {shown} is not UTF-8 text. Fix: write the secret as text") from None


def _bad_character(text: str, *, in_key: bool = False) -> str | None:
    """'a NUL character (U+0000)' etc. for the first character no key or value may hold, else None."""
    match = (_BAD_IN_KEY if in_key else _BAD_IN_VALUE).search(text)
    if match is None:
        return None
    code = ord(match.group())
    if 0xD800 <= code <= 0xDFFF:
        return f"an unpaired surrogate (U+{code:04X}), which is not text"
    return f"{'a NUL character' if code == 0 else 'a control character'} (U+{code:04X})"
