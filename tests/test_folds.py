import numpy as np
import pytest

from batchlr.errors import BatchlrUsageError
from batchlr.objectives.data import HOLDOUT, FoldAssignment, assign_folds

LABELS = np.repeat(np.arange(4), [50, 40, 30, 20])


def test_folds_are_stratified_disjoint_and_exclude_the_holdout():
    folds = assign_folds(LABELS, k=3, seed=0, holdout=True)
    holdout = folds.holdout()
    assert len(holdout) == pytest.approx(0.2 * len(LABELS), abs=1)
    val_sets = [set(folds.train_val(fold)[1]) for fold in range(3)]
    assert set().union(*val_sets) | set(holdout) == set(range(len(LABELS)))
    assert sum(map(len, val_sets)) + len(holdout) == len(LABELS)
    for fold in range(3):
        train, val = folds.train_val(fold)
        assert not set(train) & set(val) and not set(train) & set(holdout)
        # Every class keeps about a third of its in-fold samples in each validation part.
        counts = np.bincount(LABELS[val], minlength=4)
        in_folds = np.bincount(LABELS[folds.fold_of != HOLDOUT], minlength=4)
        assert np.all(np.abs(counts - in_folds / 3) <= 1)


def test_no_holdout_when_the_data_set_has_a_test_split():
    assert len(assign_folds(LABELS, k=2, seed=0, holdout=False).holdout()) == 0


def test_folds_depend_only_on_the_seed():
    same = assign_folds(LABELS, 3, seed=7, holdout=True).fold_of
    assert np.array_equal(same, assign_folds(LABELS, 3, seed=7, holdout=True).fold_of)
    assert not np.array_equal(same, assign_folds(LABELS, 3, seed=8, holdout=True).fold_of)


def sklearn_folds(labels: np.ndarray, k: int, seed: int, holdout: bool) -> np.ndarray:
    """The folds as batchlr drew them with scikit-learn itself, up to release 0.29."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    in_folds = np.arange(len(labels))
    if holdout:
        in_folds, _ = train_test_split(in_folds, test_size=0.2, stratify=labels, random_state=seed)
    fold_of = np.full(len(labels), HOLDOUT)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, val) in enumerate(splitter.split(in_folds, labels[in_folds])):
        fold_of[in_folds[val]] = fold
    return fold_of


def test_a_seed_draws_the_folds_that_scikit_learn_drew():
    generator = np.random.default_rng(0)
    for case in range(60):
        classes = int(generator.integers(2, 12))
        # classes of unequal sizes in shuffled order, some sizes tied, some rounding unevenly
        sizes = generator.integers(6, 40, classes)
        labels = generator.permutation(np.repeat(generator.permutation(classes), sizes))
        k, holdout = int(generator.integers(2, 6)), bool(case % 2)
        assert np.array_equal(
            assign_folds(labels, k, seed=case, holdout=holdout).fold_of,
            sklearn_folds(labels, k, case, holdout),
        ), (case, sizes, k, holdout)


def test_encoded_folds_decode_to_the_same_assignment():
    folds = assign_folds(np.repeat(np.arange(10), 6000), 5, seed=1, holdout=False)
    text = folds.encode()
    assert len(text) < 40_000  # 60,000 samples must fit a study attribute
    decoded = FoldAssignment.decode(text)
    assert decoded.k == 5 and np.array_equal(decoded.fold_of, folds.fold_of)


def test_smallest_train_size_is_the_smallest_training_part():
    folds = assign_folds(LABELS, 3, seed=0, holdout=False)
    assert folds.smallest_train_size() == min(len(folds.train_val(fold)[0]) for fold in range(3))


@pytest.mark.parametrize("k", [1, 17])
def test_fold_counts_outside_what_the_classes_allow_are_rejected(k):
    with pytest.raises(BatchlrUsageError, match="--folds"):
        assign_folds(LABELS, k, seed=0, holdout=True)
