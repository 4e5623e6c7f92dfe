"""`samprivacy report NAME`: Table 1 and 2 read from the sweep's MLflow runs, in three formats; clear errors."""

from __future__ import annotations

import pytest

from samprivacy.cli import main
from samprivacy.sweep.results import Sweep

from .sweep.fake_sweep import fill, spec


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "fake"
    folder.mkdir()
    sweep_spec = spec().with_workdir(folder)
    Sweep(sweep_spec, sweep_spec.resolved_storage()).save()  # what `samprivacy run` leaves: sweep.json
    fill(f"sqlite:///{folder}/mlflow.db", folder)
    return folder


def test_both_tables_in_markdown_by_default(workdir, capsys):
    assert main(["report", "fake", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert out.index("**Table 1:") < out.index("**Table 2:")
    assert "| digits | sam | rho=0.05 | 2 | 85.00 ± 1.41 | 65.00 ± 1.41 | 59.00 ± 1.41 |" in out
    assert "| digits | sharpreg | lam=1.5, rho=0.01, xi=0.3 | 2 | -4.94% | -9.84% | -8.93% |" in out


@pytest.mark.parametrize("table, fmt, expect", [
    ("1", "csv", "dataset,method,config,seeds,test acc,test acc std,"),
    ("2", "latex", r"\begin{table}[t]"),
    ("1", "md", "**Table 1:"),
])
def test_one_table_in_a_format(workdir, capsys, table, fmt, expect):
    assert main(["report", "fake", "--workdir", str(workdir), "--table", table, "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert out.startswith(expect) and ("Table 2" in out) == (table == "2" and fmt != "csv")


def test_an_error_is_one_line_however_long_its_paths(tmp_path, capsys):
    """Error messages are not wrapped at the console's width: a path or a command in them stays whole to copy."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 6) / "workdir"
    assert main(["report", "nothing", "--workdir", str(deep)]) == 2
    err = capsys.readouterr().err
    assert len(err.rstrip("\n").splitlines()) == 1 and str(deep) in err


def test_errors_name_the_fix(tmp_path, capsys):
    assert main(["report", "nothing", "--workdir", str(tmp_path)]) == 2
    assert "start it with `samprivacy run SPEC`" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "fake", "--format", "html"])
    assert "invalid choice: 'html'" in capsys.readouterr().err
