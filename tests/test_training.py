"""The training loop: lockstep folds, dropped partial batches, divergence, evaluation."""

import math

import torch
from torch import nn

from batchlr.objectives.training import EpochResult, FoldRun, evaluate, train_epoch, train_in_lockstep


def _problem(n: int = 90) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 1, 4, 4, generator=generator)
    return images, (images.mean(dim=(1, 2, 3)) > 0).long()


def _run(train: torch.Tensor, val: torch.Tensor, lr: float = 0.01) -> FoldRun:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    return FoldRun(model, torch.optim.Adam(model.parameters(), lr=lr), train, val)


def _adam_steps(run: FoldRun) -> int:
    return int(next(iter(run.optimizer.state.values()))["step"])


def test_every_fold_finishes_an_epoch_before_any_fold_starts_the_next():
    images, labels = _problem()
    indices = torch.arange(90)
    runs = [_run(indices[indices % 3 != fold], indices[indices % 3 == fold]) for fold in range(3)]
    epochs = train_in_lockstep(runs, images, labels, batch_size=16, epochs=3, generator=torch.Generator().manual_seed(0))
    for epoch in range(3):
        result = next(epochs)
        assert result.epoch == epoch and len(result.val_accuracy) == 3
        # 60 training samples per fold in batches of 16: 3 full steps, the partial batch dropped.
        assert [_adam_steps(run) for run in runs] == [3 * (epoch + 1)] * 3
        assert result.train_images == 3 * 48
    assert next(epochs, None) is None


def test_each_epoch_reshuffles():
    images, labels = _problem()
    seen = []

    class Recorder(nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            seen.append(inputs[:, 0, 0, 0].clone())
            return self.linear(inputs.flatten(1))

    recorder = Recorder()
    recorder.linear = nn.Linear(16, 2)
    run = FoldRun(recorder, torch.optim.SGD(recorder.parameters(), lr=0.1), torch.arange(90), torch.arange(0))
    generator = torch.Generator().manual_seed(0)
    train_epoch(run, images, labels, 90, generator)
    train_epoch(run, images, labels, 90, generator)
    assert not torch.equal(seen[0], seen[1])
    assert torch.equal(seen[0].sort().values, seen[1].sort().values)


def test_a_huge_learning_rate_is_reported_as_divergence():
    images, labels = _problem()
    images = images * 1e20
    run = _run(torch.arange(80), torch.arange(80, 90), lr=1e30)
    result = next(train_in_lockstep([run], images, labels, 8, 1, torch.Generator().manual_seed(0)))
    assert result.diverged


def test_diverged_is_false_for_finite_losses():
    result = EpochResult(0, [0.5], [0.5], [0.7], 1.0, 10)
    assert not result.diverged
    assert EpochResult(0, [0.5], [0.5], [math.nan], 1.0, 10).diverged


def test_evaluate_counts_correct_predictions_across_chunks(monkeypatch):
    monkeypatch.setattr("batchlr.objectives.training.EVAL_CHUNK", 7)
    images, labels = _problem()
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    indices = torch.arange(10, 60)
    expected = (model(images[indices]).argmax(1) == labels[indices]).float().mean()
    assert evaluate(model, images, labels, indices).item() == expected.item()
