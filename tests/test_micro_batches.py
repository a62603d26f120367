import pytest
import torch

from batchlr.errors import BatchlrError
from batchlr.objectives.micro_batches import AUTO, resolve_cap
from batchlr.objectives.models import convnet
from batchlr.objectives.probes import largest_micro_batch, largest_passing
from batchlr.objectives.probes.memory import fits_in_memory
from batchlr.objectives.settings import TrainingSettings
from batchlr.objectives.trainer import Trainer
from batchlr.objectives.training import DeviceImages, Execution, Normalisation

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("limit", "upper"), [(1, 512), (37, 512), (64, 512), (511, 512), (512, 512), (1000, 300)]
)
def test_largest_passing_finds_the_limit_in_few_tries(limit, upper):
    tried = []

    def fits(size: int) -> bool:
        tried.append(size)
        return size <= limit

    assert largest_passing(fits, upper) == min(limit, upper)
    assert len(tried) <= 2 * upper.bit_length()


def test_nothing_fits_is_a_clear_error():
    with pytest.raises(BatchlrError, match="micro-batch of 1"):
        largest_passing(lambda size: False, 64)


class OutOfMemoryAbove(torch.nn.Sequential):
    """Runs out of memory on more than ``limit`` samples, as a GPU would."""

    def __init__(self, limit: int) -> None:
        super().__init__(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        self.limit = limit

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(inputs)


def _trainer(new_model) -> Trainer:
    images = DeviceImages(
        torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
        torch.zeros(4, dtype=torch.long),
        Normalisation((0.5,), (0.25,)),
    )
    return Trainer(images, new_model, TrainingSettings(), Execution(CPU))


def test_the_memory_probe_takes_the_trials_step_and_finds_where_it_runs_out():
    trainer = _trainer(lambda: OutOfMemoryAbove(limit=37))
    assert largest_passing(lambda size: fits_in_memory(trainer, size), 512) == 37


def test_cpu_is_not_probed():
    trainer = _trainer(lambda: convnet((1, 8, 8), 10))
    assert largest_micro_batch(trainer, upper=300) == 300


def test_a_cap_resolves_from_the_option_the_study_or_the_probe():
    def probe() -> int:
        return 48

    assert resolve_cap(None, 32, probe) is None and resolve_cap("64", 32, probe) == 64
    assert resolve_cap(AUTO, 32, probe) == 32  # as the study's trials trained
    assert resolve_cap(AUTO, None, probe) == 48
    assert resolve_cap(AUTO, AUTO, probe) == 48  # stored unresolved: probed, not a raw error
