"""Writing files so that a crash never leaves half of one (a temporary file, then a rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def _atomic(path: str | Path, write: Callable[[IO[Any]], object], mode: str = "w") -> Path:
    """Call write(file) on a temporary file in path's folder, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with tmp:
            write(tmp)
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)  # never leave a stray .name.xxxx file behind
        raise
    return path


def write_json_atomic(path: str | Path, document: Any, **dump_kwargs: Any) -> Path:
    """Write `document` as JSON to `path` via a temporary file in the same folder and an atomic rename."""
    return _atomic(path, lambda f: json.dump(document, f, **{"indent": 2, **dump_kwargs}))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` the same way."""
    return _atomic(path, lambda f: f.write(data), mode="wb")


def save_torch_atomic(state: Any, path: str | Path) -> Path:
    """torch.save(state) to `path` the same way (a reader never sees half a file)."""
    import torch  # here: files.py is imported by code that must not need torch

    return _atomic(path, lambda f: torch.save(state, f), mode="wb")
