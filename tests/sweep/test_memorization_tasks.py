"""How the memorization job cuts its pending models into Ray tasks (stacks), without Ray running."""

from __future__ import annotations

from samprivacy.memorization.job import TASK_MODELS, task_slots, task_stacks


def test_models_stack_up_to_the_architecture_s_limit_when_the_cluster_is_full_anyway():
    pending = {"sgd": list(range(8)), "sam": list(range(8))}
    tasks = task_stacks(pending, {"sgd": 4, "sam": 4}, slots=2)
    assert tasks == [("sgd", [0, 1, 2, 3]), ("sgd", [4, 5, 6, 7]), ("sam", [0, 1, 2, 3]), ("sam", [4, 5, 6, 7])]


def test_stacks_are_cut_so_every_task_slot_gets_work():
    """One optimizer, 8 models that could all stack, 4 slots: 4 stacks of 2, not one stack and 3 idle CPUs."""
    tasks = task_stacks({"sgd": list(range(8))}, {"sgd": 300}, slots=4)
    assert [members for _, members in tasks] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_what_cannot_stack_is_one_model_per_task_and_a_resumed_run_stacks_only_what_is_missing():
    tasks = task_stacks({"cnn": [0, 1, 2], "mlp": [5, 9, 11]}, {"cnn": 1, "mlp": 16}, slots=1)
    assert tasks == [("cnn", [0]), ("cnn", [1]), ("cnn", [2]), ("mlp", [5, 9, 11])]
    assert task_stacks({"mlp": []}, {"mlp": 16}, slots=2) == []


def test_a_task_holds_at_most_task_models_so_an_interruption_loses_little():
    tasks = task_stacks({"sgd": list(range(64))}, {"sgd": 300}, slots=1)
    assert [len(members) for _, members in tasks] == [TASK_MODELS] * (64 // TASK_MODELS)


def test_task_slots_count_what_the_cluster_runs_at_once():
    assert task_slots({"CPU": 2.0}, cpu=1, gpu=0) == 2
    assert task_slots({"CPU": 2.0}, cpu=0.5, gpu=0) == 4
    assert task_slots({"CPU": 16.0, "GPU": 3.0}, cpu=1, gpu=0.1) == 16  # 3 / 0.1 is 29.999...: 30 GPU slots
    assert task_slots({"CPU": 64.0, "GPU": 3.0}, cpu=1, gpu=0.1) == 30
    assert task_slots({"CPU": 1.0}, cpu=4, gpu=0) == 1  # (join_cluster refuses such a spec before; never 0)
