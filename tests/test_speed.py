"""Fused folds train as separate ones do; every precision trains, keeps float32 parameters and
optimizer state, and reports divergence; the execution each device gets."""

import dataclasses
import math
import re
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from click.testing import CliRunner

from batchlr.cli import main
from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.data import assign_folds, load_dataset
from batchlr.objectives.objective import CrossValidationObjective
from batchlr.objectives.settings import Budget, TrainingSettings
from batchlr.objectives.trainer import Trainer
from batchlr.objectives.training import Execution, native_bf16, resolve_precision
from batchlr.search.space import Hyperparameters, SearchSpace

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", Path("unused"))
    return data, assign_folds(data.labels.numpy(), 3, seed=0, holdout=True)


FOUR_STEPS = Budget("steps", 4)


@pytest.fixture
def two_threads() -> Iterator[None]:
    """The thread count the fused-fold tolerances were measured at (the suite runs one per
    process): on one thread the CPU's convolutions sum in another order, and resnet20's 20
    BatchNorm layers amplify those last bits past 1e-5."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _objective(
    digits, model="convnet-bn", fuse="off", precision="fp32", budget=FOUR_STEPS, **settings
) -> CrossValidationObjective:
    data, folds = digits
    training = TrainingSettings(budget=budget, precision=precision, **settings)
    trainer = Trainer.on(data, folds.searched(), model, training, CPU, fuse)
    return CrossValidationObjective(trainer, data, folds, SearchSpace(), seed=0)


def _with_execution(objective: CrossValidationObjective, **changes) -> None:
    """Change how ``objective`` trains, e.g. ``channels_last=False``."""
    trainer = objective.trainer
    execution = dataclasses.replace(trainer.execution, **changes)
    objective.trainer = dataclasses.replace(trainer, execution=execution)


def _trained_folds(
    objective: CrossValidationObjective, hyperparameters: Hyperparameters, steps: int
):
    torch.manual_seed(5)
    trainer = objective.trainer
    group = trainer.fold_group(hyperparameters, objective.fold_indices, seed=5)
    losses, _accuracies = trainer.train_steps(group, steps)
    return group, losses, trainer.evaluate(group, group.val_indices)


@pytest.mark.parametrize(
    ("model", "optimizer", "augment", "cap"),
    [
        ("convnet-bn", "sgd", (), None),
        pytest.param("resnet20", "sgd", (), None, marks=pytest.mark.slow),
        ("convnet-bn", "rmsprop", ("flip",), 24),
        pytest.param("resnet20", "adam", ("flip", "crop"), 24, marks=pytest.mark.slow),
    ],
)
@pytest.mark.usefixtures("two_threads")
def test_fused_folds_train_exactly_as_separate_ones(digits, model, optimizer, augment, cap):
    """Per-fold losses, validation scores and every weight and BatchNorm statistic agree to float
    tolerance: within 1e-5 under SGD. Adam and RMSProp divide by the root of the squared
    gradients, which turns float noise in near-zero gradients into steps of up to lr, and
    augmented batches take other kernels whose last-bit differences 20 BatchNorm layers
    amplify; there the weights agree within a few steps' lr (the losses still to 1e-4)."""
    hyperparameters = Hyperparameters(48, 0.01, optimizer, 0.9 if optimizer != "adam" else None)
    objectives = [
        _objective(digits, model, fuse, augment=augment, max_micro_batch=cap)
        for fuse in ("off", "on")
    ]
    # Both in NCHW: channels_last's other kernels differ in the last bits, which is not fusion's doing.
    _with_execution(objectives[0], channels_last=False)
    runs = [_trained_folds(objective, hyperparameters, 3) for objective in objectives]
    (separate, separate_losses, separate_scores), (fused, fused_losses, fused_scores) = runs
    assert separate.execution.fuse_folds is False and fused.execution.fuse_folds is True
    torch.testing.assert_close(fused_losses, separate_losses, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused_scores, separate_scores)
    tolerance = 1e-5 if optimizer == "sgd" else 3 * hyperparameters.lr
    for fold in range(3):
        expected, actual = (
            separate.models.module(fold).state_dict(),
            fused.models.module(fold).state_dict(),
        )
        assert expected.keys() == actual.keys()
        for name in expected:  # weights and BatchNorm statistics, fold by fold
            torch.testing.assert_close(
                actual[name],
                expected[name],
                rtol=1e-3,
                atol=tolerance,
                msg=lambda text, fold=fold, name=name: f"fold {fold} {name}: {text}",
            )
    # The folds did train apart: a model per fold, not one shared.
    assert not torch.equal(
        fused.models.module(0).state_dict()[name], fused.models.module(1).state_dict()[name]
    )


