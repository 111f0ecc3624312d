"""Every YAML read and write in fleetq goes through this module.

Two loaders: a round-trip one (ruamel) for files fleetq edits, so a person's
comments and key order survive every transition, and a safe one that returns
plain Python data for fast listing. Both refuse input that is too large, not
UTF-8, or whose expansion is too large: more than a few aliases, more than
``MAX_NODES`` nodes once aliases are expanded (a billion-laughs file is 1.4 KB), or
nesting deeper than ``MAX_DEPTH`` (the C parser recurses: a deep file would crash it).
The limits are checked on the parser's event stream, which stops at the first excess,
before anything is composed.
"""

from __future__ import annotations

import datetime as _dt
import io
import threading
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    NodeEvent,
)

from fleetq.errors import FleetqError

MAX_BYTES = 1024 * 1024
MAX_ALIASES = 64
MAX_NODES = 100_000  # nodes of a document with every alias expanded
MAX_DEPTH = 64  # nesting, aliases expanded


class YamlError(FleetqError):
    """A YAML document that cannot be read."""


def _rt() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _fast() -> YAML:
    y = YAML(typ="safe")  # libyaml-based when ruamel.yaml.clib is installed, else pure Python
    y.default_flow_style = False
    # ruamel declares this switch as None (unannotated), though it is meant to be set to a bool
    y.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    y.width = 4096
    return y


_RT = _rt()
_SAFE = _fast()
_LOCK = threading.RLock()  # ruamel's YAML objects are not thread-safe; the worker reads and writes from threads


def _text(data: bytes | str, where: str) -> str:
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise YamlError(f"{where}: file is {len(data)} bytes, over the {MAX_BYTES} byte limit")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise YamlError(f"{where}: not UTF-8 text (byte {e.start})") from None
    if len(data) > MAX_BYTES:
        raise YamlError(f"{where}: file is over the {MAX_BYTES} byte limit")
    return data


def _check_expansion(text: str, where: str) -> None:
    """Refuse a document whose expansion is too large (nodes, depth, aliases), streaming its parse events.

    Each collection's expanded size and height is summed as its events go by; an anchor remembers its
    node's, so an alias costs what it stands for. The walk stops at the first excess, so a bomb is
    refused in microseconds and no node is ever built.
    """
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, height) of its node
    stack: list[list[Any]] = []  # open collections: [anchor, nodes counted before it, deepest child's height]
    nodes = aliases = 0  # nodes so far, aliases expanded
    try:
        with _LOCK:
            for ev in _SAFE.parse(text):
                if isinstance(ev, CollectionStartEvent):
                    stack.append([ev.anchor, nodes, 0])
                    nodes += 1
                    if len(stack) > MAX_DEPTH:
                        raise YamlError(f"{where}: YAML nested deeper than {MAX_DEPTH} levels")
                    continue
                if isinstance(ev, CollectionEndEvent):
                    anchor, before, height = stack.pop()
                    size, height = nodes - before, height + 1
                elif isinstance(ev, AliasEvent):
                    aliases += 1
                    if aliases > MAX_ALIASES:
                        raise YamlError(
                            f"{where}: more than {MAX_ALIASES} YAML aliases; refusing a possible alias bomb"
                        )
                    anchor, (size, height) = None, anchors.get(ev.anchor, (1, 1))
                    nodes += size
                elif isinstance(ev, NodeEvent):  # a scalar
                    anchor, size, height = ev.anchor, 1, 1
                    nodes += 1
                else:
                    continue
                if anchor is not None:
                    anchors[anchor] = (size, height)
                if stack:
                    stack[-1][2] = max(stack[-1][2], height)
                if len(stack) + height > MAX_DEPTH:
                    raise YamlError(f"{where}: YAML nested deeper than {MAX_DEPTH} levels (aliases expanded)")
                if nodes > MAX_NODES:
                    raise YamlError(f"{where}: YAML expands to over {MAX_NODES} nodes; refusing a possible alias bomb")
    except YAMLError as e:
        raise YamlError(f"{where}: invalid YAML: {_brief(e)}") from None


def _brief(e: Exception) -> str:
    msg = " ".join(str(e).split())
    return msg[:300]


def _load(loader: YAML, data: bytes | str, where: str) -> Any:
    text = _text(data, where)
    if "\ufeff" in text[1:]:  # a BOM past the start reads one way now and another once the file is re-rendered
        raise YamlError(f"{where}: a byte-order mark (U+FEFF) after the start of the file")
    _check_expansion(text, where)
    try:
        with _LOCK:
            return loader.load(text)
    except YAMLError as e:
        raise YamlError(f"{where}: invalid YAML: {_brief(e)}") from None
    except (ValueError, TypeError, RecursionError) as e:
        raise YamlError(f"{where}: invalid YAML: {_brief(e)}") from None


def load_rt(data: bytes | str, where: str = "<yaml>") -> Any:
    """Round-trip load: the result keeps comments and order for ``dump_rt``."""
    return _load(_RT, data, where)


def load_safe(data: bytes | str, where: str = "<yaml>") -> Any:
    """Plain-data load (dicts, lists, scalars), for reading only."""
    return _load(_SAFE, data, where)


def load_rt_section(raw: bytes | None, where: str, key: str) -> Any:
    """A config file for editing (round-trip), with ``key`` guaranteed to hold a mapping."""
    doc = load_rt(raw, where) if raw else None
    if not isinstance(doc, dict):
        doc = to_rt({key: {}})
    if doc.get(key) is None:
        doc[key] = to_rt({})
    if not isinstance(doc[key], dict):
        raise YamlError(f"{where}: '{key}' must be a mapping")
    return doc


def _dump(dumper: YAML, data: Any) -> str:
    buf = io.StringIO()
    try:
        with _LOCK:
            dumper.dump(data, buf)
    except (YAMLError, ValueError, TypeError, RecursionError) as e:
        raise YamlError(f"cannot write YAML: {_brief(e)}") from None
    return buf.getvalue()


def dump_rt(data: Any) -> str:
    return _dump(_RT, data)


def dump_plain(data: Any) -> str:
    """Dump plain data (dicts, lists, scalars) in block style, keys in insertion order."""
    return _dump(_SAFE, data)


def to_rt(obj: Any) -> Any:
    """Plain data -> ruamel round-trip containers, so it can sit inside a loaded doc."""
    if isinstance(obj, CommentedMap | CommentedSeq):
        return obj
    if isinstance(obj, dict):
        m = CommentedMap()
        for k, v in obj.items():
            m[k] = to_rt(v)
        return m
    if isinstance(obj, list | tuple):
        return CommentedSeq(to_rt(v) for v in obj)
    return obj


def to_plain(obj: Any) -> Any:
    """ruamel containers and scalars -> plain dict/list/str/int/float/bool/None."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, _dt.datetime):
        if obj.tzinfo is None:
            obj = obj.replace(tzinfo=_dt.timezone.utc)
        return obj.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(obj, _dt.date):
        return obj.isoformat()
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    return str(obj)


def read_file(path: Path, *, rt: bool = False) -> Any:
    """Load a YAML file; a missing file is ``None``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise YamlError(f"{path}: cannot read: {e.strerror}") from None
    return (load_rt if rt else load_safe)(data, str(path))


def write_file(path: Path, data: Any) -> None:
    """Write YAML atomically (temp file + rename), so a full disk never leaves half a file."""
    text = dump_rt(data) if isinstance(data, CommentedMap | CommentedSeq) else dump_plain(data)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise FleetqError(f"{path}: cannot write: {e.strerror}") from None
