"""``batchlr throughput``: the study's band timed on this device, and the batch size to take."""

from __future__ import annotations

import math

import torch

from batchlr.errors import BatchlrError
from batchlr.objectives.probes import images_per_second, largest_micro_batch
from batchlr.objectives.training import device_name
from batchlr.search.space import Hyperparameters, OptimizerName, default_momentum
from batchlr.studies.results.answer import study_answer
from batchlr.studies.results.recommend import (
    Recommendation,
    band_floor,
    epochs_to_target,
    recommend,
)
from batchlr.studies.results.transfer import LrRule, transfer_lr
from batchlr.studies.run.probes import Probe
from batchlr.studies.store import load_existing_study, open_storage
from batchlr.studies.store.data_facts import measured_noise_scale, save_throughput


def measure_throughput(storage: str, probe: Probe, seed: int, steps: int) -> Recommendation:
    """Time about ``steps`` optimizer steps (the median of three blocks) of the probe's study's
    model and recipe at each batch size of its band (for the best trial's optimizer) on the
    probe's device, micro-batched where the device cannot hold a batch whole, and recommend the
    one with the least time to the band's accuracy; kept with the study, with the device's
    hardware named, for its export.

    Raises:
        BatchlrError: for a study without a complete trial to draw a band from.
    """
    assert probe.study is not None  # the CLI opens the probe of a study
    study = load_existing_study(open_storage(storage, access="write"), probe.study)
    answer = study_answer(study)
    band = answer.band
    if band is None:
        raise BatchlrError(f"study {probe.study!r} has no complete trial yet; run trials first")
    best = study.trials[band.best_trial]
    optimizer: OptimizerName = best.params["optimizer"]
    fit = answer.ridges.get(optimizer)
    best_lr = Hyperparameters.from_params(best.params, probe.spec.space).lr
    sizes = band.lr_ranges.get(optimizer, {})
    # The study's cap fits the device it was created on; a batch this one cannot hold whole
    # is micro-batched, as a run here would.
    trainer = probe.trainer
    fits = largest_micro_batch(trainer, max(sizes))
    cap = trainer.settings.max_micro_batch
    trainer = trainer.with_cap(min(fits, cap) if isinstance(cap, int) else fits)
    speeds, lrs = {}, {}
    for batch_size, (low, high) in sizes.items():
        try:
            rule = transfer_lr(
                best_lr,
                int(best.params["batch_size"]),
                optimizer,
                batch_size,
                None if fit is None else fit.ridge,
                measured_noise_scale(study),
                probe.spec.space.lr_scaling,
                probe.study,
            )
        except BatchlrError:  # no ridge and no scaling rule: the band's own lrs are measured
            rule = LrRule(batch_size, math.sqrt(low * high), "the band trials' lr at this batch")
        hyperparameters = Hyperparameters(
            batch_size, rule.lr, optimizer, default_momentum(optimizer)
        )
        torch.manual_seed(seed)
        speeds[batch_size] = images_per_second(trainer, probe.indices, hyperparameters, seed, steps)
        lrs[batch_size] = rule
    trials = study.get_trials(deepcopy=False)
    result = recommend(
        device_name(trainer.device),
        trainer.execution.precision,
        band_floor(trials, band),
        epochs_to_target(trials, band, optimizer),
        speeds,
        lrs,
    )
    save_throughput(study, result.to_record())
    return result
