"""Writing files so that a crash never leaves half of one (a temporary file, then a rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_json_atomic(path: str | Path, document, **dump_kwargs) -> Path:
    """Write `document` as JSON to `path` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with tmp:
            json.dump(document, tmp, **{"indent": 2, **dump_kwargs})
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)  # never leave a stray .name.xxxx file behind
        raise
    return path
