"""The one config reader behind protocols (``fsr-bench run``) and training configs (``fsr-bench train``).

One dialect for both:

* a YAML file holds a mapping; ``--set a.b.0.c=value`` overrides any key (YAML-typed value; list
  indices address items, the index one past the end appends one). **An empty value is null**
  (``--set model.checkpoint=`` unsets the key), as an empty YAML value is;
* ``+`` in place of a list index appends without counting the entries (:func:`apply_sets`):
  ``--set models.+.name=my_sr_x8 --set models.+.checkpoint=best.pt`` adds ONE entry. Consecutive
  ``+`` keys fill the same new entry until a key repeats, which starts the next one (so
  ``models.+.name=a models.+.name=b`` adds two); ``models.+=VALUE`` appends VALUE as a whole entry;
* precedence: ``--set`` > YAML > the schema's defaults;
* ``${VAR}`` / ``${VAR:-default}`` expand environment variables in path keys only (roots, list
  files, checkpoints, weights, out dirs: :func:`is_path_key`); an unset variable without a default
  is an error naming the key;
* validation errors name the dotted key, say when it came from ``--set``, and suggest the closest
  valid key ("did you mean ...?").

Every function takes the error class to raise, so a protocol says ``ProtocolError`` and a training
config ``ConfigError`` (both are :class:`ConfigInputError`).
"""
from __future__ import annotations

import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import yaml
from pydantic import BaseModel, ValidationError

from fsr_bench.errors import FsrBenchError

__all__ = [
    "ConfigInputError",
    "apply_set",
    "apply_sets",
    "expand_env",
    "format_validation_error",
    "is_path_key",
    "parse_set",
    "read_yaml_mapping",
]


class ConfigInputError(FsrBenchError, ValueError):
    """A config file or ``--set`` item that cannot be used; the message names the key."""


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ENV_OR_BARE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand_vars(text: str, missing: Callable[[str], Exception], *, values: Mapping[str, str] | None = None,
                bare: bool = False) -> str:
    """The one expander: ``${VAR}`` and ``${VAR:-default}`` (and ``$VAR`` with ``bare``) from
    ``values`` first (a config setting standing in for a variable), then the environment, then the
    default; an unset VAR without one raises ``missing(VAR)``."""
    def sub(m: re.Match[str]) -> str:
        var, default = m.group(1) or m.group(3), m.group(2)
        if values and var in values:
            return values[var]
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        raise missing(var)

    return (_ENV_OR_BARE if bare else _ENV).sub(sub, text)


#: Keys whose values are paths: only they expand ``${VAR}`` (roots, list files, checkpoints,
#: weights, out dirs); descriptions, labels and names never copy the environment into results.
PATH_KEYS = frozenset({"root", "roots", "path", "paths", "dir", "file", "checkpoint", "weights", "out_dir",
                       "list_file", "gallery_list"})
PATH_SUFFIXES = ("_root", "_roots", "_dir", "_file", "_path", "_list", "_weights", "_checkpoint")


def is_path_key(key: str) -> bool:
    """Whether a config key holds a path (and so expands ``${VAR}``)."""
    return key in PATH_KEYS or key.endswith(PATH_SUFFIXES)


def expand_env(value: Any, where: str = "", error: type[Exception] = ConfigInputError, *,
               in_path: bool = False) -> Any:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in the strings of path keys (:func:`is_path_key`,
    and the items of lists under them); an unset VAR is a clear error naming the key. Other strings
    are kept as written."""
    if isinstance(value, dict):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k), error, in_path=is_path_key(str(k)))
                for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}.{i}", error, in_path=in_path) for i, v in enumerate(value)]
    if isinstance(value, str) and in_path:
        return expand_vars(value, lambda var: error(
            f"{where}: environment variable {var} is not set; export {var}=/path/to/data "
            f"(or override the key with --set {where}=...)"))
    return value


def parse_set(item: str, error: type[Exception] = ConfigInputError) -> tuple[list[str], Any]:
    """``"a.b.0.c=value"`` -> (["a", "b", "0", "c"], yaml-typed value); an empty value is None."""
    if "=" not in item:
        raise error(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. --set run.batch_size=4")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise error(f"--set {item!r}: bad key {key!r} (dotted, e.g. run.batch_size)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise error(f"--set {item!r}: value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_set(doc: dict[str, Any], path: Sequence[str], value: Any,
              error: type[Exception] = ConfigInputError) -> None:
    """Set ``doc[path] = value`` in place, creating sections (and appending list items) on the way."""
    dotted = ".".join(path)
    node: Any = doc
    for depth, part in enumerate(path[:-1]):
        nxt = path[depth + 1]
        if isinstance(node, list):
            if part.isdigit() and int(part) == len(node):  # models.N.name=… appends a new item
                node.append([] if nxt.isdigit() else {})
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise error(f"--set {dotted}: no list item {part!r}") from None
        else:
            if node.get(part) is None:
                node[part] = [] if nxt.isdigit() else {}
            node = node[part]
        if not isinstance(node, (dict, list)):
            where = ".".join(path[: depth + 1])
            raise error(f"--set {dotted}: {where} is a value ({node!r}), not a section")
    last = path[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) > len(node):
            raise error(f"--set {dotted}: list index {last!r} out of range (0..{len(node)})")
        if int(last) == len(node):
            node.append(value)
        else:
            node[int(last)] = value
    else:
        node[last] = value


APPEND = "+"  # a list "index" that appends (see the module docstring for how consecutive ones group)


def _node_at(doc: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` (indices as strings), or None where the path does not exist yet."""
    node = doc
    for part in path:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _resolve_appends(doc: dict[str, Any], path: list[str], item: str, open_items: dict[tuple[str, ...], set[str]],
                     error: type[Exception]) -> list[str]:
    """``path`` with each ``+`` replaced by a concrete index: the entry the previous ``+`` items of this
    command appended to that list, unless they already set this key in it (then one past the end)."""
    out: list[str] = []
    for depth, part in enumerate(path):
        if part != APPEND:
            out.append(part)
            continue
        node = _node_at(doc, out)
        if node is not None and not isinstance(node, list):
            raise error(f"--set {item}: {'.'.join(out)} is not a list; `+` appends to lists only")
        rest = ".".join(path[depth + 1:])
        key = tuple(out)
        keys = open_items.get(key)
        if keys is not None and rest and rest not in keys and node:
            index = len(node) - 1  # the entry this command's `+` keys are filling
        else:
            index = len(node or [])  # a new entry (apply_set appends it)
            keys = open_items[key] = set()
        if rest:
            keys.add(rest)
        else:  # a whole entry: complete, later `+` keys start another
            open_items.pop(key, None)
        out.append(str(index))
    return out


