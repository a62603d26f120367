import pytest
import torch

from batchlr.errors import BatchlrError
from batchlr.objectives.models import convnet
from batchlr.objectives.training import largest_micro_batch, largest_passing


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


def test_cpu_is_not_probed():
    assert largest_micro_batch(convnet, (1, 8, 8), 10, torch.device("cpu"), upper=300) == 300