def test_a_diverging_fold_stays_in_its_fold_when_fused(digits):
    objective = _objective(digits, "convnet", "on")
    trainer = objective.trainer
    group = trainer.fold_group(Hyperparameters(32, 0.01, "adam"), objective.fold_indices, seed=1)
    with torch.no_grad():
        group.models.params["0.weight"][1].fill_(float("nan"))
    losses, _ = trainer.train_steps(group, 2)
    assert torch.isfinite(losses[[0, 2]]).all() and torch.isnan(losses[1])
    assert torch.isfinite(group.models.module(0).state_dict()["6.weight"]).all()


def test_a_model_torch_func_cannot_fuse_falls_back_under_auto_and_is_named_under_on(digits):
    name = f"{__name__}:item_in_forward"
    # on the CPU auto never fuses
    assert _objective(digits, name, "auto").trainer.execution.fuse_folds is False
    with pytest.raises(
        BatchlrError,
        match=r"--model .*item_in_forward cannot train with fused folds .*--fuse-folds off",
    ):
        _objective(digits, name, "on")


def item_in_forward(input_shape, num_classes):
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(64, num_classes)

        def forward(self, inputs):
            scale = float(inputs.abs().max().item()) + 1  # data-dependent Python: vmap refuses it
            return self.linear(inputs.flatten(1)) / scale

    return Model()


def test_native_bf16_follows_the_cpu_flags():
    flags = set(
        re.findall(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)[0].split()
    )
    assert native_bf16(CPU) == bool(flags & {"avx512_bf16", "amx_bf16"})
    assert resolve_precision("auto", CPU) == (
        "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "fp32"
    )
    assert resolve_precision("fp16", CPU) == "fp16" and resolve_precision("fp32", CPU) == "fp32"


def test_execution_per_device_and_model():
    assert Execution.on(CPU, "fp32").channels_last and not Execution.on(CPU, "fp32").fuse_folds
    # a user's model may view() activations
    assert not Execution.on(CPU, "fp32", builtin_model=False).channels_last
    fused = Execution.on(CPU, "fp32", "on")
    assert fused.fuse_folds and not fused.channels_last
    with pytest.raises(BatchlrUsageError, match="fuse_folds sometimes: choose from auto, on, off"):
        Execution.on(CPU, "fp32", "sometimes")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_lower_precision_keeps_float32_parameters_and_optimizer_state(digits, precision):
    objective = _objective(digits, precision=precision)
    group, losses, scores = _trained_folds(objective, Hyperparameters(32, 3e-3, "adam"), 6)
    model = group.models.module(0)
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    assert all(state["exp_avg"].dtype == torch.float32 for state in group.optimizer.state.values())
    assert group.scaler.is_enabled() == (precision == "fp16")
    # learning: below chance's loss, above its accuracy
    assert (losses < math.log(10)).all() and (scores > 0.1).all()
    with group.execution.autocast():
        assert (
            model(objective.trainer.images.inputs(torch.arange(4))).dtype
            == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        )


@pytest.mark.slow
def test_every_precision_reports_itself_and_scores_as_fp32_does():
    # Two folds, half the images of three: fp16 computes slowly on CPUs.
    data = load_dataset("digits", Path("unused"))
    digits = data, assign_folds(data.labels.numpy(), 2, seed=0, holdout=True)
    values = {}
    for precision in ("fp32", "bf16", "fp16"):
        study = optuna.create_study(direction="maximize")
        study.enqueue_trial({"batch_size": 32, "lr": 3e-3, "optimizer": "adam"})
        study.optimize(
            _objective(digits, "convnet", precision=precision, budget=Budget("epochs", 3)),
            n_trials=1,
        )
        (trial,) = study.trials
        assert (
            trial.user_attrs["precision"] == precision and trial.user_attrs["fused_folds"] is False
        )
        values[precision] = trial.value
    assert values["fp32"] > 0.9
    assert values["bf16"] == pytest.approx(values["fp32"], abs=0.02) and values[
        "fp16"
    ] == pytest.approx(values["fp32"], abs=0.02)


