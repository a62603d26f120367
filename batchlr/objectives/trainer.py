"""The Trainer: the one place batchlr trains, and the one optimizer step that trials, refits,
the LR range test, the noise-scale probe, the memory probe and the fusability check all take.

As in airbench's and nanoGPT's loops, the data sits on the device as uint8 tensors before the
first step, batches are index slices of it, and nothing is read back from the device until a
round ends.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from batchlr.errors import BatchlrError
from batchlr.objectives.data.datasets import ImageData
from batchlr.objectives.models.catalog import build_model, resolve_model
from batchlr.objectives.schedules import make_scheduler
from batchlr.objectives.settings import FuseChoice, Precision, TrainingSettings, steps_per_epoch
from batchlr.objectives.training.batches import Augmentation, DeviceImages, Normalisation
from batchlr.objectives.training.execution import Execution
from batchlr.objectives.training.fold_group import BatchStream, FoldGroup, RoundResult
from batchlr.objectives.training.fold_models import fold_models
from batchlr.objectives.training.optimizers import make_optimizer
from batchlr.search.space import Hyperparameters

LrMultiplier = Callable[[int], float]
"""The multiple of the optimizer's lr at each step (0-based), in place of the study's schedule."""

Folds = list[tuple[torch.Tensor, torch.Tensor]]
"""Each fold's training and validation indices, on the device."""


@dataclasses.dataclass(frozen=True)
class Regime:
    """How the step trains a batch of ``batch_size``: the precision, the augmentation, the loss's
    label smoothing and the samples per forward/backward pass. Probes name it, so that a
    measurement says which training it holds for."""

    precision: Precision
    augment: tuple[str, ...]
    label_smoothing: float
    batch_size: int
    micro_batch: int


