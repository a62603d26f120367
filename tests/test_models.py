"""Models by name: the built-in ResNet-20, torchvision's classification models, and the
errors for a name batchlr cannot resolve or images a model cannot take."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.models import (
    EXACT_IMAGE_SIZES,
    MINIMUM_IMAGE_SIZES,
    SMALL_IMAGE_MODELS,
    GreyToRGB,
    build_model,
    parameter_count,
    resolve_model,
)

# Sizes of the bundled and torchvision data sets (digits, MNIST, CIFAR) and a larger folder.
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]


def built(name: str, shape: tuple[int, int, int], classes: int = 10) -> nn.Module:
    """The model as a study gets it, after build_model's check of its output shape."""
    torch.manual_seed(0)
    return build_model(resolve_model(name), name, shape, classes)


def test_resnet20_has_the_papers_parameter_count() -> None:
    # He et al. 2016, table 6: 0.27 M with option A's parameter-free shortcuts.
    assert abs(parameter_count(built("resnet20", (3, 32, 32))) - 270_000) <= 10_000


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "x".join(map(str, shape)))
def test_resnet20_takes_the_channels_and_size_of_the_input(shape: tuple[int, int, int]) -> None:
    model = built("resnet20", shape, classes=7)
    assert model.conv.in_channels == shape[0]
    assert model.train()(torch.zeros(3, *shape)).shape == (3, 7)


def test_resnet20_learns_a_fixed_batch() -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    model = built("resnet20", (3, 16, 16)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 4, losses


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)], ids=["3x32x32", "1x28x28"])
def test_torchvision_models_build_untrained_for_the_input(
    name: str, shape: tuple[int, int, int]
) -> None:
    model = built(name, shape)  # build_model checks the (2, 10) output
    assert isinstance(model, GreyToRGB) == (shape[0] == 1)
    assert model.train()(torch.randn(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize(("name", "size"), [("googlenet", 32), ("inception_v3", 75)])
def test_inception_models_train_on_one_output_and_build_without_warnings(
    name: str, size: int
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # their default init warns that it will change
        model = built(name, (3, size, size))
    # With auxiliary heads, training's output would be a tuple of logits.
    assert model.train()(torch.randn(2, 3, size, size)).shape == (2, 10)


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        (
            "vit_b_16",
            (3, 32, 32),
            "--model vit_b_16 needs 224x224 images, not 32x32; give --image-size 224 or choose",
        ),
        ("vit_b_16", (3, 224, 256), "needs 224x224 images, not 224x256; give --image-size 224"),
        (
            "inception_v3",
            (1, 28, 28),
            "--model inception_v3 needs at least 75x75 images, not 28x28; give --image-size 75",
        ),
        (
            "squeezenet1_1",
            (3, 16, 64),
            "needs at least 17x17 images, not 16x64; give --image-size 17",
        ),
    ],
)
def test_a_model_refuses_images_it_cannot_take_in_one_line(
    name: str, shape: tuple[int, int, int], message: str
) -> None:
    with pytest.raises(BatchlrError) as refused:
        built(name, shape)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value) and "resnet20" in str(refused.value)


def test_a_minimum_image_size_is_the_smallest_that_works() -> None:
    assert MINIMUM_IMAGE_SIZES["squeezenet1_1"] == 17
    model = torchvision.models.squeezenet1_1(num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 17, 17)).shape == (2, 10)
        with pytest.raises(RuntimeError):
            model(torch.zeros(2, 3, 16, 16))


def test_size_tables_name_torchvision_models() -> None:
    names = set(torchvision.models.list_models(module=torchvision.models))
    assert set(MINIMUM_IMAGE_SIZES) | set(EXACT_IMAGE_SIZES) | set(SMALL_IMAGE_MODELS) <= names
    assert not set(SMALL_IMAGE_MODELS) & (set(MINIMUM_IMAGE_SIZES) | set(EXACT_IMAGE_SIZES))


@pytest.mark.parametrize("name", ["nosuchmodel", "ResNet18", "resnet20x"])
def test_an_unknown_name_lists_what_works(name: str) -> None:
    with pytest.raises(BatchlrUsageError) as refused:
        resolve_model(name)
    assert str(refused.value) == (
        f"--model: unknown model {name!r}; choose from convnet, convnet-bn, resnet20, any torchvision classification "
        "model (such as resnet18 or mobilenet_v3_small), or give package.module:function"
    )


@pytest.mark.parametrize("name", [":build", "my_models:"])
def test_a_factory_path_needs_both_parts(name: str) -> None:
    with pytest.raises(
        BatchlrUsageError, match=r"give package\.module:function, with both a module and a function"
    ):
        resolve_model(name)


@pytest.mark.process
def test_importing_the_models_leaves_torchvision_unimported(tmp_path: Path) -> None:
    # `batchlr --help` imports this module; torchvision would add a second to it.
    code = "import sys, batchlr.objectives.models.catalog; assert 'torchvision' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)


def broken_factory(input_shape, num_classes):
    """A user's model function with a bug of its own."""
    raise ValueError("the user's own bug")


def test_debug_shows_a_user_models_own_error_as_the_cause():
    from click.testing import CliRunner

    from batchlr.cli import main

    args = ["lr-find", "--model", f"{__name__}:broken_factory", "--device", "cpu"]
    plain = CliRunner().invoke(main, args)
    assert plain.exit_code == 1 and "raised ValueError: the user's own bug" in plain.output
    assert "Traceback" not in plain.output
    debug = CliRunner().invoke(main, ["--debug", *args])
    assert isinstance(debug.exception, BatchlrError)
    cause = debug.exception.__cause__
    assert isinstance(cause, ValueError) and str(cause) == "the user's own bug"
