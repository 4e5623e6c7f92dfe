"""Spec errors in the spec's words: every problem with its field path, the bad value and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any



import difflib

from pydantic import (
    ValidationError,
)
from pydantic_core import PydanticCustomError

from samprivacy.errors import ConfigError

Problem = tuple[str, str]  # (field path, message)


class SpecError(ConfigError):
    """An invalid sweep spec: `problems` holds every (field path, message); the message lists them one per line."""

    def __init__(self, problems: list[Problem], source: str | None = None, headline: str | None = None):
        self.problems, self.source = list(problems), source
        n = len(self.problems)
        headline = headline or f"invalid sweep spec ({n} problem{'s' if n != 1 else ''}):"
        lines = [f"  {path or '<top level>'}: {message}" for path, message in self.problems]
        super().__init__("\n".join([f"{source}: {headline}" if source else headline, *lines]))


def raise_problems(problems: list[Problem]) -> None:
    """Report every problem a validator found; paths are relative to where pydantic is validating."""
    if problems:
        raise PydanticCustomError("spec", "{text}", {"text": "; ".join(f"{p}: {m}" for p, m in problems),
                                                      "problems": tuple(problems)})


def did_you_mean(word: object, options: Iterable[Any]) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f"did you mean '{close[0]}'? " if close else ""



_BOUND_TYPES = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
                "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}
_TYPE_MESSAGES = {"int": "must be an integer", "float": "must be a number", "bool": "must be true or false",
                  "string": "must be a string", "tuple": "must be a list", "list": "must be a list",
                  "dict": "must be a mapping (key: value)", "model": "must be a mapping (key: value)",
                  "finite": "must be a finite number"}



def _join(*parts: object) -> str:
    out = ""
    for part in parts:
        part = f"[{part}]" if isinstance(part, int) else str(part)
        out += part if not out or part.startswith("[") or not part else f".{part}"
    return out


def _message(err: Mapping[str, Any], keys: Iterable[str]) -> str:
    """pydantic's error in the spec's words, with the bad value and the fix."""
    kind, value = err["type"], err.get("input")
    got = "" if isinstance(value, dict) else f", got {value!r}"  # a whole mapping is noise, not the bad value
    if kind == "missing":
        return "required; add it (docs/spec.md describes every key)"
    if kind == "extra_forbidden":
        return f"unknown key; {did_you_mean(err['loc'][-1], keys)}remove it or fix the spelling (docs/spec.md)"
    if kind in _BOUND_TYPES:
        symbol, key = _BOUND_TYPES[kind]
        return f"must be {symbol} {err['ctx'][key]}{got}"
    prefix = kind.split("_")[0]
    return _TYPE_MESSAGES[prefix] + got if prefix in _TYPE_MESSAGES else err["msg"].removeprefix("Value error, ") + got


def problems(exc: ValidationError, keys: Iterable[str] = ()) -> list[Problem]:
    """Every error of `exc` as (field path, message); `keys` are the valid keys, for did-you-mean hints."""
    out: list[Problem] = []
    for err in exc.errors():
        loc = _join(*err["loc"])
        if err["type"] == "spec":
            out += [(_join(loc, sub) if sub else loc, message) for sub, message in err["ctx"]["problems"]]
        else:
            out.append((loc, _message(err, keys)))
    return out

