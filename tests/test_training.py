"""The training loop: lockstep folds, batches, budgets, gradient accumulation, divergence, evaluation."""

import math

import pytest
import torch
from torch import nn

from batchlr.objectives.micro_batches import EVAL_CHUNK, UNCAPPED, MicroBatching
from batchlr.objectives.schedules import make_scheduler
from batchlr.objectives.settings import Budget, TrainingSettings
from batchlr.objectives.trainer import Trainer
from batchlr.objectives.training import (
    BatchStream,
    DeviceImages,
    Execution,
    FoldGroup,
    Normalisation,
    RoundResult,
    SeparateFolds,
)

HALF_AND_QUARTER = Normalisation((0.5,), (0.25,))


def _problem(n: int = 90, normalisation: Normalisation = HALF_AND_QUARTER) -> DeviceImages:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 4, 4), generator=generator, dtype=torch.uint8)
    return DeviceImages(images, (images.float().mean(dim=(1, 2, 3)) > 127.5).long(), normalisation)


def _group(
    models: list[nn.Module],
    trains: list[torch.Tensor],
    vals: list[torch.Tensor],
    rounds: list[int],
    optimizer: type = torch.optim.Adam,
    lr: float = 0.01,
    batch_size: int = 16,
    micro_batching: MicroBatching = UNCAPPED,
) -> FoldGroup:
    folds = SeparateFolds(models)
    optimizer = optimizer(folds.parameters(), lr=lr)
    streams = [
        BatchStream(train, batch_size, torch.Generator().manual_seed(fold))
        for fold, train in enumerate(trains)
    ]
    return FoldGroup(
        folds,
        optimizer,
        make_scheduler(optimizer, sum(rounds), "constant"),
        streams,
        vals,
        rounds,
        Execution(torch.device("cpu")),
        micro_batching=micro_batching,
    )


def _trainer(data: DeviceImages) -> Trainer:
    """A trainer of ``data``, for fold groups built by hand."""
    return Trainer(data, _linear, TrainingSettings(), Execution(torch.device("cpu")))


def _linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 2))


def _adam_steps(group: FoldGroup) -> list[int]:
    return [
        int(group.optimizer.state[next(model.parameters())]["step"])
        for model in group.models.models
    ]


def test_every_fold_finishes_a_round_before_any_fold_starts_the_next():
    data = _problem()
    indices = torch.arange(90)
    # 60 training samples per fold in batches of 16: 3 full steps per epoch.
    rounds = Budget("epochs", 3).rounds(60, 16)
    group = _group(
        [_linear() for _ in range(3)],
        [indices[indices % 3 != fold] for fold in range(3)],
        [indices[indices % 3 == fold] for fold in range(3)],
        rounds,
        micro_batching=MicroBatching(16),
    )
    results = _trainer(data).rounds(group)
    for round_index in range(3):
        result = next(results)
        assert result.round == round_index and len(result.val_accuracy) == 3
        assert _adam_steps(group) == [3 * (round_index + 1)] * 3
        assert result.train_images == 3 * 3 * 16
    assert next(results, None) is None


def test_batches_are_full_and_reshuffled_every_epoch():
    stream = BatchStream(torch.arange(10), 4, torch.Generator().manual_seed(0))
    batches = [stream.next() for _ in range(4)]
    assert all(len(batch) == 4 for batch in batches)
    first_epoch, second_epoch = torch.cat(batches[:2]), torch.cat(batches[2:])
    assert len(set(first_epoch.tolist())) == 8 and len(set(second_epoch.tolist())) == 8
    assert not torch.equal(first_epoch, second_epoch)


def test_step_budget_splits_into_ten_rounds_of_equal_steps():
    assert Budget("steps", 95).rounds(train_size=1000, batch_size=64) == [10] * 5 + [9] * 5
    assert Budget("steps", 25).rounds(1000, 64) == [3] * 5 + [2] * 5
    assert Budget("steps", 95).round_count == 10
    assert Budget("steps", 3).rounds(1000, 64) == [1, 1, 1]
    assert Budget("epochs", 4).rounds(1000, 64) == [15] * 4 and Budget("epochs", 4).round_count == 4


def test_accumulated_micro_batches_give_the_single_batch_gradient():
    data = _problem(64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    grads = []
    for micro_batch in (64, 10):  # 10 does not divide 64: micro-batches of 9 and 10
        torch.manual_seed(1)
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        group = _group(
            [model],
            [torch.arange(64)],
            [torch.arange(0)],
            [1],
            torch.optim.SGD,
            lr=0.0,
            batch_size=64,
            micro_batching=MicroBatching(micro_batch),
        )
        _trainer(data).train_steps(group, steps=1)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_batchnorm_trains_when_the_batch_is_one_more_than_the_micro_batch():
    data = _problem(64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    # 9 + 8, not 16 + 1
    group = _group(
        [model],
        [torch.arange(64)],
        [torch.arange(0)],
        [2],
        torch.optim.SGD,
        lr=0.1,
        batch_size=17,
        micro_batching=MicroBatching(16),
    )
    loss, _ = _trainer(data).train_steps(group, steps=2)
    assert math.isfinite(loss.item())


def test_a_huge_learning_rate_is_reported_as_divergence():
    data = _problem(normalisation=Normalisation((0.5,), (1e-20,)))  # inputs near 1e20
    group = _group(
        [_linear()],
        [torch.arange(80)],
        [torch.arange(80, 90)],
        [5],
        lr=1e30,
        batch_size=8,
        micro_batching=MicroBatching(8),
    )
    result = next(_trainer(data).rounds(group))
    assert result.diverged


def test_diverged_only_for_non_finite_losses():
    assert not RoundResult(0, [0.5], [0.5], [0.7], 1.0, 10).diverged
    assert RoundResult(0, [0.5], [0.5], [math.nan], 1.0, 10).diverged
    assert RoundResult(0, [0.5], [0.5], [math.inf], 1.0, 10).diverged


def test_evaluate_counts_correct_predictions_across_chunks_and_folds_of_unequal_size():
    data = _problem()
    models = [_linear(), _linear()]
    indices = [torch.arange(10, 60), torch.arange(60, 83)]
    expected = [
        (model(data.inputs(part)).argmax(1) == data.labels[part]).float().mean().item()
        for model, part in zip(models, indices, strict=True)
    ]
    group = _group(models, indices, indices, [1], micro_batching=MicroBatching(7))
    assert _trainer(data).evaluate(group, indices).tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("cap", "batch", "passes", "largest"),
    [(None, 100, 1, 100), (32, 100, 4, 25), (32, 72, 3, 24), (16, 17, 2, 9), (64, 64, 1, 64)],
)
def test_micro_batching_splits_a_batch_into_near_equal_passes(cap, batch, passes, largest):
    micro_batching = MicroBatching(cap)
    parts = micro_batching.split(torch.arange(batch))
    assert micro_batching.accumulation_steps(batch) == len(parts) == passes
    assert micro_batching.size(batch) == max(len(part) for part in parts) == largest
    assert min(len(part) for part in parts) >= largest - 1
    assert micro_batching.eval_chunk == (cap or EVAL_CHUNK)
