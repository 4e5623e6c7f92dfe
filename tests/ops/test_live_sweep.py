"""What people look at, on one finished tiny sweep (local Ray, SQLite MLflow/Optuna), end to end:

- dashboards/: Prometheus (Debian's `prometheus`) scrapes Ray's metrics endpoint while the sweep runs; the
  sweep's metrics are there, and every query of dashboards/grafana.json returns data;
- the MLflow UI (`samprivacy ui`'s command) in headless Chromium: the experiment's address shows the trial runs
  and, one click on the description's expand button away, the front's plot and table; the "Pareto front" saved
  view lists exactly the pareto=true runs. Screenshots are saved under the folder the test prints;
- `samprivacy report` prints Table 1 and 2 from MLflow; `samprivacy dashboard`'s optuna-dashboard serves the study.

The sweep: sgd and sam x 2 seeds x lr in {0.05, 1e30}: 4 trials that finish (2 configurations with 2 seeds each:
error bars, mean ± std) and 4 that diverge at their first epoch (the dashboard's failed count).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from samprivacy.cli import main
from samprivacy.ops.dashboard import dashboard_command
from samprivacy.ops.ui import experiment_url, ui_command
from samprivacy.spec import parse_spec

from ..conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SAMPRIVACY_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "live-sweep"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SPEC = {
    "name": "live", "datasets": ["digits"], "seeds": [0, 1],
    "optimizers": {"sgd": {}, "sam": {"rho": 0.05}},
    "train": {"epochs": 2, "batch_size": 128, "momentum": 0.0, "lr": {"choices": [0.05, 1.0e30]}},
    "attacks": ["loss", "confidence", "label_only"], "objectives": {"test_acc": "max", "attack_acc": "min"},
    "sampler": {"name": "grid"}, "trials": None, "max_concurrent": 2, "resources": {"cpu": 1, "gpu": 0},
    "checkpoint_interval_s": 0,
}


def need(binary: str) -> str:
    """The path of a Debian binary the test needs; CI installs it (.ci/run), elsewhere its absence skips."""
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"`{binary}` is missing; .ci/run installs it with apt-get")
        pytest.skip(f"`{binary}` is not installed (apt-get install {binary})")
    return path


def get_json(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def wait_for(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, f"{process.args[:3]} exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer within {seconds} s"
            time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "w") as out:  # its own session: stopped as a group, nothing else touched
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, start_new_session=True)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Prometheus scraping a private local Ray (metrics on a free loopback-reachable port) while the sweep runs."""
    import ray

    from samprivacy.sweep import runner

    prometheus = need("prometheus")
    work = tmp_path_factory.mktemp("live")
    metrics_port, prom_port = free_port(), free_port()
    config = work / "prometheus.yml"
    config.write_text(f"global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: ray\n"
                      f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n")
    prom = start([prometheus, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
                  f"--web.listen-address=127.0.0.1:{prom_port}"], work / "prometheus.log")
    temp_dir = work / "ray"
    try:
        wait_for(f"http://127.0.0.1:{prom_port}/-/ready", prom)
        ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
                 dashboard_port=free_port(), _metrics_export_port=metrics_port, _temp_dir=str(temp_dir),
                 _system_config={"metrics_report_interval_ms": 1000}, logging_level="WARNING", log_to_driver=False)
        started = time.time()
        outcome = runner.run(parse_spec(SPEC), workdir=work / "sweep")
        time.sleep(3)  # one more export and scrape after the last trial
        yield {"work": work, "outcome": outcome, "prometheus": f"http://127.0.0.1:{prom_port}",
               "window": (started - 5, time.time()), "metrics_port": metrics_port, "ray_temp": temp_dir}
    finally:
        ray.shutdown()
        stop(prom)


def test_prometheus_scrapes_the_sweeps_metrics_and_every_grafana_query_returns_data(sweep):
    outcome = sweep["outcome"]
    assert outcome["status"]["complete"] == 4 and outcome["status"]["failed"] == 4
    # Ray lists its metrics endpoint in the service-discovery file that dashboards/prometheus.yml reads.
    discovery = json.loads(next(sweep["ray_temp"].rglob("prom_metrics_service_discovery.json")).read_text())
    assert any(t.endswith(f":{sweep['metrics_port']}") for group in discovery for t in group["targets"])
    start, end = sweep["window"]

    def series(expr: str) -> list:
        query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 1})
        answer = get_json(f"{sweep['prometheus']}/api/v1/query_range?{query}")
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    finished = {s["metric"]["state"]: float(s["values"][-1][1])
                for s in series('sum by (state) (ray_samprivacy_trials_finished_total{sweep="live"})')}
    assert finished == {"complete": 4.0, "failed": 4.0}
    objectives = {s["metric"]["objective"] for s in series('ray_samprivacy_objective{sweep="live"}')}
    assert objectives == {"test_acc", "attack_acc"}

    dashboard = json.loads((ROOT / "dashboards" / "grafana.json").read_text())
    queries = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 10
    empty = [title for title, expr in queries if not series(expr.replace("$sweep", "live"))]
    assert not empty, f"panels without data: {empty}"


