"""``batchlr throughput``: the study's band timed on this device, and the batch size to take."""

from __future__ import annotations

import math

import torch

from batchlr.errors import BatchlrError
from batchlr.objectives.probes import images_per_second, largest_micro_batch
from batchlr.objectives.training import device_name
from batchlr.rules import one_of
from batchlr.search.space import OPTIMIZER_NAMES, Hyperparameters, default_momentum
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
    model and recipe at each optimizer and batch size of its band on the probe's device,
    micro-batched where the device cannot hold a batch whole, and recommend the pair with the
    least time to the band's accuracy; kept with the study, with the device's hardware named,
    for its export.

    Raises:
        BatchlrError: for a study without a complete trial to draw a band from.
    """
    assert probe.study is not None  # the CLI opens the probe of a study
    study = load_existing_study(open_storage(storage, access="write"), probe.study)
    answer = study_answer(study)
    band = answer.band
    if band is None:
        raise BatchlrError(f"study {probe.study!r} has no complete trial yet; run trials first")
    trials = study.get_trials(deepcopy=False)
    # The study's cap fits the device it was created on; a batch this one cannot hold whole
    # is micro-batched, as a run here would.
    trainer = probe.trainer
    largest = max(batch for sizes in band.lr_ranges.values() for batch in sizes)
    fits = largest_micro_batch(trainer, largest)
    cap = trainer.settings.max_micro_batch
    trainer = trainer.with_cap(min(fits, cap) if isinstance(cap, int) else fits)
    speeds: dict[tuple[str, int], float | None] = {}
    lrs: dict[tuple[str, int], LrRule] = {}
    members = [trials[number] for number in band.members]
    for optimizer, sizes in band.lr_ranges.items():
        fit = answer.ridges.get(optimizer)
        # the optimizer's best band member: where a rule without a ridge scales from
        anchor = max(
            (trial for trial in members if trial.params.get("optimizer") == optimizer),
            key=lambda trial: trial.values[0],
        )
        anchor_lr = Hyperparameters.from_params(anchor.params, probe.spec.space).lr
        for batch_size, (low, high) in sizes.items():
            try:
                rule = transfer_lr(
                    anchor_lr,
                    int(anchor.params["batch_size"]),
                    optimizer,
                    batch_size,
                    None if fit is None else fit.ridge,
                    measured_noise_scale(study),
                    probe.spec.space.lr_scaling,
                    probe.study,
                )
            except BatchlrError:  # no ridge and no scaling rule: the band's own lrs are measured
                rule = LrRule(
                    batch_size, math.sqrt(low * high), "the band trials' lr at this batch"
                )
            hyperparameters = Hyperparameters(
                batch_size,
                rule.lr,
                one_of("optimizer", optimizer, OPTIMIZER_NAMES),
                default_momentum(optimizer),
            )
            torch.manual_seed(seed)
            speeds[optimizer, batch_size] = images_per_second(
                trainer, probe.indices, hyperparameters, seed, steps
            )
            lrs[optimizer, batch_size] = rule
    result = recommend(
        device_name(trainer.device),
        trainer.execution.precision,
        band_floor(trials, band),
        {optimizer: epochs_to_target(trials, band, optimizer) for optimizer in band.lr_ranges},
        speeds,
        lrs,
    )
    save_throughput(study, result.to_record())
    return result
