"""Every manifest in deploy/ checked offline, and checked against what reads it.

- Kubernetes objects: kubernetes-validate, strict (an unknown field fails), for the oldest and newest Kubernetes
  the README supports.
- KubeRay objects: deploy/kuberay/schema.json (the KubeRay v1 CRD fields the manifests use); their pod templates
  as Kubernetes PodTemplateSpecs.
- The cluster launcher YAML: Ray's own config validation.
- Agreement: the RayJob's command parses with samprivacy's CLI and its spec file loads; the spec's storage points
  at the Services, ports and databases the manifests create; every Secret key and ConfigMap a manifest reads is
  created by deploy/README.md; the MLflow server's command parses with MLflow's CLI; images match pyproject.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import string
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from samprivacy.cli import build_parser
from samprivacy.ops.submit import DEFAULT_ADDRESS
from samprivacy.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
README = (DEPLOY / "README.md").read_text()
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
KUBE_FILES = [p for p in sorted((DEPLOY / "kubernetes").glob("*.yaml")) if p.name != "sweep.yaml"]
KUBERAY_FILES = sorted((DEPLOY / "kuberay").glob("*.yaml"))
SCHEMA = json.loads((DEPLOY / "kuberay" / "schema.json").read_text())
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def documents(paths) -> list[dict]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


def named(kind: str, name: str) -> dict:
    (doc,) = [d for d in documents(KUBE_FILES + KUBERAY_FILES) if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def cluster_specs() -> list[tuple[str, dict]]:
    """(name, RayClusterSpec) of the RayCluster and of the RayJob's cluster."""
    return [(d["metadata"]["name"], d["spec"] if d["kind"] == "RayCluster" else d["spec"]["rayClusterSpec"])
            for d in documents(KUBERAY_FILES)]


def pod_templates() -> list[tuple[str, dict]]:
    found = [(f"{kind}/{d['metadata']['name']}", d["spec"]["template"]) for d in documents(KUBE_FILES)
             for kind in [d["kind"]] if kind in ("Deployment", "StatefulSet", "Job")]
    for name, spec in cluster_specs():
        found.append((f"{name}/head", spec["headGroupSpec"]["template"]))
        found += [(f"{name}/{g['groupName']}", g["template"]) for g in spec.get("workerGroupSpecs", [])]
    return found


def containers() -> list[tuple[str, dict]]:
    return [(f"{where}/{c['name']}", c) for where, t in pod_templates() for c in t["spec"]["containers"]]


def readme_commands(pattern: str) -> list[str]:
    """README shell commands (continued lines joined) that match `pattern`."""
    joined = re.sub(r"\\\n\s*", " ", README)
    return [line for line in joined.splitlines() if re.search(pattern, line)]


