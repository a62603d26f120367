import itertools

import pytest
import torch

from batchlr.objectives.schedules import ONECYCLE_END, ONECYCLE_START, lr_factor, make_scheduler


def test_warmup_rises_linearly_then_the_schedule_takes_over():
    assert [lr_factor(step, 100, "constant", warmup_steps=4) for step in range(6)] == [
        0.25,
        0.5,
        0.75,
        1.0,
        1.0,
        1.0,
    ]
    assert lr_factor(4, 104, "cosine", warmup_steps=4) == 1.0


def test_cosine_falls_from_one_to_zero():
    factors = [lr_factor(step, 100, "cosine") for step in range(101)]
    assert (
        factors[0] == 1.0
        and factors[50] == pytest.approx(0.5)
        and factors[100] == pytest.approx(0.0)
    )
    assert all(a >= b for a, b in itertools.pairwise(factors))


def test_onecycle_rises_to_the_peak_at_thirty_percent_then_anneals():
    factors = [lr_factor(step, 100, "onecycle") for step in range(101)]
    assert factors[0] == pytest.approx(ONECYCLE_START)
    assert max(factors) == pytest.approx(1.0) and factors.index(max(factors)) == 30
    assert factors[100] == pytest.approx(ONECYCLE_END)


def test_scheduler_sets_the_optimizer_lr_each_step():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
    scheduler = make_scheduler(optimizer, total_steps=10, schedule="constant", warmup_steps=2)
    seen = []
    for _ in range(3):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.2, 0.4, 0.4])
