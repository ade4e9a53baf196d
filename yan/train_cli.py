"""The ``yan train`` command line, derived from the fields of :class:`~yan.train_args.TrainArgs`.

Every field is one flag: ``--field-name`` (``max_steps`` -> ``--max-steps``), or the name in its
``metadata["flag"]`` (``overrides`` -> ``--set KEY=VALUE``, ``columns`` -> ``--column
FIELD=COLUMN``, both repeatable); a boolean that defaults to true is turned off by
``--no-field-name`` (``--no-progress``). Type, choices and help come from the field, so a
default is written once, in the dataclass. ``--paper-literal`` is the one flag that is not a
field: it adds :data:`yan.config.PAPER_LITERAL` to the overrides.

``--config FILE`` reads field values from a JSON file (YAML for ``.yaml`` / ``.yml`` names, with
PyYAML) whose keys are field names; flags given on the command line win over it, and ``--set`` /
``--column`` add to (and win over) its ``overrides`` / ``columns`` key by key. A run's
``DIR/run.json`` is such a file: ``yan train --config DIR/run.json`` repeats that run's
arguments. Precedence: field default < file < ``--paper-literal`` < flags.

Example:
    >>> parser = build_parser()
    >>> args = args_from_cli(parser.parse_args(["--data", "wiki-mini", "--out", "runs/a"]))
    >>> args.max_steps, args.overrides
    (1000, {})
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from yan.config import PAPER_LITERAL, parse_override
from yan.train_args import TrainArgs

YAML_SUFFIXES = (".yaml", ".yml")


class MissingArguments(ValueError):
    """Required fields (``--out``, ``--data``) given neither as flags nor by ``--config``."""


def _field_type(hint: Any) -> tuple[type, bool]:
    """The type behind a field annotation and whether it may be ``None`` (``int | None``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _field_type(args[0])[0], True
    return (typing.get_origin(hint) or hint), False


def _hints() -> dict[str, Any]:
    # the module uses `from __future__ import annotations`: the field types are strings
    return typing.get_type_hints(TrainArgs)


def flag_of(f: dataclasses.Field[Any]) -> str:
    """The command-line flag of a :class:`TrainArgs` field."""
    if f.metadata.get("flag"):
        return f.metadata["flag"]
    dashed = f.name.replace("_", "-")
    return f"--no-{dashed}" if f.default is True else f"--{dashed}"


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _help(f: dataclasses.Field[Any], base: type) -> str:
    text = f.metadata["help"]
    shown = f.default not in (dataclasses.MISSING, None) and base is not bool
    if shown and "default" not in text:
        text += f" (default: {f.default})"
    return text.replace("%", "%%")  # argparse formats help with %


def build_parser() -> argparse.ArgumentParser:
    """The ``yan train`` parser: one flag per :class:`TrainArgs` field, plus ``--config`` and
    ``--paper-literal``.

    The namespace it returns holds only the flags given (``argparse.SUPPRESS`` defaults), so
    that :func:`args_from_cli` can tell a flag given on the command line from a value of the
    ``--config`` file; the defaults are the dataclass's.
    """
    p = argparse.ArgumentParser(
        prog="yan train",
        description="Train YAN: stage 1 (autoencoder, eq. 8), stage 2 (MoE-FM latent flow, "
        "eq. 11) or fine-tuning; runs as one process or under torchrun (DDP).",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="read arguments from a JSON file (YAML for .yaml/.yml, with PyYAML) whose keys are "
        "the field names of yan.train_args.TrainArgs (max_steps, overrides for --set, columns "
        "for --column, ...); flags given here win over it. --config DIR/run.json repeats the "
        "arguments of the run in DIR",
    )
    hints = _hints()
    for f in dataclasses.fields(TrainArgs):
        base, _ = _field_type(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "help": _help(f, base)}
        if base is bool:
            kwargs["action"] = "store_false" if f.default is True else "store_true"
        elif base is dict:
            kwargs.update(action="append", metavar=f.metadata["metavar"])
        else:
            kwargs["type"] = base
            if f.metadata.get("choices"):
                kwargs["choices"] = list(f.metadata["choices"])
        p.add_argument(flag_of(f), **kwargs)
    p.add_argument(
        "--paper-literal",
        action="store_true",
        help="the paper's text where our defaults deviate (noise start, summed NLL, no memory "
        "positions, no stage-1 masks, unscaled MMD; see yan.config.PAPER_LITERAL); "
        "--set still overrides",
    )
    return p


def parse_column(text: str) -> tuple[str, str]:
    """One ``--column FIELD=COLUMN``."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"--column expects FIELD=COLUMN, got {text!r}")
    return key, value


PAIR_PARSERS: dict[str, Callable[[str], tuple[str, Any]]] = {
    "overrides": parse_override,
    "columns": parse_column,
}


def args_from_cli(ns: argparse.Namespace) -> TrainArgs:
    """The :class:`TrainArgs` of a parsed command line: field defaults, then the ``--config``
    file, then ``--paper-literal``, then the flags given.

    Raises:
        MissingArguments: ``--out`` or ``--data`` given by neither the flags nor the file.
        ValueError / FileNotFoundError: a bad ``--set`` / ``--column`` item or ``--config`` file.
    """
    given = dict(vars(ns))
    path = given.pop("config", None)
    paper_literal = given.pop("paper_literal", False)
    values = read_config(path) if path is not None else {}
    for name, parse in PAIR_PARSERS.items():
        merged = dict(values.get(name, {}))
        if name == "overrides" and paper_literal:
            merged.update(PAPER_LITERAL)
        merged.update(parse(item) for item in given.pop(name, []))
        values[name] = merged
    values.update(given)
    fields = dataclasses.fields(TrainArgs)
    missing = [flag_of(f) for f in fields if _required(f) and f.name not in values]
    if missing:  # argparse's own wording: the message reads as it did before --config
        raise MissingArguments(f"the following arguments are required: {', '.join(missing)}")
    return TrainArgs(**values)


def read_config(path: Path | str) -> dict[str, Any]:
    """The field values of a ``--config`` file, checked: every key a :class:`TrainArgs` field,
    every value of its field's type (and among its choices). Paths stay strings here, as in
    ``run.json``; :class:`TrainArgs` makes them paths.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable JSON/YAML, not a mapping, an unknown key (named, with the
            nearest field names) or a value of the wrong type.
        ImportError: a YAML file without PyYAML installed.
    """
    path = Path(path)
    where = f"--config {path}"
    if not path.is_file():
        raise FileNotFoundError(f"{where}: file not found")
    text = path.read_text()
    if path.suffix.lower() in YAML_SUFFIXES:
        try:
            import yaml
        except ImportError:
            raise ImportError(
                f"{where}: reading YAML needs PyYAML (pip install pyyaml); or pass a JSON file"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{where}: not valid YAML ({err})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{where}: expected a mapping of TrainArgs fields, got {type(data).__name__}"
        )
    fields = {f.name: f for f in dataclasses.fields(TrainArgs)}
    hints = _hints()
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=3)
            hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
            raise ValueError(
                f"{where}: unknown key {key!r}, not a TrainArgs field{hint} "
                f"(known: {', '.join(fields)})"
            )
        out[key] = _checked(fields[key], hints[key], value, where)
    return out


def _checked(f: dataclasses.Field[Any], hint: Any, value: Any, where: str) -> Any:
    """``value`` as field ``f`` holds it, or a ``ValueError`` naming the key."""
    base, optional = _field_type(hint)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if value is None:
        if optional:
            return None
        ok = False
    elif base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok, value = number, float(value) if number else value
    elif base in (str, Path):
        # a number where text is expected is that text (YAML reads `stage: 2` as an integer)
        ok, value = isinstance(value, str) or number, str(value) if number else value
    elif base is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        if ok and f.name == "columns":
            ok = all(isinstance(v, str) for v in value.values())
    else:  # pragma: no cover - a new field type needs a rule here
        raise TypeError(f"TrainArgs.{f.name}: no --config rule for type {base}")
    if not ok:
        want = base.__name__ + (" or null" if optional else "")
        raise ValueError(f"{where}: {f.name} must be {want}, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ValueError(f"{where}: {f.name} must be one of {', '.join(choices)}, got {value!r}")
    return value


__all__ = [
    "MissingArguments",
    "args_from_cli",
    "build_parser",
    "flag_of",
    "parse_column",
    "read_config",
]
