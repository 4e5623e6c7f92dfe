"""Reading a sweep spec: YAML (duplicate keys rejected, 5e-4 read as a float) -> validated SweepSpec."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from samprivacy.spec.errors import SpecError, problems
from samprivacy.spec.params import OptimizerSpace, Param, TrainSpace
from samprivacy.spec.sweep import Resources, SamplerSpec, StorageSpec, SweepSpec
from samprivacy.spec.trial import LiraOptions, Population, RmiaOptions

_ALL_KEYS = sorted({k for m in (SweepSpec, TrainSpace, OptimizerSpace, SamplerSpec, Resources, StorageSpec, Param,
                                Population, LiraOptions, RmiaOptions) for k in m.model_fields})

class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}; keep only one",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.1 reads 5e-4 as a string (it wants 5.0e-4); read it as the float everyone means.
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                                  list("-+0123456789."))


def parse_spec(data: Any, source: str | None = None) -> SweepSpec:
    """Validate a spec given as a mapping; SpecError lists every problem with its field path."""
    if not isinstance(data, dict):
        raise SpecError([], source, f"a sweep spec is a mapping (name: ..., optimizers: ...), "
                                    f"got {type(data).__name__}")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems(exc, _ALL_KEYS), source) from None


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML sweep spec; SpecError names the file and every problem in it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([], str(path), "no such file; check the path (example specs live in sweeps/)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([], str(path), f"cannot read the file ({type(exc).__name__}: {exc})") from None
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError([], str(path), f"invalid YAML: {exc}") from None
    return parse_spec(data, str(path))
