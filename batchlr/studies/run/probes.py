"""Diagnostics run outside a study's trials: the LR range test and the gradient noise scale.

Both train on the data a new study with the same seed would search: the training split
less the hold-out, so neither looks at data kept for a final test score.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.files import check_writable
from batchlr.objectives.data import HOLDOUT, ImageData, assign_folds, dataset_slug, load_dataset
from batchlr.objectives.micro_batches import MicroBatching
from batchlr.objectives.models import build_model, resolve_model
from batchlr.objectives.probes import LrRangeTest, NoiseScale, estimate_noise_scale, lr_range_test
from batchlr.objectives.schedules import make_scheduler
from batchlr.objectives.settings import steps_per_epoch
from batchlr.objectives.training import (
    BatchStream,
    DeviceImages,
    Execution,
    FoldGroup,
    Normalisation,
    SeparateFolds,
    make_optimizer,
    resolve_device,
    train_steps,
)
from batchlr.search.space import MOMENTUM_OPTIMIZERS, Hyperparameters
from batchlr.studies.store.spec import check_names


@dataclasses.dataclass(frozen=True)
class ProbeData:
    """A data set on the device, normalised with the statistics of the images a probe may train
    on, and their indices."""

    data: ImageData
    images: DeviceImages
    indices: torch.Tensor

    @classmethod
    def load(
        cls,
        dataset: str,
        data_dir: Path,
        device: torch.device,
        seed: int,
        image_size: tuple[int, int] | None = None,
        cache_dir: Path | None = None,
    ) -> ProbeData:
        data = load_dataset(dataset, data_dir.expanduser(), image_size, cache_dir, device)
        fold_of = assign_folds(
            data.labels.numpy(), 2, seed, holdout=data.test_images is None, classes=data.classes
        ).fold_of
        return cls.on(data, np.flatnonzero(fold_of != HOLDOUT), device)

    @classmethod
    def on(cls, data: ImageData, indices: np.ndarray, device: torch.device) -> ProbeData:
        images = DeviceImages(
            data.images.to(device), data.labels.to(device), Normalisation.of(data.images, indices)
        )
        return cls(data, images, torch.as_tensor(indices, device=device))

    def check_batch(self, batch_size: int, option: str) -> None:
        if not 0 < batch_size <= len(self.indices):
            raise BatchlrUsageError(
                f"{option} {batch_size}: must be between 1 and the {len(self.indices)} training samples"
            )


def open_probe(
    dataset: str,
    data_dir: Path,
    model: str,
    device: str,
    seed: int,
    image_size: tuple[int, int] | None,
    cache_dir: Path | None,
) -> ProbeData:
    """The probe data for ``--dataset``, ``--model``, ``--device``, ``--seed``, ``--image-size``
    and ``--cache-dir``, names checked first."""
    check_names(dataset, model)
    return ProbeData.load(dataset, data_dir, resolve_device(device), seed, image_size, cache_dir)


def probe_hyperparameters(
    batch_size: int, optimizer: str, momentum: float, lr: float = 0.0
) -> Hyperparameters:
    """The probe's training settings; momentum applies to SGD and RMSProp only."""
    return Hyperparameters(
        batch_size, lr, optimizer, momentum if optimizer in MOMENTUM_OPTIMIZERS else None
    )


def find_lr(
    probe: ProbeData,
    model: str,
    hyperparameters: Hyperparameters,
    seed: int,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    lr_count: int = 100,
) -> LrRangeTest:
    """The LR range test for one batch size and optimizer (``hyperparameters.lr`` is ignored)."""
    probe.check_batch(hyperparameters.batch_size, "--batch-size")
    if not 0 < start_lr < end_lr:
        raise BatchlrUsageError(
            f"--start-lr {start_lr:g} must be positive and below --end-lr {end_lr:g}"
        )
    torch.manual_seed(seed)
    network = build_model(
        resolve_model(model), model, probe.data.input_shape, probe.data.num_classes
    ).to(probe.indices.device)
    batches = BatchStream(probe.indices, hyperparameters.batch_size, _generator(probe, seed))
    optimizer = make_optimizer(hyperparameters, network.parameters())
    result = lr_range_test(network, optimizer, batches, probe.images, start_lr, end_lr, lr_count)
    if len(result.lrs) < 3:
        raise BatchlrError(f"the loss diverged at once, from lr {start_lr:g}; lower --start-lr")
    return result


