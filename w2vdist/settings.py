"""From files, dictionaries and command-line flags to the commands' config dataclasses (each
pipeline stage's `config.py`).

One flag generator serves every command: each command has a root dataclass, and every leaf
field becomes `--section.field` (words joined by `-` or `_`, both accepted), its help the
field's own text, default and allowed values. Fields marked `inline` put their sections at the
top (train's `--model.dim`, not `--config.model.dim`); `positional` fields are arguments.
Prefixes are never guessed (`--model.d` is an error that suggests `--model.dim`), and unknown
keys in config files get the same suggestion. Values are coerced to the field's type and
validated by the dataclass itself, so a bad value fails before any work, naming the field.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import tomllib
import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, Field
from pathlib import Path
from typing import Any

import yaml

from w2vdist.errors import UsageError
from w2vdist.files import numbered_lines


def setting(default: Any, help: str, *, choices: tuple[str, ...] | None = None,
            flag: str | None = None, short: str | None = None, aliases: tuple[str, ...] = (),
            positional: bool = False, inline: bool = False, metavar: str | None = None) -> Any:
    """A config field with what the flag generator needs: its meaning (`help`), the values it
    takes (`choices`), a different flag name (`flag`), a one-letter `short` flag, `aliases`."""
    metadata = dict(help=help, choices=choices, flag=flag, short=short, aliases=aliases,
                    positional=positional, inline=inline, metavar=metavar)
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        factory = default if callable(default) else (lambda d=default: type(d)(d))
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check(ok: bool, name: str, message: str) -> None:
    """Refuse a field's value: `name` the field (`section.field`), `message` what it must be."""
    if not ok:
        raise UsageError(f"config: {name} {message}")


def check_choices(obj: Any, section: str) -> None:
    """Refuse a field value outside its `choices` (called by each dataclass's __post_init__)."""
    for f in dataclasses.fields(obj):
        choices = f.metadata.get("choices")
        value = getattr(obj, f.name)
        if choices and value is not None and value not in choices:
            name = f"{section}.{f.name}" if section else f.name
            raise UsageError(f"config: {name} must be one of {', '.join(choices)} (got {value!r})"
                             + _suggest(str(value), choices, ""))


# ---------------------------------------------------------------------------------------------
# Dictionaries and files.


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from nested dict `data`, refusing unknown keys by name."""
    if not isinstance(data, dict):
        raise UsageError(f"config: {prefix.rstrip('.') or 'top level'} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted((key for key in data if key not in known), key=str)  # YAML keys: any type
    if unknown:
        raise UsageError(f"config: unknown key {prefix}{unknown[0]}"
                         + _suggest(str(unknown[0]), known, prefix)
                         + f" (known: {', '.join(sorted(known))})")
    inline = {f.name for f in dataclasses.fields(cls) if f.metadata.get("inline")}
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if _is_dataclass_type(tp):
            kwargs[name] = from_dict(tp, value, prefix if name in inline else f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"dim": 100}} -> {"model.dim": 100}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML, TOML or JSON config file as a nested dict; errors name the line and column."""
    p = Path(path)
    text = "".join(line for _, line in numbered_lines(p, "config file"))
    try:
        if p.suffix == ".toml":
            data = tomllib.loads(text)
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except json.JSONDecodeError as exc:
        raise UsageError(f"{p}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}:{mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{p}:{where} not valid YAML: {problem}") from None
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        raise UsageError(f"{p}: not valid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{p}: a config file must hold a mapping of sections")
    return data


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested dict merge: `overrides` wins, sections merge key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# Command-line flags.


class Parser(argparse.ArgumentParser):
    """argparse without prefix guessing, whose unknown flags get a "did you mean"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        """One line, not the whole usage: the flags are in --help."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extra = super().parse_known_args(args, namespace)
        flags = [a for a in extra if a.startswith("-")]
        if flags:
            bad = flags[0].split("=", 1)[0]
            known = [s for a in self._actions for s in a.option_strings]
            self.error(f"unknown flag {bad}" + _suggest(bad, known, ""))
        return parsed, extra


def add_flags(parser: argparse.ArgumentParser, root: type) -> None:
    """One argument per leaf field of `root` (see the module docstring)."""
    flags = parser.add_argument_group("settings")
    for path, visible, f, tp in _leaves(root):
        meta = f.metadata
        dest = "cfg:" + ".".join(path)
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
        text = _help(meta.get("help", ""), default, meta.get("choices"), tp)
        if meta.get("positional"):
            nargs = "+" if typing.get_origin(tp) is list else None
            parser.add_argument(dest, metavar=meta.get("metavar") or f.name.upper(), nargs=nargs,
                                help=text)
            continue
        names = _flag_names(visible, meta)
        if _is_switch(tp):
            long = next(n for n in names if n.startswith("--"))[2:]
            section, _, leaf = long.rpartition(".")
            negative = f"--{section}.no-{leaf}" if section else f"--no-{leaf}"
            if default is True:
                text += f"; {negative} turns it off"
            flags.add_argument(*names, dest=dest, action="store_const", const="true",
                               default=None, help=text)
            flags.add_argument(negative, dest=dest, action="store_const", const="false",
                               default=None, help=argparse.SUPPRESS)
            continue
        metavar = meta.get("metavar") or _metavar(tp, meta.get("choices"))
        flags.add_argument(*names, dest=dest, default=None, metavar=metavar, help=text)


