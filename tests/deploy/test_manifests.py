"""Every manifest in deploy/ checked offline, and checked against what reads it.

- Kubernetes objects: kubernetes-validate, strict (an unknown field fails), for the oldest and newest Kubernetes
  the README supports.
- KubeRay objects: deploy/kuberay/schema.json (the KubeRay v1 CRD fields the manifests use); their pod templates
  as Kubernetes PodTemplateSpecs.
- The cluster launcher YAML: Ray's own config validation.
- Hardening: every pod and container runs restricted (non-root, no privilege escalation, no capabilities,
  seccomp RuntimeDefault, read-only root filesystem, fsGroup for volumes), the namespace enforces Pod Security
  "restricted", no Secret value is inline, no Service exposes Ray's ports outside the cluster, the
  NetworkPolicies let in exactly the expected connections, PostgreSQL is reached over TLS, MLflow through an
  HTTPS Ingress, and cloud access goes through workload identity (no keys in any pod). Each check is shown to
  fail on the regression it guards against.
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
    found += [(f"{d['metadata']['name']}/submitter", d["spec"]["submitterPodTemplate"])
              for d in documents(KUBERAY_FILES) if "submitterPodTemplate" in d["spec"]]
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
              "AWS_DEFAULT_REGION",  # boto3, pyarrow
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
    templates = dict(pod_templates())
    for where, container in containers():
        if not where.endswith(("/ray-head", "/ray-worker")):
            continue
        names = {e["name"] for e in container["env"]}
        assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= names, where
        assert ("PGPASSWORD" in names) == where.endswith("/ray-head"), where  # only drivers talk to Optuna
        # S3 through the ServiceAccount's IAM role (IRSA), never keys in the pod
        assert templates[where.rsplit("/", 1)[0]]["spec"]["serviceAccountName"] == "samprivacy-ray", where


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


def launcher_problems(config: dict) -> list[str]:
    """Least privilege of the AWS launcher: Ray's defaults are an instance profile with EC2 and S3 full access
    and a security group with SSH open to the world, on nodes with public addresses."""
    problems = []
    if config["provider"].get("use_internal_ips") is not True:
        problems.append("nodes get public addresses (use_internal_ips is not true)")
    if "security_group" in config["provider"]:
        problems.append("provider.security_group: Ray's own group, SSH open to 0.0.0.0/0")
    profiles = {}
    for name, node_type in config["available_node_types"].items():
        node = node_type["node_config"]
        arn = node.get("IamInstanceProfile", {}).get("Arn", "")
        if ":instance-profile/samprivacy-" not in arn:
            problems.append(f"{name}: no instance profile of its own (Ray's default has EC2 and S3 full access)")
        profiles[name] = arn
        if not node.get("SecurityGroupIds"):
            problems.append(f"{name}: no security group of its own (Ray's default opens SSH to the world)")
        if not node.get("SubnetIds"):
            problems.append(f"{name}: no private subnets named")
        if node.get("NetworkInterfaces") and any(i.get("AssociatePublicIpAddress") for i in node["NetworkInterfaces"]):
            problems.append(f"{name}: a public address")
    head = config["head_node_type"]
    if any(arn == profiles[head] for name, arn in profiles.items() if name != head):
        problems.append("a worker has the head's instance profile (the head's may launch instances)")
    return problems


def test_the_launcher_has_least_privilege():
    assert launcher_problems(launcher_config()) == []
    (env_file,) = re.findall(r"cat > ~/\.samprivacy/aws\.env <<EOF\n(.*?)\n\s*EOF", README, re.S)
    assert "MLFLOW_TRACKING_PASSWORD" in env_file and "AWS_" not in env_file  # S3 from the instance profile
    cidrs = re.findall(r"--cidr[= ](\S+)", re.sub(r"\\\n\s*", " ", README))
    assert cidrs and "0.0.0.0/0" not in cidrs  # SSH only from the named admin CIDR
    assert "sslmode=require" in README and "https://" in README  # RDS over TLS, MLflow behind TLS


@pytest.mark.parametrize("break_it", [
    lambda c: c["provider"].pop("use_internal_ips"),
    lambda c: c["available_node_types"]["head"]["node_config"].pop("IamInstanceProfile"),
    lambda c: c["available_node_types"]["gpu_worker"]["node_config"].pop("SecurityGroupIds"),
    lambda c: c["provider"].update(security_group={"GroupName": "ray", "IpPermissions": []}),
    lambda c: c["available_node_types"]["cpu_worker"]["node_config"].update(
        IamInstanceProfile=c["available_node_types"]["head"]["node_config"]["IamInstanceProfile"]),
], ids=["public addresses", "no head profile", "default security group", "Ray's security group",
        "a worker with the head's profile"])
def test_the_launcher_check_fails_on_a_regression(break_it):
    config = launcher_config()
    break_it(config)
    assert launcher_problems(config) != []


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


# -- hardening ------------------------------------------------------------------------------------------------------
# Checked over the documents given, so that each test below can show a check failing on a broken copy.
CERT_FILES = sorted((DEPLOY / "certmanager").glob("*.yaml"))
RAY_PORTS = {6379, 8265, 10001}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.I)
# KubeRay labels every Ray pod so; the NetworkPolicies select them by these labels
RAY_LABELS = {"head": {"ray.io/is-ray-node": "yes", "ray.io/node-type": "head", "ray.io/cluster": "samprivacy"},
              "worker": {"ray.io/is-ray-node": "yes", "ray.io/node-type": "worker", "ray.io/cluster": "samprivacy"}}


def templates_of(docs: list[dict]) -> list[tuple[str, dict]]:
    """(where, pod template, extra labels the controller adds) of every pod the documents make."""
    found = []
    for d in docs:
        where = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            found.append((where, d["spec"]["template"], {}))
        elif d["kind"] in ("RayCluster", "RayJob"):
            spec = d["spec"] if d["kind"] == "RayCluster" else d["spec"]["rayClusterSpec"]
            found.append((f"{where}/head", spec["headGroupSpec"]["template"], RAY_LABELS["head"]))
            found += [(f"{where}/{g['groupName']}", g["template"], RAY_LABELS["worker"])
                      for g in spec.get("workerGroupSpecs", [])]
            if "submitterPodTemplate" in d["spec"]:
                found.append((f"{where}/submitter", d["spec"]["submitterPodTemplate"], {}))
    return found


def pod_problems(where: str, template: dict) -> list[str]:
    spec, problems = template["spec"], []
    pod = spec.get("securityContext", {})
    if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: no seccompProfile RuntimeDefault")
    if any("persistentVolumeClaim" in v for v in spec.get("volumes", [])) and "fsGroup" not in pod:
        problems.append(f"{where}: a volume but no fsGroup (a non-root user could not write it)")
    if "serviceAccountName" not in spec:
        problems.append(f"{where}: the namespace's default ServiceAccount")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        ctx = c.get("securityContext", {})
        if not (ctx.get("runAsNonRoot", pod.get("runAsNonRoot")) is True):
            problems.append(f"{where}/{c['name']}: may run as root (runAsNonRoot)")
        if ctx.get("runAsUser", pod.get("runAsUser")) == 0:
            problems.append(f"{where}/{c['name']}: runAsUser 0")
        problems += container_context_problems(f"{where}/{c['name']}", ctx)
        for env in c.get("env", []):
            if SECRET_NAME.search(env["name"]) and "value" in env:
                problems.append(f"{where}/{c['name']}: secret {env['name']} written inline")
            if env["name"] in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                problems.append(f"{where}/{c['name']}: cloud keys in the pod (use workload identity)")
    return problems


def container_context_problems(where: str, ctx: dict) -> list[str]:
    problems = []
    if ctx.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if ctx.get("capabilities", {}).get("drop") != ["ALL"] or ctx.get("capabilities", {}).get("add"):
        problems.append(f"{where}: capabilities not all dropped")
    if ctx.get("privileged"):
        problems.append(f"{where}: privileged")
    if ctx.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: root filesystem writable")
    return problems


def selects(selector: dict, labels: dict) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items() and not selector.get("matchExpressions")


def allowed(policies: list[dict], source: tuple[str, dict], target: dict, port: int) -> bool:
    """Whether the NetworkPolicies of namespace samprivacy let `source` (namespace, labels) connect to a pod
    of that namespace with `target` labels on `port` (Kubernetes' rules: isolated once any policy selects it;
    then the union of their rules)."""
    applying = [p for p in policies if selects(p["spec"]["podSelector"], target)
                and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])]
    if not applying:
        return True
    namespace, labels = source
    for policy in applying:
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if ports and port not in ports:
                continue
            for peer in rule.get("from", [{}]):
                in_namespace = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}) \
                    if "namespaceSelector" in peer else namespace == "samprivacy"
                if in_namespace and ("podSelector" not in peer or selects(peer["podSelector"], labels)):
                    return True
    return False


# Every pod the manifests make, and the outside parties, as (namespace, labels)
def network_parties(docs: list[dict]) -> dict[str, tuple[str, dict]]:
    parties = {where: ("samprivacy", {**template.get("metadata", {}).get("labels", {}), **extra})
               for where, template, extra in templates_of(docs)}
    parties |= {"kuberay-operator": ("kuberay-system", {"app.kubernetes.io/name": "kuberay-operator"}),
                "ingress-controller": ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}),
                "another pod in the namespace": ("samprivacy", {"app": "debug"}),
                "a pod in another namespace": ("default", {"ray.io/is-ray-node": "yes"})}
    return parties


def expected_connections() -> set[tuple[str, str, int]]:
    """(source, target, port) that must be allowed; every other combination must be refused."""
    ray = ["RayCluster/samprivacy/head", "RayCluster/samprivacy/cpu", "RayCluster/samprivacy/gpu"]
    job_ray = ["RayJob/samprivacy-sweep/head", "RayJob/samprivacy-sweep/gpu"]
    ports = RAY_PORTS | {5000, 5432}
    want = {(a, b, port) for group in (ray, job_ray) for a in group for b in group for port in ports}
    want |= {(a, b, port) for a in ray for b in job_ray for port in ports}  # KubeRay's labels: any Ray pod
    want |= {(b, a, port) for a in ray for b in job_ray for port in ports}
    for head in ("RayCluster/samprivacy/head", "RayJob/samprivacy-sweep/head"):
        want |= {("kuberay-operator", head, 8265), ("RayJob/samprivacy-sweep/submitter", head, 8265)}
    for source in ray + job_ray + ["Job/mlflow-sweeper-user", "ingress-controller"]:
        want.add((source, "Deployment/mlflow", 5000))
    for source in ("Deployment/mlflow", "RayCluster/samprivacy/head", "RayJob/samprivacy-sweep/head"):
        want.add((source, "StatefulSet/postgres", 5432))
    return want


def hardening_problems(docs: list[dict]) -> list[str]:
    problems = []
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    for ns in namespaces:
        labels = ns["metadata"].get("labels", {})
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            problems.append(f"namespace {ns['metadata']['name']}: Pod Security 'restricted' not enforced")
    if not namespaces:
        problems.append("no Namespace")
    for where, template, _ in templates_of(docs):
        problems += pod_problems(where, template)
    for d in docs:
        where = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "Secret" and (d.get("data") or d.get("stringData")):
            problems.append(f"{where}: a Secret's value in the repository")
        if d["kind"] == "Service" and d["spec"].get("type") in ("LoadBalancer", "NodePort"):
            problems.append(f"{where}: type {d['spec']['type']} exposes it outside the cluster")
        if d["kind"] in ("RayCluster", "RayJob"):
            spec = d["spec"] if d["kind"] == "RayCluster" else d["spec"]["rayClusterSpec"]
            if spec["headGroupSpec"].get("serviceType", "ClusterIP") != "ClusterIP":
                problems.append(f"{where}: the head's Service ({spec['headGroupSpec']['serviceType']}) exposes "
                                f"Ray's ports outside the cluster")
            if spec.get("enableInTreeAutoscaling"):
                problems += container_context_problems(f"{where}/autoscaler",
                                                       spec.get("autoscalerOptions", {}).get("securityContext", {}))
    for d in docs:  # a Service that reaches Ray pods on Ray's ports, outside the cluster
        if d["kind"] == "Service" and d["spec"].get("type") in ("LoadBalancer", "NodePort"):
            if {p.get("targetPort", p["port"]) for p in d["spec"]["ports"]} & RAY_PORTS:
                problems.append(f"Service/{d['metadata']['name']}: Ray's ports outside the cluster")
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    parties, want = network_parties(docs), expected_connections()
    for target, (namespace, labels) in parties.items():
        if namespace != "samprivacy":
            continue
        for source, party in parties.items():
            for port in sorted(RAY_PORTS | {5000, 5432}):
                if source == target:
                    continue
                if allowed(policies, party, labels, port) != ((source, target, port) in want):
                    problems.append(f"network: {source} -> {target}:{port} is "
                                    f"{'allowed' if (source, target, port) not in want else 'refused'}")
    return problems


def tls_problems(docs: list[dict]) -> list[str]:
    problems = []
    for d in docs:  # every PostgreSQL URL crosses the pod network: sslmode=require
        for url in re.findall(r"postgresql://[^\s'\"]+", json.dumps(d)):
            if "sslmode=require" not in url and "sslmode=verify" not in url:
                problems.append(f"{d['kind']}/{d['metadata']['name']}: {url} without sslmode=require")
    postgres = next((d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "postgres"), None)
    if postgres is None or "ssl=on" not in postgres["spec"]["template"]["spec"]["containers"][0].get("args", []):
        problems.append("PostgreSQL does not serve TLS (ssl=on)")
    hba = next((d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "postgres-hba"), None)
    if hba is None or re.search(r"^\s*host\s", hba["data"]["pg_hba.conf"], re.M):
        problems.append("pg_hba.conf accepts network logins without TLS")
    ingresses = [d for d in docs if d["kind"] == "Ingress"]
    if not any(i["spec"].get("tls") and "cert-manager.io/cluster-issuer" in i["metadata"].get("annotations", {})
               and i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "mlflow"
               for i in ingresses):
        problems.append("no HTTPS Ingress with a cert-manager certificate for MLflow")
    return problems


def all_documents() -> list[dict]:
    return documents(KUBE_FILES + KUBERAY_FILES)


def test_every_manifest_is_hardened():
    assert hardening_problems(all_documents()) == []


def test_postgresql_and_mlflow_are_reached_over_tls():
    assert tls_problems(all_documents()) == []
    spec = load_spec(DEPLOY / "kubernetes" / "sweep.yaml")
    assert "sslmode=require" in spec.storage.optuna_url
    certificate = next(d for d in documents(CERT_FILES) if d["metadata"]["name"] == "postgres-tls")
    postgres = named("StatefulSet", "postgres")["spec"]["template"]["spec"]
    assert any(v.get("secret", {}).get("secretName") == certificate["spec"]["secretName"] for v in postgres["volumes"])
    assert "postgres.samprivacy.svc" in certificate["spec"]["dnsNames"]


def test_cloud_access_is_workload_identity_scoped_per_service_account():
    accounts = {d["metadata"]["name"]: d for d in all_documents() if d["kind"] == "ServiceAccount"}
    roles = {name: a["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn") for name, a in accounts.items()}
    assert roles["samprivacy-ray"].endswith(":role/samprivacy-ray")
    assert roles["mlflow"].endswith(":role/samprivacy-mlflow")
    assert roles["samprivacy-no-access"] is None
    for where, template, _ in templates_of(all_documents()):
        account = template["spec"]["serviceAccountName"]
        assert account in accounts, where
        assert template["spec"].get("automountServiceAccountToken") is (where.endswith("/head")), where
    # the README makes each role with a policy on its own bucket only, trusted by its own ServiceAccount
    (loop,) = re.findall(r"for role in (samprivacy-ray:\S+ \S+); do", README)
    made = {name: (bucket, account) for name, bucket, account in (r.split(":") for r in loop.split())}
    assert made == {"samprivacy-ray": ("samprivacy-runs", "samprivacy-ray"),
                    "samprivacy-mlflow": ("samprivacy-mlflow", "mlflow")}


def _mutate(kind: str, name: str, change) -> list[dict]:
    docs = copy.deepcopy(all_documents())
    change(next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), docs)
    return docs


def _pod(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


REGRESSIONS = {
    "a pod without runAsNonRoot": lambda: _mutate("Deployment", "mlflow", lambda d, _: (
        _pod(d)["securityContext"].pop("runAsNonRoot"), _pod(d)["containers"][0]["securityContext"].pop("runAsNonRoot"))),
    "a container that may escalate privileges": lambda: _mutate("StatefulSet", "postgres", lambda d, _: (
        _pod(d)["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True))),
    "a capability added back": lambda: _mutate("Job", "mlflow-sweeper-user", lambda d, _: (
        _pod(d)["containers"][0]["securityContext"].update(capabilities={"drop": ["ALL"], "add": ["NET_RAW"]}))),
    "no seccomp profile on a Ray worker": lambda: _mutate("RayCluster", "samprivacy", lambda d, _: (
        d["spec"]["workerGroupSpecs"][0]["template"]["spec"].update(
            securityContext={"runAsNonRoot": True, "fsGroup": 1000}))),
    "the autoscaler sidecar unrestricted": lambda: _mutate("RayJob", "samprivacy-sweep", lambda d, _: (
        d["spec"]["rayClusterSpec"]["autoscalerOptions"].pop("securityContext"))),
    "a head volume without fsGroup": lambda: _mutate("RayCluster", "samprivacy", lambda d, _: (
        d["spec"]["headGroupSpec"]["template"]["spec"].update(
            securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}))),
    "a namespace without Pod Security labels": lambda: _mutate("Namespace", "samprivacy", lambda d, _: (
        d["metadata"].update(labels={"app.kubernetes.io/part-of": "samprivacy"}))),
    "a Secret value inline": lambda: all_documents() + [{"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "samprivacy-mlflow", "namespace": "samprivacy"}, "stringData": {"password": "hunter2"}}],
    "a password written into an env value": lambda: _mutate("Deployment", "mlflow", lambda d, _: (
        _pod(d)["containers"][0]["env"].append({"name": "MLFLOW_AUTH_ADMIN_PASSWORD", "value": "hunter2"}))),
    "cloud keys in a Ray pod": lambda: _mutate("RayCluster", "samprivacy", lambda d, _: (
        d["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}}}))),
    "a LoadBalancer Service for Ray's dashboard": lambda: all_documents() + [{
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ray-public", "namespace": "samprivacy"},
        "spec": {"type": "LoadBalancer", "selector": {"ray.io/node-type": "head"}, "ports": [{"port": 8265}]}}],
    "a NodePort head Service": lambda: _mutate("RayCluster", "samprivacy", lambda d, _: (
        d["spec"]["headGroupSpec"].update(serviceType="NodePort"))),
    "the default-deny NetworkPolicy missing": lambda: _mutate("NetworkPolicy", "default-deny-ingress", lambda d, docs: (
        docs.remove(d))),
    "the PostgreSQL NetworkPolicy opened to every pod": lambda: _mutate(
        "NetworkPolicy", "postgres-from-mlflow-and-drivers", lambda d, _: d["spec"]["ingress"][0].pop("from")),
    "the Ray NetworkPolicy open to other namespaces": lambda: _mutate("NetworkPolicy", "ray-from-ray", lambda d, _: (
        d["spec"]["ingress"][0]["from"][0].update(namespaceSelector={}))),
}


@pytest.mark.parametrize("regression", sorted(REGRESSIONS))
def test_the_hardening_check_fails_on_a_regression(regression):
    assert hardening_problems(REGRESSIONS[regression]()) != []


@pytest.mark.parametrize("regression, change", [
    ("a PostgreSQL URL without sslmode", lambda d: d.update(
        data={"basic_auth.ini": d["data"]["basic_auth.ini"].replace("?sslmode=require", "")})),
    ("pg_hba.conf accepting plain connections", lambda d: d.update(
        data={"pg_hba.conf": d["data"]["pg_hba.conf"] + "host all all 0.0.0.0/0 scram-sha-256\n"})),
])
def test_the_tls_check_fails_on_a_regression(regression, change):
    docs = copy.deepcopy(all_documents())
    name = "mlflow-auth" if "URL" in regression else "postgres-hba"
    change(next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name))
    assert tls_problems(docs) != []


def test_the_tls_check_fails_without_the_ingress():
    assert tls_problems([d for d in all_documents() if d["kind"] != "Ingress"]) != []


def test_cert_manager_objects_are_well_formed():
    for doc in documents(CERT_FILES):
        assert doc["apiVersion"] == "cert-manager.io/v1" and doc["kind"] in ("Issuer", "Certificate"), doc["kind"]
        assert doc["metadata"]["namespace"] == "samprivacy"
        if doc["kind"] == "Certificate":
            issuer = doc["spec"]["issuerRef"]["name"]
            assert any(d["kind"] == "Issuer" and d["metadata"]["name"] == issuer for d in documents(CERT_FILES))
