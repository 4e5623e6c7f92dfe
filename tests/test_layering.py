"""Layering (docs/architecture.md): learn/ and audit/ run on GPU machines that have torch but not ray, optuna or mlflow."""

import pkgutil
import subprocess
import sys

import samprivacy.audit
import samprivacy.learn

SERVICE_PACKAGES = ("ray", "optuna", "mlflow", "pydantic")


def _modules(package) -> list[str]:
    return [package.__name__] + [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]


def test_learn_and_audit_import_no_service_package():
    modules = _modules(samprivacy.learn) + _modules(samprivacy.audit)
    assert "samprivacy.learn.optim" in modules and "samprivacy.audit.suite" in modules
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({SERVICE_PACKAGES!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"learn/audit pulled in {proc.stdout.strip()}"