def from_args(root: type, args: argparse.Namespace, prefix: str = "") -> Any:
    """The root dataclass from the flags given; a root's `config_file` names a file read into
    its `config` field, under the flags."""
    given: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key.startswith("cfg:") and value is not None:
            node = given
            *parents, leaf = key[4:].split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    if given.get("config_file"):
        path = given["config_file"]
        data = read_file(path)
        try:  # a mistake in the file is the file's: say so
            from_dict(typing.get_type_hints(root)["config"], data)
        except UsageError as exc:
            raise UsageError(f"{path}: {str(exc).removeprefix('config: ')}") from None
        given["config"] = merge(data, given.get("config", {}))
    return from_dict(root, given, prefix)


def _leaves(
    cls: type, path: tuple[str, ...] = (), visible: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], tuple[str, ...], Field, Any]]:
    """(path, path as flags show it, field, type) of every leaf; `inline` sections add their
    fields without their own name."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_dataclass_type(tp):
            shown = visible if f.metadata.get("inline") else (*visible, f.name)
            out.extend(_leaves(tp, (*path, f.name), shown))
        else:
            out.append(((*path, f.name), (*visible, f.name), f, tp))
    return out


def _flag_names(visible: tuple[str, ...], meta: Any) -> list[str]:
    """`--section.field-name` and `--section.field_name`; `flag`, `short` and `aliases` from
    the field's metadata."""
    if meta.get("flag"):
        names = [meta["flag"]]
    else:
        dashed = "--" + ".".join(p.replace("_", "-") for p in visible)
        under = "--" + ".".join(visible)
        names = [dashed] + ([under] if under != dashed else [])
    if meta.get("short"):
        names.insert(0, meta["short"])
    return names + list(meta.get("aliases", ()))


def _help(text: str, default: Any, choices: tuple[str, ...] | None, tp: Any) -> str:
    parts = [text.rstrip(".")] if text else []
    if choices:
        parts.append(f"one of: {', '.join(choices)}")
    if default not in (None, "", []) and tp is not bool or default is True:
        parts.append(f"default: {default:,}" if isinstance(default, int) and not
                     isinstance(default, bool) else f"default: {default}")
    return "; ".join(parts).replace("%", "%%")


def _metavar(tp: Any, choices: tuple[str, ...] | None) -> str:
    if choices:
        return "{" + ",".join(choices) + "}"
    if typing.get_origin(tp) is list:
        return "A,B,..."
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    return {int: "N", float: "X", str: "TEXT"}.get(base, "VALUE")


def _suggest(word: str, known: Any, prefix: str) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.5)
    if not close:
        close = [k for k in known if isinstance(k, str) and k.startswith(word) and word][:1]
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def _is_switch(tp: Any) -> bool:
    """A flag without a value and its `no-` form: a bool, or a bool left unset (None) for the
    command to choose."""
    return tp is bool or (typing.get_origin(tp) in (typing.Union, types.UnionType)
                          and set(typing.get_args(tp)) == {bool, type(None)})


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert a value read from YAML/TOML/JSON or the command line to the field's type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, args[0], name)
    if origin is list:
        (item,) = typing.get_args(tp)
        if value is None:  # a setting that was a single optional value before it was a list
            return []
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"config: {name} must be a list (got {value!r})")
        return [_coerce(v, item, name) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"config: {name} must be true or false (got {value!r})")
    if tp in (int, float):
        if isinstance(value, bool):
            raise UsageError(f"config: {name} must be a number (got {value!r})")
        try:
            number = float(value) if tp is float else _integer(value)
        except (TypeError, ValueError):
            number = None
        if number is None:
            kind = "an integer" if tp is int else "a number"
            raise UsageError(f"config: {name} must be {kind} (got {value!r})")
        if tp is int and not -2**63 <= number < 2**63:  # what torch and the kernels hold
            raise UsageError(f"config: {name} must be a 64-bit integer (got {value!r})")
        return number
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise UsageError(f"config: {name} must be a string (got {value!r})")
        return str(value)
    raise TypeError(f"unsupported config type {tp} for {name}")


def _integer(value: Any) -> int | None:
    """An integer written as one, read exactly (through a float, 12345678901234567 would be
    ...568), or as an integral number (`1e6`, `2.0`); None for anything else."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    number = float(value)
    return int(number) if number.is_integer() else None
