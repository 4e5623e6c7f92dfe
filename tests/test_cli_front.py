"""The printed front names each configuration in full within 80 columns (Tune ids go to --json and MLflow)."""

from rich.console import Console

from samprivacy.cli import front_table


def test_the_front_fits_80_columns_and_names_every_configuration_in_full():
    rows = [
        {"number": 3, "trial_id": "a1b2c3d4_00003", "trial_ids": ["a1_1", "a1_2", "a1_3"], "test_acc": 0.8123,
         "test_acc_std": 0.0101, "attack_acc": 0.5512, "attack_acc_std": 0.0042,
         "params": {"method": "sharpreg", "sharpreg.rho": 0.01, "sharpreg.lam": 1.5, "sharpreg.xi": 0.3,
                    "lr": 0.05, "batch_size": 64, "weight_decay": 0.0005}},
        {"number": 7, "trial_id": "a1b2c3d4_00007", "test_acc": 0.71, "attack_acc": 0.51,
         "params": {"method": "dp", "dp.noise_multiplier": 1.2, "dp.max_grad_norm": 1.0, "lr": 0.05}},
        {"number": 9, "trial_id": "x_9", "test_acc": 0.79, "attack_acc": 0.53,
         "params": {"method": "label_smoothing", "label_smoothing.label_smoothing": 0.3}},
    ]
    console = Console(width=80, record=True, color_system=None)
    console.print(front_table({"objectives": {"test_acc": "max", "attack_acc": "min"}, "front": rows}))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for needed in ("sharpreg", "rho=0.01", "lam=1.5", "xi=0.3", "weight_decay=0.0005", "dp", "noise_multiplier=1.2",
                   "max_grad_norm=1", "label_smoothing=0.3", "0.8123", "± 0.0101", "0.5512"):
        assert needed in text, needed
    assert "a1b2c3d4" not in text  # Tune's ids: --json and MLflow


def test_a_front_row_names_the_settings_the_spec_fixes_too():
    from samprivacy.spec import load_spec
    from samprivacy.sweep.space import configuration

    spec = load_spec("sweeps/defenses-longtail.yaml")
    rows = [{"number": n, "test_acc": 0.9, "attack_acc": 0.55, "params": {"method": m},
             "configuration": configuration(spec, {"method": m})} for n, m in enumerate(("dp", "selena", "sharpreg"))]
    assert rows[0]["configuration"] == {"method": "dp-sgd",
                                        "settings": {"max_grad_norm": 1.0, "noise_multiplier": 1.0}}
    console = Console(width=80, record=True, color_system=None)
    console.print(front_table({"objectives": {"test_acc": "max", "attack_acc": "min"}, "front": rows}))
    text = console.export_text()
    for needed in ("dp-sgd", "noise_multiplier=1", "selena_k=4", "selena_l=2", "lam=1.5", "xi=0.3"):
        assert needed in text, needed
