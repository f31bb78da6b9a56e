"""A suite file as a plain document, read defensively: size and encoding, duplicate keys, alias bombs, environment
interpolation, dotted overrides.

Everything here fails with a :class:`~mtp_bench.errors.SuiteError` naming ``file:line`` or the key path, never with a
traceback, and within bounded time and memory: the file size, the size of the document once YAML aliases are
expanded, and its depth are capped before anything copies it.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mtp_bench.errors import SuiteError

MAX_SUITE_BYTES = 1_000_000
"""Largest suite file read. Shipped suites are a few KB; data belongs in files the task reads."""

MAX_NODES = 100_000
"""Most values (mapping entries, list items, scalars) a suite may hold once aliases are expanded."""

MAX_SCALAR_CHARS = 4_000_000
"""Most characters of scalars a suite may hold once aliases are expanded."""

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


class _Budget:
    """Walks a composed YAML tree as the constructed document will be (aliases expanded), refusing duplicate keys,
    recursive aliases and documents past the caps before anything is built from them."""

    def __init__(self, where: str):
        self.where, self.nodes, self.chars = where, 0, 0
        self.duplicates: list[str] = []

    def walk(self, node: Node, path: str, stack: tuple[int, ...] = ()) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SuiteError([f"{self.where}: more than {MAX_NODES:,} values once YAML aliases are expanded "
                              "(an alias bomb?); refused"])
        if id(node) in stack:
            raise SuiteError([f"{self.where}:{node.start_mark.line + 1}: {path or '(top level)'}: a YAML alias refers "
                              "to a node that contains it (recursive); refused"])
        if len(stack) >= MAX_DEPTH:
            raise SuiteError([f"{self.where}:{node.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels"])
        if isinstance(node, ScalarNode):
            self.chars += len(node.value)
            if self.chars > MAX_SCALAR_CHARS:
                raise SuiteError([f"{self.where}: more than {MAX_SCALAR_CHARS:,} characters once YAML aliases are "
                                  "expanded; refused"])
            return
        inner = (*stack, id(node))
        if isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, _join(path, index), inner)
        elif isinstance(node, MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                    line = key_node.start_mark.line + 1
                    if key_node.value in first:
                        self.duplicates.append(f"{self.where}:{line}: {_join(path, key_node.value)}: duplicate key "
                                               f"(first at line {first[key_node.value]}); remove one")
                    first.setdefault(key_node.value, line)
                else:
                    self.walk(key_node, path, inner)
                self.walk(value_node, _join(path, getattr(key_node, "value", "?")), inner)


class _ValueAt(Exception):
    """A scalar YAML accepts but Python cannot build (``2024-02-30``, a 5,000-digit integer), with its line."""

    def __init__(self, line: int, cause: Exception):
        super().__init__(f"line {line}: {cause}")
        self.line, self.cause = line, cause


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that says on which line a value could not be built."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise _ValueAt(node.start_mark.line + 1, exc) from None


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` with the caps above and duplicate keys refused. ``where`` names the source in messages."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # the reader refuses control characters up front
        line = text[: exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SuiteError([f"{where}:{line}: not valid YAML: control character U+{code:04X} is not allowed"]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        budget = _Budget(where)
        budget.walk(node, "")
        if budget.duplicates:
            raise SuiteError(budget.duplicates)
        return loader.construct_document(node)
    except SuiteError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        column = f" (column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SuiteError([f"{where}{line}: not valid YAML{column}: {problem}"]) from None
    except _ValueAt as exc:
        raise SuiteError([f"{where}:{exc.line}: a value cannot be read: {exc.cause}"]) from None
    except RecursionError:
        raise SuiteError([f"{where}: nested too deeply to read"]) from None
    finally:
        loader.dispose()


def symlink_loop(path: str | Path) -> bool:
    """Whether ``path`` (or a folder on the way to it) is a loop of symbolic links: ``Path.exists`` says False, and
    ``Path.resolve`` raises."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def read_text(path: Path, shown: str) -> str:
    """The file's text: bounded in size, strictly UTF-8 (a UTF-8 byte-order mark is allowed)."""
    try:
        if not path.exists():
            if symlink_loop(path):
                raise SuiteError([f"{shown}: a loop of symbolic links (it never reaches a file); name the suite file"])
            raise SuiteError([f"{shown}: no such file (resolved: {path.resolve()})"])
        if not path.is_file():
            raise SuiteError([f"{shown}: not a regular file"])
        size = path.stat().st_size
        if size > MAX_SUITE_BYTES:
            limit = f"{MAX_SUITE_BYTES // 1000:,} KB"
            raise SuiteError([f"{shown}: {size / 1e6:.1f} MB; suite files are limited to {limit} (data belongs in "
                              "files the task reads)"])
        data = path.read_bytes()[: MAX_SUITE_BYTES + 1]  # a file that grew since stat() is still bounded
    except OSError as exc:
        raise SuiteError([f"{shown}: cannot read ({exc.strerror or exc})"]) from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        hint = " (it looks like UTF-16)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise SuiteError([f"{shown}:{line}: not UTF-8 text: byte 0x{data[exc.start]:02x}{hint}; save the file as "
                          "UTF-8"]) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A suite file as a mapping; every problem names the file as given (and the line where there is one)."""
    shown = str(path)
    document = parse_yaml(read_text(Path(path), shown), shown)
    if not isinstance(document, dict):
        raise SuiteError([f"{shown}: must hold a mapping (key: value lines) at the top level"])
    return document


# ---------------------------------------------------------------------------------------------- interpolation ----

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, path: str) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in strings (as docker compose does), so machine-specific paths
    such as a local data copy stay out of the suite. Bounded: :func:`parse_yaml` capped the expanded size."""
    if isinstance(value, dict):
        return {k: interpolate(v, _join(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{path}.{i}") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ and os.environ[name] != "":
            return os.environ[name]
        if default is not None:
            return default
        raise SuiteError([f"{path}: environment variable {name} is not set and has no default (${{{name}:-...}})"])

    return _ENV.sub(substitute, value)


# -------------------------------------------------------------------------------------------------- overrides ----


def _find_list_item(items: list[Any], key: str, path: str) -> int:
    if key.lstrip("-").isdigit():
        index = int(key)
        if not -len(items) <= index < len(items):
            raise SuiteError([f"{path}: index {index} out of range ({len(items)} items)"])
        return index
    # Lists of named entries (methods, scorers) may be addressed by label or name: methods.mutor.params.a=0.1
    for index, item in enumerate(items):
        if isinstance(item, dict) and key in (item.get("label"), item.get("name")):
            return index
    raise SuiteError([f"{path}: no list item named {key!r}"])


def set_dotted(document: dict[str, Any], dotted: str, value: Any) -> str:
    """Set ``a.b.c`` in a nested dict/list document, creating mappings on the way. Returns the path it set with list
    items as indices (``methods.mutor.params.a`` -> ``methods.1.params.a``), as validation errors name them."""
    keys = dotted.split(".")
    resolved: list[str] = []
    node: Any = document
    for depth, key in enumerate(keys):
        path = ".".join(keys[: depth + 1])
        last = depth == len(keys) - 1
        if isinstance(node, list):
            index = _find_list_item(node, key, path)
            resolved.append(str(index % len(node)))
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise SuiteError([f"{path}: cannot set a key inside a {type(node).__name__}"])
        resolved.append(key)
        if last:
            node[key] = value
        else:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
    return ".".join(resolved)


def parse_override(text: str) -> tuple[str, Any]:
    """``train.lr=3e-5`` -> ("train.lr", "3e-5"); values are YAML (``grid.seeds=[0,1,2]``), read with the same caps
    as a suite file; a value that is not YAML stays a string."""
    if "=" not in text:
        raise SuiteError([f"override {text!r}: expected key.path=value"])
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or not re.fullmatch(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*", key):
        raise SuiteError([f"override {text[:80]!r}: bad key path {key[:60]!r}"])
    if len(raw) > MAX_SUITE_BYTES:
        raise SuiteError([f"override {key}: value longer than {MAX_SUITE_BYTES:,} characters"])
    if not raw.strip():
        return key, ""
    try:
        return key, parse_yaml(raw, f"override {key}")
    except SuiteError as exc:
        if any("not valid YAML" in line for line in exc.problems):
            return key, raw
        raise
