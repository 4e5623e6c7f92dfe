"""The Ray cluster a sweep runs on: join it (or start a private local one), then check, before any state is
written, that one trial's `resources` fit on some node.

A fixed cluster (a private local Ray, or a cluster without an autoscaler) never grows, so a trial that no node
can hold would wait forever: such a sweep is refused at once, naming `resources.cpu` / `resources.gpu`, what the
nodes have, and the fix. On an autoscaling cluster the sweep starts and says it waits for a node to be added.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import ray

from samprivacy.compat import autoscaling_status
from samprivacy.errors import ConfigError
from samprivacy.spec import Resources

LOCAL = "a private local Ray on this machine"


@dataclass(frozen=True)
class Cluster:
    """What the sweep sees of its Ray cluster: each alive node's CPUs and GPUs, and whether it autoscales."""

    where: str
    nodes: tuple[tuple[float, float], ...]  # (CPU, GPU) per alive node
    autoscaling: bool

    def describe(self) -> str:
        sizes = sorted(set(self.nodes), reverse=True)
        return ", ".join(f"{_amount(c, 'CPU')} and {_amount(g, 'GPU')}" for c, g in sizes) or "no alive nodes"


def start_ray(address: str | None) -> str:
    """Join `address`, or the cluster a Ray job runs in (RAY_ADDRESS), or start a private local Ray; returns
    which, in words.

    "local" matters: a bare ray.init() would attach to any cluster `ray start` left running on this machine.
    """
    joined = address or os.environ.get("RAY_ADDRESS")
    where = f"the Ray cluster at {joined}" if joined else LOCAL
    if not ray.is_initialized():
        ray.init(address=joined or "local", logging_level=logging.WARNING, log_to_driver=False,
                 include_dashboard=None if joined else False)
    return where


def inspect_cluster(where: str) -> Cluster:
    nodes = tuple((float(n["Resources"].get("CPU", 0.0)), float(n["Resources"].get("GPU", 0.0)))
                  for n in ray.nodes() if n.get("Alive"))
    return Cluster(where, nodes, autoscaling=where != LOCAL and _autoscaling())


def _autoscaling() -> bool:
    """Whether an autoscaler can add nodes: autoscaler v2 says so in the GCS; v1 publishes its node types, which
    are read-only mirrors of the running nodes (named node_<id>) when there is no autoscaling config; the
    cluster launcher leaves ~/ray_bootstrap_config.yaml on the head node."""
    from ray.autoscaler.v2.utils import is_autoscaler_v2

    try:
        if is_autoscaler_v2(fetch_from_server=True):
            return True
        status = autoscaling_status()
        if status:
            types = set((status.get("autoscaler_report") or {}).get("node_type_mapping", {}).values())
            if any(not t.startswith("node_") for t in types):
                return True
    except Exception:  # an older or newer GCS without these keys: fall back to the launcher's file
        pass
    return Path("~/ray_bootstrap_config.yaml").expanduser().exists()


def _amount(value: float, unit: str) -> str:
    number = int(value) if value == int(value) else value
    return f"{number} {unit}{'' if number == 1 else 's'}"


def check_resources(resources: Resources, cluster: Cluster) -> str | None:
    """None if some node can hold one trial. Otherwise, on an autoscaling cluster, a note that the sweep waits
    for resources; on a fixed one, a ConfigError naming each field no node satisfies, with the fix."""
    cpu, gpu = resources.cpu, resources.gpu
    if any(c >= cpu and g >= gpu for c, g in cluster.nodes):
        return None
    if cluster.autoscaling:
        return (f"no node of {cluster.where} has {_amount(cpu, 'CPU')} and {_amount(gpu, 'GPU')} free for a trial "
                f"yet (now: {cluster.describe()}); waiting for the autoscaler to add one")
    most_cpu = max((c for c, _ in cluster.nodes), default=0.0)
    most_gpu = max((g for _, g in cluster.nodes), default=0.0)
    has = f"{cluster.where} has {cluster.describe()}, and it does not autoscale"
    problems = []
    if gpu > most_gpu:
        fix = (f"set resources.gpu to at most {most_gpu:g}" if most_gpu else
               "set resources.gpu: 0 to train on CPUs")
        problems.append(f"resources.gpu: each trial asks for {_amount(gpu, 'GPU')}, but no node has that many "
                        f"({has}); {fix}, or run on a cluster with GPUs (--address)")
    if cpu > most_cpu:
        problems.append(f"resources.cpu: each trial asks for {_amount(cpu, 'CPU')}, but no node has that many "
                        f"({has}); set resources.cpu to at most {most_cpu:g}, or run on a larger cluster (--address)")
    if not problems:  # each fits somewhere, never both on one node
        problems.append(f"resources: each trial asks for {_amount(cpu, 'CPU')} and {_amount(gpu, 'GPU')} on one "
                        f"node, but no node has both ({has}); lower resources.cpu or resources.gpu")
    raise ConfigError("a trial cannot be scheduled:\n  " + "\n  ".join(problems))


def join_cluster(resources: Resources, address: str | None) -> str | None:
    """Start or join Ray, then check that one trial fits a node (ConfigError if it never can); returns the note
    to show when the sweep must wait for an autoscaler. Cheap to call again once Ray is up."""
    return check_resources(resources, inspect_cluster(start_ray(address)))
