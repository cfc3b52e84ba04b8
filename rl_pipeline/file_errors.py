"""Validation errors of a YAML file, said where an editor finds them: the line, and for a misspelled field
the name it was probably meant to be.

    line 14: apis.demo.quota.reserv: not a field here (did you mean `reserve`?)
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import ErrorDetails


def explain(errors: list[ErrorDetails], text: str, model: type[BaseModel]) -> list[str]:
    """One line per error: where it is in `text` (the YAML `model` was validated from), the field's
    dotted path, and what is wrong with it."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:  # it parsed once already; without nodes, no line numbers
        root = None
    out = []
    for error in errors:
        loc = error["loc"]
        where = ".".join(map(str, loc)) or "(top level)"
        line = _line(root, loc)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            allowed = _fields_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            message = "not a field here" + (f" (did you mean `{close[0]}`?)" if close else "")
        out.append(f"{f'line {line}: ' if line else ''}{where}: {message}")
    return out


def _line(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc` (of its key, for a mapping entry); parts naming no node
    (a discriminated union's tag) are skipped."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if found:
                line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names a mapping at `loc` may hold, following `model`'s annotations (dicts, lists,
    optionals and tagged unions on the way)."""
    kinds: list[Any] = [model]
    for part in loc:
        step: list[Any] = []
        for kind in _unwrap(kinds):
            if _is_model(kind) and str(part) in kind.model_fields:
                step.append(kind.model_fields[str(part)].annotation)
            elif typing.get_origin(kind) is dict:
                step.append(typing.get_args(kind)[1])
            elif typing.get_origin(kind) is list and isinstance(part, int):
                step.append(typing.get_args(kind)[0])
        kinds = step or kinds  # a tag of a union names no field: stay
    return sorted({name for kind in _unwrap(kinds) if _is_model(kind) for name in kind.model_fields})


def _unwrap(kinds: list[Any]) -> list[Any]:
    """Optionals, unions and Annotated[...] opened up into the types they allow."""
    out: list[Any] = []
    for kind in kinds:
        origin = typing.get_origin(kind)
        if origin is typing.Annotated:
            out += _unwrap([typing.get_args(kind)[0]])
        elif origin in (typing.Union, types.UnionType):
            out += _unwrap(list(typing.get_args(kind)))
        else:
            out.append(kind)
    return out


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)