@dataclasses.dataclass(eq=False)
class Trainer:
    """What training needs on one device: the ``images``, a factory of fresh models on the
    device, the study's training ``settings`` (its micro-batch cap resolved before a step is
    taken) and how the device computes (``execution``). ``model`` is the ``--model`` name."""

    images: DeviceImages
    new_model: Callable[[], nn.Module]
    settings: TrainingSettings
    execution: Execution
    model: str = "convnet"

    @classmethod
    def on(
        cls,
        data: ImageData,
        searched: np.ndarray,
        model: str,
        settings: TrainingSettings,
        device: torch.device,
        fuse_folds: FuseChoice = "auto",
        compile: bool = False,
    ) -> Trainer:
        """A trainer of ``model`` on ``data``, moved to ``device`` once, here, and normalised with
        the statistics of the ``searched`` images (never the hold-out's).

        Raises:
            BatchlrUsageError: for a model that cannot be built, or settings the data cannot
                take (a crop padding as large as the images).
        """
        factory = resolve_model(model)
        build_model(factory, model, data.input_shape, data.num_classes)  # fails before any upload

        def new_model() -> nn.Module:
            return build_model(factory, model, data.input_shape, data.num_classes).to(device)

        augmentation = Augmentation(
            "flip" in settings.augment, settings.crop_padding_for(data.input_shape)
        )
        images = DeviceImages(
            data.images.to(device),
            data.labels.to(device),
            Normalisation.of(data.images, searched),
            augmentation,
        )
        if device.type == "cuda":
            # cuDNN then times its convolution algorithms once per shape and keeps the fastest:
            # a run takes thousands of steps of one batch shape.
            torch.backends.cudnn.benchmark = True
        return cls(images, new_model, settings, Execution(device), model).with_folds(
            fuse_folds, compile
        )

    @property
    def device(self) -> torch.device:
        return self.images.labels.device

    def with_folds(self, fuse_folds: FuseChoice, compile: bool) -> Trainer:
        """This trainer with folds fused or separate as ``--fuse-folds`` says: ``auto`` falls back
        to separate folds for a model torch.func cannot fuse, ``on`` says why it cannot.

        Raises:
            BatchlrError: under ``on``, naming ``--model`` and what torch.func refused.
        """
        builtin = ":" not in self.model
        execution = Execution.on(self.device, self.settings.precision, fuse_folds, compile, builtin)
        trainer = dataclasses.replace(self, execution=execution)
        if execution.fuse_folds:
            try:
                trainer._check_fusable()
            except BatchlrError:
                if fuse_folds == "on":
                    raise
                return self.with_folds("off", compile)
        return trainer

    def with_cap(self, cap: int | None) -> Trainer:
        """This trainer with the micro-batch ``cap`` (``None``: none)."""
        return dataclasses.replace(
            self, settings=dataclasses.replace(self.settings, max_micro_batch=cap)
        )

    def regime(self, batch_size: int) -> Regime:
        """How a batch of ``batch_size`` trains."""
        return Regime(
            self.execution.precision,
            self.settings.augment,
            self.settings.label_smoothing,
            batch_size,
            self.settings.micro_batching.size(batch_size),
        )

    def fold_group(
        self,
        hyperparameters: Hyperparameters,
        folds: Folds,
        seed: int,
        lr_multiplier: LrMultiplier | None = None,
    ) -> FoldGroup:
        """Fresh models, one optimizer and schedule (``lr_multiplier``, else the settings'
        schedule and warmup) for the ``folds``, each shuffling and augmenting with its own
        generator seeded from ``seed``.

        Every fold takes the optimizer steps of the smallest one, so that they step together.
        """
        batch_size = hyperparameters.batch_size
        models = fold_models([self.new_model() for _ in folds], self.execution)
        optimizer = make_optimizer(hyperparameters, models.parameters())
        train_size = min(len(train) for train, _ in folds)
        rounds = self.settings.budget.rounds(train_size, batch_size)
        if lr_multiplier is None:
            warmup_steps = self.settings.warmup_steps(train_size, batch_size)
            scheduler = make_scheduler(optimizer, sum(rounds), self.settings.schedule, warmup_steps)
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier)
        epoch_steps = steps_per_epoch(train_size, batch_size)
        batches = [
            BatchStream(train, batch_size, fold_generator(self.device, seed, fold), epoch_steps)
            for fold, (train, _) in enumerate(folds)
        ]
        return FoldGroup(
            models,
            optimizer,
            scheduler,
            batches,
            [val for _, val in folds],
            rounds,
            self.execution,
            self.settings.label_smoothing,
            self.settings.micro_batching,
        )

    def step(
        self, group: FoldGroup, batch: torch.Tensor, update: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step of every fold on ``batch`` (indices, one row per fold), augmented;
        returns each fold's summed loss and correct predictions, on the device. With ``update``
        False the step stops before the optimizer, leaving the batch's mean gradient in ``.grad``
        (scaled by the fp16 scaler's scale).

        Each micro-batch's summed loss is divided by the whole batch, so the accumulated
        gradient is exactly the batch's mean (BatchNorm still normalises per micro-batch).
        """
        group.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros(group.models.count, device=self.device)
        correct = torch.zeros(group.models.count, device=self.device, dtype=torch.long)
        generators = [stream.generator for stream in group.batches]
        for micro in group.micro_batching.split(batch):
            labels, inputs = (
                self.images.labels[micro],
                self.images.training_inputs(micro, generators),
            )
            for folds in group.models.passes:
                with group.execution.autocast():
                    logits = group.models.logits(inputs[folds], folds)
                    losses = F.cross_entropy(
                        logits.flatten(0, 1),
                        labels[folds].flatten(),
                        reduction="none",
                        label_smoothing=group.label_smoothing,
                    )
                fold_losses = losses.view(len(logits), -1).sum(dim=1)
                group.scaler.scale(fold_losses.sum() / batch.shape[1]).backward()
                loss_sum[folds] += fold_losses.detach()
                correct[folds] += (logits.detach().argmax(dim=2) == labels[folds]).sum(dim=1)
        if update:
            group.scaler.step(group.optimizer)
            group.scaler.update()
            if not group.scaler.is_enabled():
                group.scheduler.step()
                return loss_sum, correct
            with warnings.catch_warnings():  # only under fp16: no per-step cost elsewhere
                # The fp16 scaler skips the steps whose gradients overflowed, and torch warns that
                # the schedule stepped without the optimizer: that skip is the scaler's purpose.
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step")
                group.scheduler.step()
        return loss_sum, correct

    def train_steps(self, group: FoldGroup, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``steps`` optimizer steps of every fold on its next batches; returns each fold's mean
        loss and accuracy over them, as two tensors of k values on the device."""
        group.models.train()
        loss_sum = torch.zeros(group.models.count, device=self.device)
        correct = torch.zeros(group.models.count, device=self.device, dtype=torch.long)
        for _ in range(steps):
            batch_loss, batch_correct = self.step(
                group, torch.stack([stream.next() for stream in group.batches])
            )
            loss_sum += batch_loss
            correct += batch_correct
        samples = max(1, steps * group.batch_size)
        return loss_sum / samples, correct / samples

    def rounds(self, group: FoldGroup) -> Iterator[RoundResult]:
        """Train every fold round by round, yielding after each round of all folds: round r of
        every fold ends before round r+1 of any starts, so the caller can report a fold mean
        after each round and stop the whole trial early."""
        for round_index, steps in enumerate(group.rounds):
            started = time.perf_counter()
            train_loss, train_accuracy = torch.stack(self.train_steps(group, steps)).tolist()
            train_seconds = time.perf_counter() - started  # tolist() waited for the device
            yield RoundResult(
                round=round_index,
                val_accuracy=self.evaluate(group, group.val_indices).tolist(),
                train_accuracy=train_accuracy,
                train_loss=train_loss,
                train_seconds=train_seconds,
                train_images=steps * group.batch_size * group.models.count,
            )

    @torch.no_grad()
    def evaluate(
        self, group: FoldGroup, indices: list[torch.Tensor], images: DeviceImages | None = None
    ) -> torch.Tensor:
        """Each fold's accuracy on its ``indices`` of ``images`` (default: the trainer's), never
        augmented, as k values on the device, in passes of at most the group's evaluation chunk.

        The folds' index lists may differ in length: the shorter ones are padded with index 0,
        which is not counted.
        """
        group.models.train(False)
        images = images or self.images
        lengths = torch.tensor([len(part) for part in indices], device=self.device)
        longest = max(len(part) for part in indices)
        correct = torch.zeros(len(indices), device=self.device, dtype=torch.long)
        if not longest:
            return correct / lengths.clamp_min(1)
        padded = torch.stack([F.pad(part, (0, longest - len(part))) for part in indices])
        chunk_size = group.micro_batching.eval_chunk
        for start in range(0, longest, chunk_size):
            chunk = padded[:, start : start + chunk_size]
            counted = torch.arange(start, start + chunk.shape[1], device=self.device)
            counted = counted < lengths[:, None]
            inputs, labels = images.inputs(chunk), images.labels[chunk]
            for folds in group.models.passes:
                with group.execution.autocast():
                    logits = group.models.logits(inputs[folds], folds)
                hits = (logits.argmax(dim=2) == labels[folds]) & counted[folds]
                correct[folds] += hits.sum(dim=1)
        return correct / lengths.clamp_min(1)

    def _check_fusable(self) -> None:
        """Raise when the model cannot train fused: one step of two folds on two images each,
        uncompiled, so that the check costs no compilation.

        Raises:
            BatchlrError: naming ``--model`` and what torch.func refused (an in-place update of
                an unbatched tensor, ``.item()`` in the forward pass, ...).
        """
        plain = dataclasses.replace(
            self.with_cap(None), execution=dataclasses.replace(self.execution, compile=False)
        )
        pair = torch.zeros(2, dtype=torch.long, device=self.device)
        try:
            group = plain.fold_group(Hyperparameters(2, 1e-3, "sgd"), [(pair, pair[:0])] * 2, 0)
            group.models.train()
            plain.step(group, torch.stack([pair, pair]))
            group.models.module(1)
        except torch.OutOfMemoryError:
            return  # a question of memory, not of torch.func: a trial that runs out fused trains separately
        except Exception as error:
            reason = " ".join(str(error).split())[:300]
            raise BatchlrError(
                f"--model {self.model} cannot train with fused folds ({type(error).__name__}: "
                f"{reason}); use --fuse-folds off"
            ) from error


def fold_generator(device: torch.device, seed: int, fold: int) -> torch.Generator:
    """Fold ``fold``'s random generator for a run seeded ``seed``: independent streams per fold."""
    state = np.random.SeedSequence([seed, fold]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))