def apply_sets(doc: dict[str, Any], items: Sequence[str], error: type[Exception] = ConfigInputError
               ) -> set[str]:
    """Apply ``--set`` items in order (later ones win); returns the dotted keys they set.

    A ``+`` in a key appends to that list: consecutive ``+`` keys of one command fill ONE new entry
    (``models.+.name=x --set models.+.checkpoint=y``) until a key repeats, which opens the next
    entry; the keys returned name the concrete index (``models.2.name``), as errors do.
    """
    keys = set()
    open_items: dict[tuple[str, ...], set[str]] = {}
    for item in items or ():
        path, value = parse_set(item, error)
        if APPEND in path:
            path = _resolve_appends(doc, path, item.partition("=")[0], open_items, error)
        apply_set(doc, path, value, error)
        keys.add(".".join(path))
    return keys


MAX_CONFIG_BYTES = 1 << 20  # a protocol or training config is a few kB
MAX_ALIASES = 64


def read_yaml_mapping(path: str | os.PathLike[str], error: type[Exception] = ConfigInputError,
                      what: str = "config") -> dict[str, Any]:
    """A YAML file holding a mapping; anything else is an error naming the file."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{what} file not found: {p}")
    size = p.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise error(f"{p}: {size:,} bytes is too large for a {what} (at most {MAX_CONFIG_BYTES:,}); "
                    "is this the right file?")
    try:
        text = p.read_text(encoding="utf-8")
        aliases = sum(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader))
        if aliases > MAX_ALIASES:  # each alias is a copy once expanded: a few nested ones make billions
            raise error(f"{p}: {aliases} YAML aliases (*name), more than the {MAX_ALIASES} a {what} may use; "
                        "write the values out")
        doc = yaml.safe_load(text) or {}
    except UnicodeDecodeError as exc:
        raise error(f"{p}: not a UTF-8 text file ({exc.reason})") from None
    except yaml.YAMLError as exc:
        raise error(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise error(f"{p}: a {what} is a mapping of keys, got {type(doc).__name__}")
    return doc


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through list/Optional/Union/Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models_in(arg)
    return out


def _known_fields(schema: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Field names at a location of the schema (for "did you mean" suggestions)."""
    candidates: list[type[BaseModel]] = [schema]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # a list index: same element type
        nxt: list[type[BaseModel]] = []
        for cls in candidates:
            field = cls.model_fields.get(str(part))
            if field is not None:
                nxt += _models_in(field.annotation)
        if not nxt:  # a discriminated union's tag in the location: keep the member it names
            tagged = [c for c in candidates if _tag_of(c) == part]
            if not tagged:
                return []
            nxt = tagged
        candidates = nxt
    fields: list[str] = []
    for cls in candidates:
        fields += [f for f in cls.model_fields if f not in fields]
    return fields


def _tag_of(cls: type[BaseModel]) -> Any:
    for name in ("type", "kind"):
        field = cls.model_fields.get(name)
        if field is not None and typing.get_origin(field.annotation) is typing.Literal:
            args = typing.get_args(field.annotation)
            if len(args) == 1:
                return args[0]
    return None


def format_validation_error(exc: ValidationError, schema: type[BaseModel], header: str,
                            overridden: Collection[str] = (), drop_loc_prefix: int = 0) -> str:
    """One line per error: dotted key, what is wrong, ``(from --set)``, "did you mean"."""
    lines = [header]
    for err in exc.errors():
        loc = list(err["loc"])[drop_loc_prefix:]
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        origin = " (from --set)" if dotted in overridden or any(
            dotted.startswith(o + ".") for o in overridden) else ""
        if err["type"] == "extra_forbidden":
            known = _known_fields(schema, loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"; did you mean {'.'.join(map(str, loc[:-1] + [close[0]]))}?" if close else (
                f"; valid keys here: {', '.join(known)}" if known else "")
            lines.append(f"  {dotted}: unknown key{origin}{hint}")
        elif err["type"] == "missing":
            lines.append(f"  {dotted}: required but missing{origin}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = repr(err.get("input"))
            tail = f" (got {got})" if "input" in err and len(got) <= 80 else ""
            lines.append(f"  {msg}{origin}" if msg.startswith(dotted) else f"  {dotted}: {msg}{tail}{origin}")
    return "\n".join(lines)

