"""Resources checked before anything starts: a trial no node of a fixed cluster can hold is refused at once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from samprivacy.cli import main
from samprivacy.errors import ConfigError
from samprivacy.spec import Resources
from samprivacy.sweep.cluster import LOCAL, Cluster, check_resources

LAPTOP = Cluster(LOCAL, ((2.0, 0.0),), autoscaling=False)
ROOT = Path(__file__).resolve().parents[2]


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_a_trial_that_fits_a_node_passes():
    assert check_resources(Resources(cpu=2, gpu=0), LAPTOP) is None
    mixed = Cluster("the Ray cluster at auto", ((16.0, 0.0), (8.0, 4.0)), autoscaling=False)
    assert check_resources(Resources(cpu=8, gpu=0.25), mixed) is None


def test_a_gpu_trial_on_a_machine_without_one_names_resources_gpu_and_the_fix():
    with pytest.raises(ConfigError) as info:
        check_resources(Resources(cpu=1, gpu=1), LAPTOP)
    message = str(info.value)
    assert "resources.gpu: each trial asks for 1 GPU" in message
    assert "a private local Ray on this machine has 2 CPUs and 0 GPUs" in message
    assert "set resources.gpu: 0 to train on CPUs" in message
    assert "resources.cpu" not in message


def test_too_many_cpus_names_resources_cpu_and_the_largest_node():
    cluster = Cluster("the Ray cluster at ray://head:10001", ((4.0, 1.0), (2.0, 0.0)), autoscaling=False)
    with pytest.raises(ConfigError) as info:
        check_resources(Resources(cpu=6, gpu=0), cluster)
    message = str(info.value)
    assert "resources.cpu: each trial asks for 6 CPUs" in message and "at most 4" in message
    assert "4 CPUs and 1 GPU, 2 CPUs and 0 GPUs" in message and "resources.gpu" not in message


def test_both_fields_are_named_when_neither_fits():
    with pytest.raises(ConfigError) as info:
        check_resources(Resources(cpu=4, gpu=0.25), LAPTOP)
    assert "resources.gpu: each trial asks for 0.25 GPUs" in str(info.value)
    assert "resources.cpu: each trial asks for 4 CPUs" in str(info.value)


def test_each_fits_somewhere_but_never_together():
    cluster = Cluster("the Ray cluster at auto", ((8.0, 0.0), (2.0, 1.0)), autoscaling=False)
    with pytest.raises(ConfigError, match="no node has both"):
        check_resources(Resources(cpu=4, gpu=1), cluster)


def test_an_autoscaling_cluster_starts_and_says_it_waits():
    cluster = Cluster("the Ray cluster at auto", ((2.0, 0.0),), autoscaling=True)
    note = check_resources(Resources(cpu=1, gpu=1), cluster)
    assert "waiting for the autoscaler" in note and "1 GPU" in note


@pytest.mark.slow
def test_the_gpu_example_and_a_cpu_hungry_spec_exit_2_before_writing_anything(tmp_path, capsys):
    import ray

    try:
        workdir = tmp_path / "gpu"
        assert main(["run", str(ROOT / "sweeps" / "gpu_cifar100.yaml"), "--workdir", str(workdir)]) == 2
        err = one_line(capsys.readouterr().err)
        assert "resources.gpu: each trial asks for 0.25 GPUs" in err and "set resources.gpu: 0" in err
        assert "Traceback" not in err and not workdir.exists()

        spec = json.loads(json.dumps({
            "name": "hungry", "optimizers": {"sgd": {}}, "trials": 1, "resources": {"cpu": 64}}))
        (tmp_path / "hungry.yaml").write_text(json.dumps(spec))
        assert main(["run", str(tmp_path / "hungry.yaml"), "--workdir", str(tmp_path / "cpu")]) == 2
        err = one_line(capsys.readouterr().err)
        assert "resources.cpu: each trial asks for 64 CPUs" in err and not (tmp_path / "cpu").exists()

        from samprivacy.sweep.cluster import inspect_cluster

        assert inspect_cluster("the Ray cluster at test").autoscaling is False  # `ray start` without autoscaler
    finally:
        ray.shutdown()
        shutil.rmtree(tmp_path, ignore_errors=True)
