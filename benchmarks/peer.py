r"""Seconds per trial of batchlr's objective against the hand-written objectives it replaces.

    python benchmarks/peer.py --data imagefolder:../shared/data/cifar10-subset/train \
        --model convnet-bn --batch-size 64 --folds 3 --epochs 1
    python benchmarks/peer.py --synthetic 50000 --model convnet-bn --batch-size 128 --folds 3 \
        --epochs 10 --device cuda

In one process, on the same images, folds, network, batch size and optimizer (Adam, lr 1e-3),
one trial (every fold for --epochs epochs, then its validation) of:

  (a) peer-dataloader: the usual hand-written Optuna objective: a Dataset of decoded PIL
      images with torchvision's ToTensor and Normalize per image, a shuffling DataLoader per
      fold, the folds one after another, fp32. (The images are decoded once beforehand: a
      peer that reads its files every epoch is slower still.)
  (b) peer-tensors: a minimal loop over normalised float32 tensors already on the device,
      batches as index slices, the folds one after another, fp32.
  (c) batchlr with each precision and fold fusion (and --compile with --compile).

Each runs one warm-up trial, then --repeats timed trials in turn (round-robin, so that drift
of a shared machine hits every contender alike); the table gives the median seconds per
trial, training images per second, the ratios to (a) and (b) and, on CUDA, peak GPU memory
and the achieved TFLOP/s of the training passes (and their fraction of --peak-tflops).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as transforms
from PIL import Image

from batchlr.objectives.data import ImageData, assign_folds, load_dataset
from batchlr.objectives.models import build_model, resolve_model
from batchlr.objectives.objective import CrossValidationObjective
from batchlr.objectives.settings import Budget, TrainingSettings
from batchlr.objectives.trainer import Trainer
from batchlr.objectives.training import Normalisation, resolve_device
from batchlr.search.space import SearchSpace

LR = 1e-3
Trial = Callable[[], None]


def synthetic(count: int, seed: int = 0) -> ImageData:
    """``count`` random 32x32 RGB images in 10 classes, each class brighter in one channel
    band, so that training has something to learn."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 10
    images = torch.randint(0, 200, (count, 3, 32, 32), generator=generator, dtype=torch.uint8)
    images[torch.arange(count), labels % 3, (labels * 3) % 32] += 50
    return ImageData(
        f"synthetic-{count}", images, labels, tuple(f"class{index}" for index in range(10))
    )


class Setup:
    """What every contender shares: the data, folds, model, batch size and device."""

    def __init__(
        self,
        data: ImageData,
        folds: int,
        model: str,
        batch_size: int,
        epochs: int,
        device: torch.device,
    ) -> None:
        self.data, self.model, self.batch_size, self.epochs, self.device = (
            data,
            model,
            batch_size,
            epochs,
            device,
        )
        self.folds = assign_folds(
            data.labels.numpy(), folds, seed=0, holdout=data.test_images is None
        )
        self.split = [self.folds.train_val(fold) for fold in range(folds)]
        self.normalisation = Normalisation.of(data.images, self.folds.searched())
        self.factory = resolve_model(model)

    def new_model(self) -> torch.nn.Module:
        return build_model(
            self.factory, self.model, self.data.input_shape, self.data.num_classes
        ).to(self.device)

    @property
    def train_images(self) -> int:
        """Images one trial trains on: every fold's whole batches, every epoch."""
        return (
            sum(len(train) // self.batch_size * self.batch_size for train, _ in self.split)
            * self.epochs
        )


class PilImages(torch.utils.data.Dataset):
    """Decoded images as PIL objects, turned into tensors per item, as torchvision data sets are."""

    def __init__(self, data: ImageData, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        mode = "L" if data.images.shape[1] == 1 else "RGB"
        self.images = [
            Image.fromarray(image.permute(1, 2, 0).squeeze(2).numpy(), mode)
            for image in data.images
        ]
        self.labels, self.transform = data.labels.tolist(), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), self.labels[index]


def peer_dataloader(setup: Setup) -> Trial:
    transform = transforms.Compose(
        [
            transforms.ToImage(),
            transforms.ToDtype(torch.float32, scale=True),
            transforms.Normalize(setup.normalisation.mean, setup.normalisation.std),
        ]
    )
    dataset = PilImages(setup.data, transform)
    pin = setup.device.type == "cuda"

    def trial() -> None:
        for train, val in setup.split:
            model = setup.new_model()
            optimizer = torch.optim.Adam(model.parameters(), lr=LR)
            loader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(dataset, train),
                batch_size=setup.batch_size,
                shuffle=True,
                drop_last=True,
                pin_memory=pin,
            )
            for _ in range(setup.epochs):
                model.train()
                for images, labels in loader:
                    images, labels = (
                        images.to(setup.device, non_blocking=True),
                        labels.to(setup.device, non_blocking=True),
                    )
                    loss = F.cross_entropy(model(images), labels)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                model.eval()
                correct = 0
                with torch.no_grad():
                    for images, labels in torch.utils.data.DataLoader(
                        torch.utils.data.Subset(dataset, val), batch_size=256
                    ):
                        correct += (
                            (model(images.to(setup.device)).argmax(1) == labels.to(setup.device))
                            .sum()
                            .item()
                        )

    return trial


