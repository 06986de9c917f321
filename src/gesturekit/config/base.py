"""Strict YAML spec loading: unknown keys, wrong types and missing files are one-line errors."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from gesturekit.errors import GesturekitError

SpecT = TypeVar("SpecT", bound="StrictModel")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_COMMENT = re.compile(r"(?:^|\s)#")


class StrictModel(BaseModel):
    """Base of every spec section: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _model_names(cls: type[BaseModel] = StrictModel) -> set[str]:
    """The class names of every spec section (pydantic puts them in an error's location for a union)."""
    return {cls.__name__}.union(*(_model_names(sub) for sub in cls.__subclasses__()))


def _is_union_branch(part: Any, model_names: set[str]) -> bool:
    """A location part naming a union member (``DataSource``, ``function-after[...]``), not a key
    (a user's key, e.g. a class name in ``class_weights``, may start with a capital)."""
    return isinstance(part, str) and ("[" in part or part in model_names)


def _key_path(loc: tuple[Any, ...], model_names: set[str]) -> str:
    out = ""
    for part in loc:
        if _is_union_branch(part, model_names):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem, ``source: key.path: message``.

    A value that fits no member of a union (e.g. a path or a ``{path, split}`` mapping) makes pydantic
    report every member's complaint; where one of them is a check of ours (a ``ValueError``, e.g. "file
    not found"), only those are kept.
    """
    model_names = _model_names()
    by_value: dict[tuple[Any, ...], list[tuple[str, str]]] = {}
    for e in err.errors():
        loc = e["loc"]
        value_loc = next((loc[:i] for i, part in enumerate(loc) if _is_union_branch(part, model_names)), loc)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        by_value.setdefault(value_loc, []).append((e["type"], f"{source}: {_key_path(loc, model_names)}: {msg}"))
    lines: list[str] = []
    for problems in by_value.values():
        ours = [line for kind, line in problems if kind == "value_error"]
        lines += [line for line in (ours or [line for _, line in problems]) if line not in lines]
    return "\n".join(lines)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise GesturekitError(f"override {item!r}: expected KEY.PATH=VALUE")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise GesturekitError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def expand_variables(text: str, source: str) -> str:
    """``$VAR`` and ``${VAR}`` from the environment, outside comments.

    An unset ``${VAR}`` is an error naming its line (left as written, YAML would misread its
    braces as a mapping); an unset bare ``$VAR`` stays as written.
    """
    lines = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        comment = _COMMENT.search(line)
        body, rest = (line[:comment.start()], line[comment.start():]) if comment else (line, "")

        def value(match: re.Match[str], number: int = number) -> str:
            name = match.group(1) or match.group(2)
            if name in os.environ:
                return os.environ[name]
            if match.group(1):
                raise GesturekitError(f"{source}:{number}: environment variable ${{{name}}} is not set")
            return match.group(0)

        lines.append(_VARIABLE.sub(value, body) + rest)
    return "".join(lines)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise GesturekitError(f"{path}: spec file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GesturekitError(f"{path}: not a UTF-8 text file (byte {exc.start})") from None
    try:
        data = yaml.safe_load(expand_variables(text, str(path)))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        reason = str(getattr(exc, "problem", None) or exc).strip().splitlines()[0]
        raise GesturekitError(f"{path}{where}: invalid YAML: {reason}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GesturekitError(f"{path}: a spec must be a mapping of sections")
    return data


def load_spec(path: str | Path, model: type[SpecT], overrides: list[str] | None = None,
              check_files: bool = True) -> SpecT:
    """Read, override and validate a YAML spec; raise GesturekitError naming the file and key.

    ``check_files=False`` skips the existence checks of the spec's paths (datasets, checkpoints), for a
    command that opens none of them, such as evaluating a model on the datasets given to it."""
    data = apply_overrides(read_yaml(path), overrides or [])
    return validate_spec(data, model, str(path), check_files)


def validate_spec(data: dict[str, Any], model: type[SpecT], source: str, check_files: bool = True) -> SpecT:
    try:
        return model.model_validate(data, context={"check_files": check_files})
    except ValidationError as err:
        raise GesturekitError(format_validation_error(err, source)) from None


def dump_spec(spec: BaseModel) -> str:
    """The resolved spec as YAML (saved next to every run)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
