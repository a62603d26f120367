r"""Accuracy under --precision auto against fp32: does the faster precision change the answer?

    python benchmarks/precision.py
    python benchmarks/precision.py --trials 20 \
        --data imagefolder:../shared/data/cifar10-subset/train --epochs 5 --seeds 0,1,2

Runs (1) the README's demo study (digits, --trials trials) once per precision with the
same seed, and prints each study's best CV accuracy; (2) one trial on --data (convnet-bn,
batch 64, Adam at lr 1e-3, 3 folds x --epochs epochs) per seed and precision, and prints its
CV accuracy. ``auto`` is bf16 where the device computes it natively, else fp32 (then both
rows are the same computation).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optuna
import torch
from common.runs import run_batchlr

from batchlr.objectives.data import assign_folds, load_dataset
from batchlr.objectives.objective import CrossValidationObjective
from batchlr.objectives.settings import Budget, TrainingSettings
from batchlr.objectives.trainer import Trainer
from batchlr.objectives.training import resolve_device, resolve_precision
from batchlr.search.space import SearchSpace

PRECISIONS = ("fp32", "auto")


def demo_study(
    precision: str, trials: int, storage: str, device: str
) -> tuple[optuna.Study, float]:
    seconds = run_batchlr(
        f"demo-{precision}",
        storage,
        ["--n-trials", str(trials), "--precision", precision, "--device", device],
    )
    return optuna.load_study(study_name=f"demo-{precision}", storage=storage), seconds


def one_trial(
    data_name: str, epochs: int, seed: int, precision: str, device: torch.device
) -> tuple[float, float]:
    data = load_dataset(data_name, Path("data"))
    folds = assign_folds(data.labels.numpy(), 3, seed=seed, holdout=data.test_images is None)
    settings = TrainingSettings(budget=Budget("epochs", epochs), precision=precision)
    trainer = Trainer.on(data, folds.searched(), "convnet-bn", settings, device)
    space = SearchSpace(batch_size=(1, 1 << 20))
    objective = CrossValidationObjective(trainer, data, folds, space, seed=seed)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"batch_size": 64, "lr": 1e-3, "optimizer": "adam"})
    study.optimize(objective, n_trials=1)
    return study.trials[0].value, study.trials[0].user_attrs["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials of the demo study")
    parser.add_argument("--data", default="imagefolder:../shared/data/cifar10-subset/train")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = resolve_device(args.device)
    print(f"precision auto is {resolve_precision('auto', device)} on {device}")
    print(f"{'run':<40} {'fp32':>7} {'auto':>7} {'auto-fp32':>9} {'fp32 s':>7} {'auto s':>7}")
    with tempfile.TemporaryDirectory() as folder:
        storage = f"sqlite:///{Path(folder) / 'precision.db'}"
        studies = {
            precision: demo_study(precision, args.trials, storage, args.device)
            for precision in PRECISIONS
        }
    best = {precision: study.best_value for precision, (study, _) in studies.items()}
    print(
        f"{f'digits demo, {args.trials} trials, best CV':<40} {best['fp32']:>7.4f} "
        f"{best['auto']:>7.4f} {best['auto'] - best['fp32']:>+9.4f} {studies['fp32'][1]:>7.1f} "
        f"{studies['auto'][1]:>7.1f}"
    )
    for seed in map(int, args.seeds.split(",")):
        (fp32, fp32_seconds), (auto, auto_seconds) = (
            one_trial(args.data, args.epochs, seed, precision, device) for precision in PRECISIONS
        )
        label = f"{args.data.rsplit('/', 2)[-2] if '/' in args.data else args.data}, {args.epochs} epochs, seed {seed}"
        print(
            f"{label:<40} {fp32:>7.4f} {auto:>7.4f} {auto - fp32:>+9.4f} {fp32_seconds:>7.1f} {auto_seconds:>7.1f}"
        )


if __name__ == "__main__":
    main()