def peer_tensors(setup: Setup) -> Trial:
    mean = torch.tensor(setup.normalisation.mean).view(1, -1, 1, 1)
    std = torch.tensor(setup.normalisation.std).view(1, -1, 1, 1)
    images = ((setup.data.images.float() / 255 - mean) / std).to(setup.device)
    labels = setup.data.labels.to(setup.device)

    def trial() -> None:
        for train, val in setup.split:
            train, val = (
                torch.as_tensor(train, device=setup.device),
                torch.as_tensor(val, device=setup.device),
            )
            model = setup.new_model()
            optimizer = torch.optim.Adam(model.parameters(), lr=LR)
            for _ in range(setup.epochs):
                model.train()
                order = train[torch.randperm(len(train), device=setup.device)]
                for start in range(0, len(order) - setup.batch_size + 1, setup.batch_size):
                    batch = order[start : start + setup.batch_size]
                    loss = F.cross_entropy(model(images[batch]), labels[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                model.eval()
                with torch.no_grad():
                    correct = sum(
                        (model(images[chunk]).argmax(1) == labels[chunk]).sum()
                        for chunk in val.split(256)
                    )
                correct.item()

    return trial


def batchlr_objective(
    setup: Setup, precision: str, fuse: str, compile: bool, channels_last: bool = True
) -> tuple[Trial, str]:
    settings = TrainingSettings(budget=Budget("epochs", setup.epochs), precision=precision)
    space = SearchSpace(batch_size=(1, 1 << 20))
    trainer = Trainer.on(
        setup.data, setup.folds.searched(), setup.model, settings, setup.device, fuse, compile
    )
    if not channels_last:  # to measure what channels_last gives: batchlr before it trained so
        execution = dataclasses.replace(trainer.execution, channels_last=False)
        trainer = dataclasses.replace(trainer, execution=execution)
    objective = CrossValidationObjective(trainer, setup.data, setup.folds, space, seed=0)

    def trial() -> None:
        study = optuna.create_study(direction="maximize")
        study.enqueue_trial({"batch_size": setup.batch_size, "lr": LR, "optimizer": "adam"})
        study.optimize(objective, n_trials=1)
        if study.trials[0].state != optuna.trial.TrialState.COMPLETE:
            raise RuntimeError(
                f"the batchlr trial ended {study.trials[0].state.name}: {study.trials[0].user_attrs.get('reason')}"
            )

    execution = objective.trainer.execution
    layout = "" if execution.channels_last or execution.fuse_folds else ", NCHW"
    return trial, f"batchlr {execution.describe()}{layout}"


def training_flops_per_image(setup: Setup) -> float:
    """FLOPs of one training image's forward and backward pass, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = setup.new_model()
    images = torch.zeros(8, *setup.data.input_shape, device=setup.device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(
            model(images), torch.zeros(8, dtype=torch.long, device=setup.device)
        ).backward()
    return counter.get_total_flops() / 8


def timed(trial: Trial, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    trial()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default="imagefolder:../shared/data/cifar10-subset/train",
        help="any batchlr data set",
    )
    parser.add_argument(
        "--synthetic", type=int, metavar="N", help="use N random 32x32 images instead of --data"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", default="convnet-bn")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default="fp32,bf16", help="batchlr precisions to time")
    parser.add_argument("--fuse", default="off,on", help="batchlr --fuse-folds values to time")
    parser.add_argument("--compile", action="store_true", help="also time batchlr with --compile")
    parser.add_argument(
        "--nchw",
        action="store_true",
        help="also time batchlr's separate folds without channels_last",
    )
    parser.add_argument(
        "--peers",
        default="dataloader,tensors",
        help="hand-written peers to time: dataloader, tensors",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="the device's dense peak in the fastest precision, for the fraction reached",
    )
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = resolve_device(args.device)
    data = synthetic(args.synthetic) if args.synthetic else load_dataset(args.data, args.data_dir)
    setup = Setup(data, args.folds, args.model, args.batch_size, args.epochs, device)
    contenders: list[tuple[str, Trial]] = []
    peers = {
        "dataloader": ("(a) peer-dataloader", peer_dataloader),
        "tensors": ("(b) peer-tensors", peer_tensors),
    }
    for name in filter(None, args.peers.split(",")):
        label, make = peers[name]
        contenders.append((label, make(setup)))
    for compile in (False, True) if args.compile else (False,):
        for precision in args.precisions.split(","):
            for fuse in args.fuse.split(","):
                for channels_last in (True, False) if args.nchw and fuse == "off" else (True,):
                    trial, label = batchlr_objective(setup, precision, fuse, compile, channels_last)
                    contenders.append((f"(c) {label}", trial))

    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, {torch.get_num_threads()} threads"
    )
    print(
        f"{data.name}: {len(data.labels)} images {data.input_shape}, {args.model}, batch "
        f"{args.batch_size}, {args.folds} folds x {args.epochs} epochs on {device} "
        f"({device_name}); median of {args.repeats} after a warm-up"
    )
    seconds: dict[str, list[float]] = {label: [] for label, _ in contenders}
    memory: dict[str, float] = {}
    for repeat in range(args.repeats + 1):
        for label, trial in contenders:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            elapsed = timed(trial, device)
            if repeat:
                seconds[label].append(elapsed)
            if device.type == "cuda":
                memory[label] = torch.cuda.max_memory_allocated(device) / 2**30
    flops = training_flops_per_image(setup)
    medians = {label: statistics.median(times) for label, times in seconds.items()}
    references = [medians.get(label) for label in ("(a) peer-dataloader", "(b) peer-tensors")]
    print(
        f"{'contender':<44} {'s/trial':>8} {'train img/s':>11} {'vs (a)':>7} {'vs (b)':>7} {'TFLOP/s':>8}"
        + (f" {'GPU GiB':>8}" if memory else "")
        + (f" {'of peak':>7}" if args.peak_tflops else "")
    )
    for label, median in medians.items():
        rate = setup.train_images / median
        ratios = [
            f"{reference / median:>6.2f}x" if reference else f"{'-':>7}" for reference in references
        ]
        line = f"{label:<44} {median:>8.2f} {rate:>11.0f} {ratios[0]} {ratios[1]} {rate * flops / 1e12:>8.3f}"
        if memory:
            line += f" {memory[label]:>8.2f}"
        if args.peak_tflops:
            line += f" {rate * flops / 1e12 / args.peak_tflops:>7.1%}"
        print(line)
    print(
        "s/trial includes validation and building the models; img/s counts training images only "
        f"({setup.train_images} per trial, {flops / 1e6:.1f} MFLOP each)"
    )


if __name__ == "__main__":
    main()
