"""Command-line flags generated from a pydantic model's fields, and the nested mapping they parse back into.

`add_flags(parser, TrialConfig)` gives one flag per field, named after it (`batch_size` -> `--batch-size`), whose
help is the field's description and its default. Defaults are written in the model only: a flag the user does not
give is absent from `flag_values(args, model)`, so the model's own default applies. A field's type picks the flag:

    bool                       --x / --no-x
    int, float, str            --x VALUE
    Literal["a", "b"]          --x {a,b} (checked by the model); a number-or-word union (float | Literal["auto"]) takes either
    tuple[T, ...]              --x a,b,c (comma-separated)
    dict                       --x '{k: v}' (a YAML flow mapping)
    a nested model M           one flag per field of M, prefixed: --x-<field>, --x-<sub>-<field>, ...
    M | None                   also --x, which turns M on: with M's defaults, or, where M names a FLAG_VALUE
                               field, setting that field (Population.FLAG_VALUE = "models": --population K)

A field of another type is refused when the parser is built, so a new TrialConfig field cannot silently go
without its flag.
"""

from __future__ import annotations

import argparse
import types
from typing import Any, Callable, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from samprivacy.errors import ConfigError

_DEST = "field:"  # namespace attributes that hold field values: "field:population.models"
_SWITCH = "switch:"  # and those of flags that turn an optional nested model on: "switch:population"


def flag_name(path: tuple[str, ...]) -> str:
    """The flag of the field at `path`: ("population", "shared_references") -> --population-shared-references."""
    return "--" + "-".join(path).replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, model: type[BaseModel], prefix: tuple[str, ...] = ()) -> None:
    """One flag per field of `model` (recursively), help from the fields' descriptions."""
    for name, info in model.model_fields.items():
        _add_field(parser, (*prefix, name), info)


def _add_field(parser: argparse.ArgumentParser, path: tuple[str, ...], info: FieldInfo) -> None:
    annotation, optional = _unwrap_optional(info.annotation)
    flag, dest = flag_name(path), _DEST + ".".join(path)
    if _is_model(annotation):
        lead = getattr(annotation, "FLAG_VALUE", None)
        if optional and lead is not None:
            lead_info = annotation.model_fields[lead]
            parser.add_argument(flag, dest=f"{dest}.{lead}", default=argparse.SUPPRESS,
                                help=_help(info, f"{lead.upper()}: {lead_info.description}"),
                                **_value(lead_info.annotation, (*path, lead)))
        elif optional:
            parser.add_argument(flag, dest=_SWITCH + ".".join(path), default=argparse.SUPPRESS,
                                action="store_true", help=_help(info))
        for sub, sub_info in annotation.model_fields.items():
            if sub != lead:
                _add_field(parser, (*path, sub), sub_info)
    elif annotation is bool:
        parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, action=argparse.BooleanOptionalAction,
                            help=_help(info))
    else:
        parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=_help(info),
                            **_value(info.annotation, path))


def flag_values(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The fields the user gave, as the nested mapping `model(**...)` takes. A flag of an optional nested model
    given without the flag that turns the model on is refused, naming that flag."""
    values: dict[str, Any] = {}
    switches = {dest[len(_SWITCH):] for dest in vars(args) if dest.startswith(_SWITCH)}
    for dest, value in [*((d, {}) for d in switches), *((d[len(_DEST):], v) for d, v in vars(args).items()
                                                         if d.startswith(_DEST))]:
        *parents, leaf = dest.split(".")
        target = values
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = target.get(leaf, {}) if value == {} else value
    _check_switched_on(values, model, (), switches)
    return values


def _check_switched_on(values: dict[str, Any], model: type[BaseModel], prefix: tuple[str, ...],
                       switches: set[str]) -> None:
    for name, given in values.items():
        annotation, optional = _unwrap_optional(model.model_fields[name].annotation)
        if not (_is_model(annotation) and isinstance(given, dict)):
            continue
        path = (*prefix, name)
        lead = getattr(annotation, "FLAG_VALUE", None)
        if optional and not (lead in given if lead is not None else ".".join(path) in switches):
            flags = ", ".join(flag_name((*path, k)) for k in given)
            turn_on = flag_name(path) + (f" {lead.upper()}" if lead else "")
            raise ConfigError(f"{flags} describe{'s' * (len(given) == 1)} `{'.'.join(path)}`; add {turn_on}")
        _check_switched_on(given, annotation, path, switches)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(the type without None, whether None was allowed)."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = tuple(a for a in get_args(annotation) if a is not type(None))
        optional = len(rest) < len(get_args(annotation))
        return (rest[0] if len(rest) == 1 else Union[rest]), optional
    return annotation, False


def _help(info: FieldInfo, extra: str | None = None) -> str:
    text = "; ".join(t for t in (info.description, extra) if t) or ""
    default = info.default
    if default is not None and default is not PydanticUndefined and not isinstance(default, BaseModel):
        text += f" (default: {default})"
    return text.replace("%", "%%")  # argparse formats help with %


def _value(annotation: Any, path: tuple[str, ...]) -> dict[str, Any]:
    """add_argument's type, choices and metavar for a field that takes a value."""
    annotation, _ = _unwrap_optional(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:  # no argparse choices: TrialConfig's message (with "did you mean") is the one message
        return {"type": type(args[0]), "metavar": "{" + ",".join(map(str, args)) + "}"}
    if annotation in (int, float, str):
        return {"type": annotation, "metavar": path[-1].upper()}
    if origin in (Union, types.UnionType):  # e.g. float | Literal["auto"]: a number or one of the words
        words = tuple(w for a in args if get_origin(a) is Literal for w in get_args(a))
        numbers = [a for a in args if a in (int, float)]
        if len(words) + len(numbers) and all(a in (int, float) or get_origin(a) is Literal for a in args):
            return {"type": _number_or_word(numbers[-1] if numbers else float, words),
                    "metavar": "|".join(["NUMBER", *words])}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (int, float, str):
        return {"type": _comma_list(args[0]), "metavar": "A,B,..."}
    if origin is dict:
        return {"type": _mapping, "metavar": "'{KEY: VALUE, ...}'"}
    raise TypeError(f"no command-line flag for field {'.'.join(path)} of type {annotation!r}: teach "
                    "samprivacy.spec.flags._value that type")


def _number_or_word(number: type, words: tuple[str, ...]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if text in words:
            return text
        try:
            return number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or {' or '.join(words)}, got {text!r}") from None
    return parse


def _comma_list(item: type) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            return tuple(item(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__} values like "
                                             f"{'1024,512,256' if item is int else 'a,b'}, got {text!r}") from None
    return parse


def _mapping(text: str) -> dict:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping like '{{n: 6000, binary: true}}', got {text!r}")
    return value
