"""`samprivacy ...`: the command line. The only module that prints; everything else returns results."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.table import Table

from samprivacy.errors import SamprivacyError, TrainingDiverged

console = Console(stderr=True)
out = Console()


def write_json_atomic(path: str | Path, document: dict) -> Path:
    """Write JSON via a temporary file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        json.dump(document, tmp, indent=2)
    os.replace(tmp.name, path)
    return path


def _hidden(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer sizes like 1024,512,256, got {text!r}")


def add_trial_parser(sub) -> None:
    p = sub.add_parser("trial", help="train one model and attack it", description=(
        "Train one model with an optimizer of the sharpness-aware family, then run membership-inference "
        "attacks on it. Prints a summary; --json writes every metric."))
    p.add_argument("--dataset", default="digits", help="digits | longtail | purchase100 | texas100 | cifar10 | cifar100")
    p.add_argument("--data-root", help="folder with the dataset's canonical files (purchase100, texas100, cifar)")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR into --data-root")
    p.add_argument("--optimizer", default="sgd", help="sgd | sam | asam | sharpreg")
    p.add_argument("--base-optimizer", default="sgd", help="sgd (with momentum) | adam")
    p.add_argument("--rho", type=float, help="neighbourhood radius (sam, asam, sharpreg)")
    p.add_argument("--lam", type=float, help="sharpness weight lambda (sharpreg)")
    p.add_argument("--xi", type=float, help="anti-overfitting weight xi (sharpreg)")
    p.add_argument("--model", help="fc | mlp | cnn | wrn16-8 (default: the dataset's)")
    p.add_argument("--hidden", type=_hidden, help="hidden layer sizes of fc/mlp, e.g. 1024,512,256")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", default="cosine", help="cosine | step | constant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, help="seed of the member/non-member split (default: --seed)")
    p.add_argument("--attacks", help="comma-separated attack names (default: all)")
    p.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    p.add_argument("--json", dest="json_path", help="write the full result as JSON to this path")
    p.add_argument("--out", help="folder for artifacts: summary.json, splits.npz, model.pt, roc.npz")
    p.set_defaults(handler=cmd_trial)


def cmd_trial(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from samprivacy.pipeline import run_trial
    from samprivacy.spec import TrialConfig, parse_trial_config

    fields = dict(dataset=args.dataset, data_root=args.data_root, download=args.download, model=args.model,
                  hidden=args.hidden, optimizer=args.optimizer, base_optimizer=args.base_optimizer, rho=args.rho,
                  lam=args.lam, xi=args.xi, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                  schedule=args.schedule, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                  split_seed=args.split_seed, device=args.device,
                  attacks=tuple(a.strip() for a in args.attacks.split(",")) if args.attacks else None)
    config: TrialConfig = parse_trial_config({k: v for k, v in fields.items() if v is not None})
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task(f"{config.optimizer} on {config.dataset}", total=config.epochs, status="")

        def on_epoch(row: dict, _checkpoint) -> None:
            progress.update(task, completed=row["epoch"],
                            status=f"loss {row['train_loss']:.3f}  val acc {row['val_acc']:.3f}")

        result = run_trial(config, on_epoch=on_epoch)
    summary = result.summary()
    if args.out:
        result.save(args.out)
    if args.json_path:
        write_json_atomic(args.json_path, summary)
    print_trial_summary(summary)
    return 0


def print_trial_summary(summary: dict) -> None:
    cfg = summary["config"]
    out.print(f"[bold]{cfg['optimizer']}[/] on [bold]{cfg['dataset']}[/]  seed {cfg['seed']}  "
              f"best epoch {summary['best_epoch']}  ({summary['seconds']:.1f} s on {summary['device']})")
    out.print(f"train acc {summary['train_acc']:.4f}   val acc {summary['val_acc']:.4f}   "
              f"[bold]test acc {summary['test_acc']:.4f}[/]   "
              f"[bold]attack acc {summary['attack_acc']:.4f}[/] ({summary['best_attack']})")
    table = Table("attack", "accuracy", "AUC", "TPR@0.1%FPR", "TPR@1%FPR", "advantage")
    for name, m in sorted(summary["attacks"].items(), key=lambda kv: -kv[1]["accuracy"]):
        table.add_row(name, *(f"{m[k]:.4f}" for k in ("accuracy", "auc", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01",
                                                      "advantage")))
    out.print(table)


PARSERS: list[Callable] = [add_trial_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samprivacy", description=__doc__.split("\n")[0].strip("`"))
    sub = parser.add_subparsers(dest="command", required=True)
    for add in PARSERS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SamprivacyError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    except TrainingDiverged as exc:
        console.print(f"[red]error:[/] {exc}")
        return 3
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
