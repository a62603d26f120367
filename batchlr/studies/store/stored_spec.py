"""A study's spec and folds in its storage: written once when it is created, read by every command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

from batchlr.errors import BatchlrError
from batchlr.studies.store.spec import StudySpec
from batchlr.studies.store.study_creation import is_unfinished, wait_for_first_write

if TYPE_CHECKING:
    from batchlr.objectives.data import FoldAssignment

FOLDS_ATTR = "batchlr:folds"
LABELS_ATTR = "batchlr:labels"
"""The folds' labels fingerprint: the last attr a study created through a proxy gets."""


def save_spec(
    storage: optuna.storages.BaseStorage,
    study: str,
    spec: StudySpec,
    folds: FoldAssignment,
    labels_fingerprint: str,
) -> None:
    """Store the spec as user attrs and the folds as system attrs."""
    study_id = storage.get_study_id_from_name(study)
    for key, value in spec.to_attrs().items():
        storage.set_study_user_attr(study_id, key, value)
    storage.set_study_system_attr(study_id, FOLDS_ATTR, folds.encode())
    storage.set_study_system_attr(study_id, LABELS_ATTR, labels_fingerprint)


def save_micro_batch_cap(study: optuna.Study, cap: int) -> None:
    """Keep the cap a later run found for a study created without one, for the runs after it."""
    study.set_user_attr("max_micro_batch", cap)


class UnfinishedStudy(BatchlrError):
    """A study whose creation through a storage proxy has not finished (see
    :mod:`batchlr.studies.store.study_creation`)."""


def _unfinished(study: str) -> UnfinishedStudy:
    return UnfinishedStudy(
        f"study {study!r} is being created through a storage proxy, or its creation was "
        f"interrupted; batchlr run --study {study} finishes it or creates it anew"
    )


def load_spec(
    storage: optuna.storages.BaseStorage, study: str
) -> tuple[StudySpec, FoldAssignment, str] | None:
    """The stored spec, folds and labels fingerprint of ``study``; ``None`` when it does not exist.

    batchlr creates a study with all of them at once, so a study without them is not batchlr's,
    or one it is creating through a storage proxy.

    Raises:
        UnfinishedStudy: for a study being created through a proxy, or whose creation died.
        BatchlrError: when the study exists but batchlr did not create it.
    """
    from batchlr.objectives.data import FoldAssignment

    try:
        study_id = storage.get_study_id_from_name(study)
    except KeyError:
        return None
    wait_for_first_write(storage, study_id)
    system = storage.get_study_system_attrs(study_id)
    if is_unfinished(system, LABELS_ATTR):
        raise _unfinished(study)
    if LABELS_ATTR not in system:
        raise BatchlrError(
            f"study {study!r} exists but was not made by batchlr run; choose another --study name"
        )
    spec = StudySpec.read(storage.get_study_user_attrs(study_id), f"study {study!r}")
    return spec, FoldAssignment.decode(system[FOLDS_ATTR]), system[LABELS_ATTR]


def study_spec_or_none(study: optuna.Study) -> StudySpec | None:
    """The spec of a study batchlr made, for commands that only read it; ``None`` for a study
    made otherwise (with Optuna itself), which holds no batchlr settings.

    Raises:
        UnfinishedStudy: for a study being created through a proxy, or whose creation died:
            its settings may be partly written.
        BatchlrError: when the study's settings are damaged, or its directions are not those
            of its settings' objectives (another program's study with a ``dataset`` attr).
    """
    if is_unfinished(study._storage.get_study_system_attrs(study._study_id), LABELS_ATTR):
        raise _unfinished(study.study_name)
    attrs = study.user_attrs
    if "dataset" not in attrs:
        return None
    spec = StudySpec.read(attrs, f"study {study.study_name!r}")
    directions = [direction.name.lower() for direction in study.directions]
    if directions != spec.directions:
        raise BatchlrError(
            f"study {study.study_name!r} was not made by batchlr run: its settings name the objectives "
            f"{','.join(spec.training.objectives)}, but it has directions {','.join(directions)}"
        )
    return spec


def study_spec(study: optuna.Study) -> StudySpec:
    """:func:`study_spec_or_none` for commands that need batchlr's settings.

    Raises:
        BatchlrError: also when the study holds no batchlr settings.
    """
    spec = study_spec_or_none(study)
    if spec is None:
        raise BatchlrError(
            f"study {study.study_name!r} was not made by batchlr run, so it has no batchlr "
            "settings; batchlr show prints its trials"
        )
    return spec