def test_a_study_keeps_its_precision_and_refuses_another_on_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    common = [
        "run",
        "--storage",
        storage,
        "--study",
        "p",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--n-trials",
        "1",
        "--quiet",
    ]
    assert CliRunner().invoke(main, [*common, "--precision", "bf16"]).exit_code == 0
    refused = CliRunner().invoke(main, [*common, "--precision", "fp32"])
    assert refused.exit_code == 2 and "created with --precision bf16, not fp32" in refused.output
    assert CliRunner().invoke(main, common).exit_code == 0
    trials = optuna.load_study(study_name="p", storage=storage).trials
    assert [trial.user_attrs["precision"] for trial in trials] == ["bf16", "bf16"]
    shown = CliRunner().invoke(main, ["show", "p", "--storage", storage, "--as-config"])
    assert 'precision = "bf16"' in shown.output


def small_cnn(input_shape, num_classes):
    """One convolution and a linear layer: what compiling must get right, compiled in a fraction
    of convnet's time."""
    channels = input_shape[0]
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * input_shape[1] * input_shape[2], num_classes),
    )


@pytest.mark.parametrize("fuse", ["off", "on"])
def test_compiled_folds_train_as_uncompiled_ones(digits, fuse):
    hyperparameters = Hyperparameters(64, 0.05, "sgd", 0.9)
    objectives = [_objective(digits, f"{__name__}:small_cnn", fuse) for _ in range(2)]
    _with_execution(objectives[1], compile=True)
    (_plain, plain_losses, plain_scores), (_compiled, compiled_losses, compiled_scores) = (
        _trained_folds(objective, hyperparameters, 2) for objective in objectives
    )
    torch.testing.assert_close(compiled_losses, plain_losses, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled_scores, plain_scores)


def oom_when_fused(input_shape, num_classes):
    """Runs out of memory on the k-fold batches of fused folds only, as a GPU can."""

    class Model(torch.nn.Sequential):
        def forward(self, inputs):
            if torch._C._functorch.is_batchedtensor(inputs):
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return super().forward(inputs)

    return Model(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))


def test_a_trial_that_runs_out_of_memory_fused_trains_its_folds_separately(digits):
    objective = _objective(digits, f"{__name__}:oom_when_fused", "on")
    # running out of memory says nothing about whether torch.func can fuse it
    assert objective.trainer.execution.fuse_folds
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"batch_size": 32, "lr": 1e-2, "optimizer": "adam"})
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert (
        trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["fused_folds"] is False
    )
    assert objective.trainer.execution.fuse_folds  # the next trial tries fused again


def tied_and_unsaved(input_shape, num_classes):
    """Weights tied between two layers and a buffer left out of the state dict: a fused fold's
    module must still come back whole."""

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.outer = torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)
            self.outer.weight = self.inner.weight
            self.head = torch.nn.Linear(64, num_classes)
            self.register_buffer("offset", torch.zeros(64), persistent=False)

        def forward(self, inputs):
            return self.head(self.outer(torch.relu(self.inner(inputs.flatten(1)))) + self.offset)

    return Model()


def test_fused_folds_give_back_models_with_tied_weights_and_unsaved_buffers(digits):
    objective = _objective(digits, f"{__name__}:tied_and_unsaved", "on")
    assert objective.trainer.execution.fuse_folds
    group, losses, _ = _trained_folds(objective, Hyperparameters(32, 0.01, "sgd", 0.9), 2)
    model = group.models.module(1)
    assert model.outer.weight is model.inner.weight and torch.equal(
        model.inner.weight, group.models.params["inner.weight"][1].detach().cpu()
    )
    assert torch.isfinite(losses).all()


def test_separate_folds_run_one_fold_per_pass_and_fused_ones_all_at_once(digits):
    separate, fused = _objective(digits, "convnet", "off"), _objective(digits, "convnet", "on")
    hyperparameters = Hyperparameters(32, 0.01, "adam")
    assert separate.trainer.fold_group(hyperparameters, separate.fold_indices, 0).models.passes == [
        slice(0, 1),
        slice(1, 2),
        slice(2, 3),
    ]
    assert fused.trainer.fold_group(hyperparameters, fused.fold_indices, 0).models.passes == [
        slice(None)
    ]