def test_promtool_accepts_the_shipped_scrape_configuration():
    proc = subprocess.run([need("promtool"), "check", "config", str(ROOT / "dashboards" / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_mlflow_ui_shows_the_trials_and_the_front_without_setup(sweep):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    if not Path(CHROMIUM).exists():
        need("chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nMLflow UI screenshots: {ARTIFACTS}")
    command = ui_command(workdir=sweep["work"] / "sweep", port=free_port())
    url = experiment_url(command)
    assert url and url.endswith("/runs?workflowType=machine_learning")
    server = start(command.argv, sweep["work"] / "mlflow-ui.log", command.env)
    try:
        wait_for(command.url + "/health", server)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)  # no clicks yet: the runs table, the description collapsed to its summary line
            # 8 trials at the top level and the summary run (the count settles once every run has loaded)
            page.wait_for_selector("text=9 matching runs", timeout=90_000)
            page.wait_for_selector("text=Pareto front of sweep", timeout=30_000)
            body = page.inner_text("body")
            assert body.count("sgd-") >= 4 and body.count("sam-") >= 4
            page.screenshot(path=str(ARTIFACTS / "1-runs.png"))
            # click 1: expand the description -> the plot (served by get-artifact) and the front's table
            page.locator("[data-component-id='mlflow.experiment.metadata_editor.expand_button']").click()
            image = page.locator("img[src*='get-artifact']")
            image.wait_for(timeout=30_000)
            page.wait_for_function("img => img.complete && img.naturalWidth > 300", arg=image.element_handle(),
                                   timeout=30_000)
            description = page.inner_text("body")
            for optimizer in ("sgd", "sam"):  # lr 0.05, 2 seeds each: both configurations are rows with a link
                assert f"\n{optimizer}\t" in description or f"{optimizer}\t" in description
            assert description.count("2 runs") >= 1 and "±" in description
            page.screenshot(path=str(ARTIFACTS / "2-front.png"), full_page=True)
            # the saved view: Views -> Pareto front
            page.locator("[data-testid=saved-views-trigger]").click()
            page.get_by_text("Pareto front", exact=True).last.click()
            pareto = sum(r["pareto"] for r in _pareto_tags(sweep))
            page.wait_for_selector(f"text={pareto} matching runs", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "3-front-view.png"))
            browser.close()
    finally:
        stop(server)


def _pareto_tags(sweep) -> list[dict]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{sweep['work'] / 'sweep' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("live")
    runs = client.search_runs([experiment.experiment_id], "tags.`samprivacy.kind` = 'trial'")
    return [{"pareto": r.data.tags.get("pareto") == "true", "status": r.info.status} for r in runs]


def test_report_prints_both_tables_from_mlflow(sweep, capsys):
    workdir = str(sweep["work"] / "sweep")
    capsys.readouterr()
    assert main(["report", "live", "--workdir", workdir]) == 0
    text = capsys.readouterr().out
    assert "Table 1" in text and "Table 2" in text and "| digits | sam |" in text and "±" in text
    assert main(["report", "live", "--workdir", workdir, "--table", "2", "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].startswith("dataset,method") and len(rows) == 3  # sgd baseline and sam (a row per method)
    artifacts = sweep["outcome"]["report_dir"]
    assert {"table1.md", "table2.tex", "pareto.png", "pareto.html"} <= set(os.listdir(artifacts))


def test_dashboard_serves_the_sweeps_study(sweep):
    from samprivacy.sweep.results import open_sweep
    from samprivacy.sweep.study import load_study

    opened = open_sweep("live", sweep["work"] / "sweep")
    study = load_study("live", opened.storage.optuna_url)
    command = dashboard_command(opened.storage.optuna_url, study.study_id, port=free_port())
    server = start(command.argv, sweep["work"] / "optuna-dashboard.log")
    try:
        base = command.url.split("/dashboard/")[0]
        wait_for(base + "/api/studies", server)
        studies = get_json(base + "/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["live"]
        detail = get_json(f"{base}/api/studies/{study.study_id}?after=0")
        assert len(detail["trials"]) == 8 and len(detail["best_trials"]) >= 1  # best_trials: Optuna's front
    finally:
        stop(server)