# -- Kubernetes objects ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("doc", documents(KUBE_FILES), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_kubernetes_objects_validate_strictly(doc, version):
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("where, template", pod_templates(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_pod_template_validates_as_a_kubernetes_pod_template(where, template):
    wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
    kubernetes_validate.validate(wrapped, KUBERNETES_VERSIONS[-1], strict=True)


def test_strict_validation_refuses_a_misspelt_field():
    deployment = copy.deepcopy(named("Deployment", "mlflow"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


# -- KubeRay objects ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("doc", documents(KUBERAY_FILES), ids=lambda d: d["kind"])
def test_kuberay_objects_match_the_crd_fields(doc):
    jsonschema.validate(doc, SCHEMA)


@pytest.mark.parametrize("break_it", [
    lambda d: d["spec"].setdefault("authOptions", {}).update(mode="tokens"),
    lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplica=4),
    lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"),
    lambda d: d["spec"].update(enableInTreeAutoscaling="yes"),
])
def test_the_schema_refuses_what_kuberay_would(break_it):
    cluster = copy.deepcopy(named("RayCluster", "samprivacy"))
    break_it(cluster)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cluster, SCHEMA)


def test_the_schema_names_the_kuberay_version_it_was_checked_against():
    assert SCHEMA["x-kuberay-version"] == "v1.7.0" and "v1.7.0" in SCHEMA["$comment"]
    assert "KubeRay v1.7.0" in README


@pytest.mark.parametrize("name, spec", cluster_specs())
def test_token_authentication_is_on_with_the_readme_s_token(name, spec):
    import ray

    assert spec["authOptions"] == {"mode": "token", "secretName": "samprivacy-ray-token"}
    assert spec["rayVersion"] == ray.__version__  # the image's Ray; authOptions needs 2.52 or later
    assert "auth_token" in readme_secrets()["samprivacy-ray-token"]


@pytest.mark.parametrize("name, spec", cluster_specs())
def test_worker_groups_autoscale_within_bounds_and_gpus_use_the_cuda_image(name, spec):
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # trials never land on the head
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"], group["groupName"]
        (container,) = group["template"]["spec"]["containers"]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        assert container["image"].endswith("-cuda" if gpus else "-cpu"), group["groupName"]
        if gpus:
            assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus


# -- the RayJob, the spec and the services agree ----------------------------------------------------------------
def test_the_rayjob_runs_samprivacy_on_the_spec_from_its_configmap():
    job = named("RayJob", "samprivacy-sweep")
    python, flag, module, *args = shlex.split(job["spec"]["entrypoint"])
    assert (python, flag, module) == ("python", "-m", "samprivacy.cli")
    parsed = build_parser().parse_args(args)
    assert parsed.command == "run"
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mount = next(m for m in head["containers"][0]["volumeMounts"] if Path(parsed.spec).parent == Path(m["mountPath"]))
    volume = next(v for v in head["volumes"] if v["name"] == mount["name"])
    configmap, key = volume["configMap"]["name"], Path(parsed.spec).name
    assert key in readme_configmaps()[configmap]  # created from deploy/kubernetes/sweep.yaml by the README


def test_the_sweep_spec_loads_and_its_storage_points_at_the_services():
    spec = load_spec(DEPLOY / "kubernetes" / "sweep.yaml")
    mlflow, optuna = urlsplit(spec.storage.mlflow_uri), urlsplit(spec.storage.optuna_url)
    assert (mlflow.hostname, mlflow.port) == service_address("mlflow")
    assert (optuna.hostname, optuna.port) == service_address("postgres")
    assert optuna.username == "optuna" and optuna.password is None  # the password comes from a Secret
    assert optuna.path.lstrip("/") in init_databases() and "optuna" in init_roles()
    assert spec.storage.tune_storage.startswith("s3://")  # every node reaches it
    for name, cluster in cluster_specs():  # the driver's workdir is on the head's volume
        mounts = [m["mountPath"] for m in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"]]
        assert any(Path(spec.storage.workdir).is_relative_to(m) for m in mounts), name


def test_the_mlflow_server_command_parses_with_mlflow_s_cli_and_agrees_with_the_manifests():
    from mlflow.cli import server

    container = named("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["mlflow", "server"]
    options = server.make_context("server", list(container["args"])).params
    assert options["app_name"] == "basic-auth" and options["serve_artifacts"]
    assert options["artifacts_destination"].startswith("s3://")
    assert options["port"] == container["ports"][0]["containerPort"] == service_target_port("mlflow")
    backend = urlsplit(options["backend_store_uri"])
    assert (backend.hostname, backend.port) == service_address("postgres") and backend.username == "mlflow"
    ini = named("ConfigMap", "mlflow-auth")["data"]["basic_auth.ini"]
    auth_db = urlsplit(re.search(r"database_uri = (\S+)", ini).group(1))
    assert (auth_db.hostname, auth_db.port) == service_address("postgres")
    assert {backend.path.lstrip("/"), auth_db.path.lstrip("/")} <= init_databases() and "mlflow" in init_roles()
    env = {e["name"]: e for e in container["env"]}
    mount = container["volumeMounts"][0]
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == f"{mount['mountPath']}/basic_auth.ini"
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):  # no default since MLflow 3.16
        assert "secretKeyRef" in env[name]["valueFrom"]


def test_environment_variables_are_ones_their_readers_know():
    import mlflow.environment_variables as mlflow_env

    known = {name for name in dir(mlflow_env) if name.startswith("MLFLOW_")}
    known |= {"PGPASSWORD", "PGDATA", "POSTGRES_PASSWORD", "MLFLOW_DB_PASSWORD", "OPTUNA_DB_PASSWORD",  # postgres
              "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",  # boto3, pyarrow
              "ADMIN_PASSWORD", "USERNAME", "PASSWORD"}  # the sweeper-user Job's own script
    init = (DEPLOY / "postgres" / "10-samprivacy.sh").read_text()
    assert "$MLFLOW_DB_PASSWORD" in init and "$OPTUNA_DB_PASSWORD" in init
    for where, container in containers():
        names = {e["name"] for e in container.get("env", [])}
        assert names <= known, (where, names - known)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD",
                 "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"):
        assert name in known, f"MLflow no longer reads {name}"


def test_ray_pods_hold_the_credentials_their_processes_use():
    for where, container in containers():
        if not where.split("/")[0].startswith("samprivacy") or "ray-" not in where:
            continue
        names = {e["name"] for e in container["env"]}
        assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID"} <= names, where
        assert ("PGPASSWORD" in names) == where.endswith("/ray-head"), where  # only drivers talk to Optuna


def test_every_secret_key_and_configmap_read_is_created_somewhere():
    secrets, configmaps = readme_secrets(), readme_configmaps()
    made = {d["metadata"]["name"] for d in documents(KUBE_FILES) if d["kind"] == "ConfigMap"}
    used_secrets = set()
    for where, container in containers():
        for env in container.get("env", []):
            if ref := env.get("valueFrom", {}).get("secretKeyRef"):
                assert ref["key"] in secrets.get(ref["name"], set()), (where, ref)
                used_secrets.add((ref["name"], ref["key"]))
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in made | set(configmaps), where
    for where, template in pod_templates():
        for volume in template["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in made | set(configmaps), where
    written = {(name, key) for name, keys in secrets.items() for key in keys}
    assert written - used_secrets == {("samprivacy-ray-token", "auth_token")}  # read by KubeRay (authOptions)


def test_ports_agree_with_the_cli_and_the_readme():
    dashboard = urlsplit(DEFAULT_ADDRESS).port
    for name, spec in cluster_specs():
        ports = {p["name"]: p["containerPort"] for p in spec["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]}
        assert ports["dashboard"] == dashboard and ports["gcs-server"] == 6379
    assert readme_commands(rf"port-forward svc/samprivacy-head-svc {dashboard}:{dashboard}")
    assert readme_commands(r"port-forward svc/mlflow 5000:5000")


# -- images -------------------------------------------------------------------------------------------------------
def test_images_are_the_project_s_at_its_version():
    version = PROJECT["version"]
    for where, container in containers():
        if not container["image"].startswith("postgres:"):
            assert container["image"] in (f"samprivacy:{version}-cpu", f"samprivacy:{version}-cuda"), where
    launcher = yaml.safe_load((DEPLOY / "launcher" / "aws.yaml").read_text())
    assert launcher["docker"]["head_image"] == f"samprivacy:{version}-cpu"
    assert launcher["available_node_types"]["gpu_worker"]["docker"]["worker_image"] == f"samprivacy:{version}-cuda"


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_dockerfiles_build_the_tag_the_manifests_use_with_pyproject_s_torch(variant):
    dockerfile = (DEPLOY / "images" / f"Dockerfile.{variant}").read_text()
    assert f"-f deploy/images/Dockerfile.{variant} -t $REGISTRY/samprivacy:{PROJECT['version']}-{variant} ." \
        in dockerfile
    python = PROJECT["requires-python"].lstrip(">=")
    assert re.search(rf"^FROM python:{re.escape(python)}-", dockerfile, re.M)
    for package in ("torch", "torchvision"):
        (pin,) = [d for d in PROJECT["dependencies"] if re.match(rf"{package}\b[<>=]", d)]
        assert f'"{pin}"' in dockerfile, pin
    assert ("download.pytorch.org/whl/cpu" in dockerfile) == (variant == "cpu")
    assert '[cluster]"' in dockerfile


# -- the cluster launcher and the local spec ------------------------------------------------------------------
def launcher_config() -> dict:
    return yaml.safe_load((DEPLOY / "launcher" / "aws.yaml").read_text())


def validate_launcher(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_the_launcher_config_passes_ray_s_validation():
    config = launcher_config()
    validate_launcher(config)
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    assert "~/.ray/auth_token" in config["file_mounts"]
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        assert "export RAY_AUTH_MODE=token;" in command and "ray stop" not in command


@pytest.mark.parametrize("break_it", [
    lambda c: c.update(max_worker=3),
    lambda c: c["available_node_types"]["gpu_worker"].update(min_workers="zero"),
    lambda c: c.update(head_node_type="gpu"),
])
def test_ray_s_validation_refuses_a_broken_launcher_config(break_it):
    config = launcher_config()
    break_it(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validate_launcher(config)


def test_the_local_spec_template_renders_to_a_valid_spec_on_the_cluster_s_storage():
    values = {"SPR_MLFLOW_URI": "http://10.231.0.1:5000", "SPR_OPTUNA_URL": "postgresql://optuna@10.231.0.1:5432/optuna",
              "SPR_SHARED": "/var/tmp/samprivacy-local/shared"}
    # up.sh runs envsubst on exactly these three names; other $ words (in comments) stay as they are
    text = string.Template((DEPLOY / "local" / "quickstart.yaml").read_text()).safe_substitute(values)
    assert "${SPR_" not in text
    spec = parse_spec(yaml.safe_load(text))
    assert spec.storage.mlflow_uri == values["SPR_MLFLOW_URI"] and spec.storage.optuna_url == values["SPR_OPTUNA_URL"]
    assert spec.storage.tune_storage.startswith(values["SPR_SHARED"])
    assert spec.max_concurrent == 2 and spec.resources.cpu == 1  # one trial on each node at a time


# -- what the README and deploy/postgres create -------------------------------------------------------------------
def readme_secrets() -> dict[str, set[str]]:
    secrets = {}
    for command in readme_commands(r"create secret generic"):
        name = re.search(r"create secret generic (\S+)", command).group(1)
        secrets[name] = set(re.findall(r"--from-literal=([\w.-]+)=", command))
    return secrets


def readme_configmaps() -> dict[str, set[str]]:
    configmaps = {}
    for command in readme_commands(r"create configmap"):
        name = re.search(r"create configmap (\S+)", command).group(1)
        keys = set()
        for source in re.findall(r"--from-file=(\S+)", command):
            key, _, path = source.rpartition("=")
            keys |= {key} if key else {p.name for p in (ROOT / path).glob("*")} if (ROOT / path).is_dir() \
                else {Path(path).name}
        configmaps[name] = keys
    return configmaps


def init_databases() -> set[str]:
    return set(re.findall(r"CREATE DATABASE (\w+)", (DEPLOY / "postgres" / "init.psql").read_text()))


def init_roles() -> set[str]:
    return set(re.findall(r"CREATE ROLE (\w+)", (DEPLOY / "postgres" / "init.psql").read_text()))


def service_address(name: str) -> tuple[str, int]:
    service = named("Service", name)
    return f"{name}.{service['metadata']['namespace']}.svc", service["spec"]["ports"][0]["port"]


def service_target_port(name: str) -> int:
    """The container port a Service sends to (its targetPort names a port of the selected pods)."""
    service = named("Service", name)
    target = service["spec"]["ports"][0]["targetPort"]
    for _, template in pod_templates():
        if template.get("metadata", {}).get("labels", {}).items() >= service["spec"]["selector"].items():
            return next(p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]
                        if p["name"] == target)
    raise AssertionError(f"no pod behind Service {name}")
