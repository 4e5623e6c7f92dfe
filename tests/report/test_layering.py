"""report/ reads results without the service's engines: importing every module of it loads neither Ray nor Optuna."""

import pkgutil
import subprocess
import sys

import samprivacy.report


def test_report_imports_neither_ray_nor_optuna():
    modules = [samprivacy.report.__name__] + [m.name for m in pkgutil.walk_packages(
        samprivacy.report.__path__, "samprivacy.report.")]
    assert {"samprivacy.report.tables", "samprivacy.report.runs", "samprivacy.report.plots"} <= set(modules)
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted({n.split('.')[0] for n in sys.modules} & {'ray', 'optuna'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"report/ pulled in {proc.stdout.strip()}"