def measure_noise_scale(
    probe: ProbeData,
    model: str,
    seed: int,
    small_batch: int,
    big_batch: int,
    repeats: int,
    epochs: int = 0,
    hyperparameters: Hyperparameters | None = None,
) -> NoiseScale:
    """B_simple of ``model`` at initialisation, or after ``epochs`` epochs trained with ``hyperparameters``."""
    probe.check_batch(big_batch, "--big-batch")
    if not 0 < small_batch < big_batch:
        raise BatchlrUsageError(
            f"--small-batch {small_batch} must be positive and below --big-batch {big_batch}"
        )
    torch.manual_seed(seed)
    network = build_model(
        resolve_model(model), model, probe.data.input_shape, probe.data.num_classes
    ).to(probe.indices.device)
    generator = _generator(probe, seed)
    if epochs and hyperparameters is not None:
        probe.check_batch(hyperparameters.batch_size, "--batch-size")
        optimizer = make_optimizer(hyperparameters, network.parameters())
        steps = epochs * steps_per_epoch(len(probe.indices), hyperparameters.batch_size)
        batches = BatchStream(probe.indices, hyperparameters.batch_size, generator)
        group = FoldGroup(
            SeparateFolds([network]),
            optimizer,
            make_scheduler(optimizer, steps, "constant"),
            [batches],
            [probe.indices[:0]],
            [steps],
            Execution(probe.indices.device),
        )
        train_steps(group, probe.images, steps, MicroBatching())
    network.train()

    def sample(drawn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = probe.indices[drawn]
        return probe.images.inputs(positions), probe.images.labels[positions]

    result = estimate_noise_scale(
        network,
        F.cross_entropy,
        sample,
        len(probe.indices),
        small_batch,
        big_batch,
        repeats,
        generator,
    )
    if not (
        math.isfinite(result.noise_scale)
        and result.noise_scale > 0
        and result.gradient_norm_squared > 0
    ):
        raise BatchlrError(
            f"the noise-scale estimate is not usable (|G|^2 {result.gradient_norm_squared:.3g}, tr(S) "
            f"{result.covariance_trace:.3g}): the gradient is buried in noise; raise --repeats or --big-batch"
        )
    return result


def run_lr_find(
    dataset: str,
    data_dir: Path,
    model: str,
    device: str,
    seed: int,
    batch_size: int,
    optimizer: str,
    momentum: float,
    start_lr: float,
    end_lr: float,
    lr_count: int,
    plot: Path | None = None,
    image_size: tuple[int, int] | None = None,
    cache_dir: Path | None = None,
) -> LrRangeTest:
    """``batchlr lr-find``: the LR range test on ``dataset`` as the options describe it, its
    curve saved as a PNG to ``plot`` if given."""
    if plot:
        check_writable(plot)
    probe = open_probe(dataset, data_dir, model, device, seed, image_size, cache_dir)
    result = find_lr(
        probe,
        model,
        probe_hyperparameters(batch_size, optimizer, momentum),
        seed,
        start_lr,
        end_lr,
        lr_count,
    )
    if plot:
        from batchlr.studies.results.plotting import save_png
        from batchlr.studies.results.probe_figures import lr_range_figure

        save_png(
            lr_range_figure(
                result, f"{dataset_slug(dataset)}, {model}, {optimizer}, batch {batch_size}"
            ),
            plot,
        )
    return result


def run_noise_scale(
    dataset: str,
    data_dir: Path,
    model: str,
    device: str,
    seed: int,
    small_batch: int,
    big_batch: int,
    repeats: int,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str,
    momentum: float,
    image_size: tuple[int, int] | None = None,
    cache_dir: Path | None = None,
) -> NoiseScale:
    """``batchlr noise-scale``: B_simple on ``dataset``, after ``epochs`` of training with the
    given batch size, lr and optimizer; the big batch is capped at the training samples."""
    probe = open_probe(dataset, data_dir, model, device, seed, image_size, cache_dir)
    hyperparameters = probe_hyperparameters(batch_size, optimizer, momentum, lr)
    return measure_noise_scale(
        probe,
        model,
        seed,
        small_batch,
        min(big_batch, len(probe.indices)),
        repeats,
        epochs,
        hyperparameters,
    )


def _generator(probe: ProbeData, seed: int) -> torch.Generator:
    return torch.Generator(device=probe.indices.device).manual_seed(seed)
