"""What a study answers beyond its best trial: the fitted lr ridge per optimizer and the band of
configurations the folds cannot tell from the best, as ``show``, ``export`` and ``report`` give them."""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna

from batchlr.search.ridge import RidgeFit, fit_ridges
from batchlr.studies.results.band import Band, near_optimal_band
from batchlr.studies.results.scored_trials import scored_trials
from batchlr.studies.store.data_facts import data_facts
from batchlr.studies.store.stored_spec import study_spec


@dataclasses.dataclass(frozen=True)
class StudyAnswer:
    """A study's ridge fit per optimizer, its band (None while no trial is complete with fold
    scores), and the accuracy of guessing its fits were told apart from (None for a study
    created before batchlr stored its number of classes)."""

    ridges: dict[str, RidgeFit]
    band: Band | None
    chance: float | None

    def to_json(self) -> dict[str, Any]:
        """``ridge`` (per optimizer a fitted ridge's record, or ``{"reason": ...}``) and ``band``."""
        return {
            "ridge": {
                optimizer: fit.ridge.to_record() if fit.ridge else {"reason": fit.reason}
                for optimizer, fit in self.ridges.items()
            },
            "band": None if self.band is None else self.band.to_record(),
        }


def study_answer(study: optuna.Study) -> StudyAnswer:
    """The ridge and band of a batchlr study's complete trials: a fit for each optimizer it
    searches, in the order of its ``--optimizers`` (one without a complete trial with that
    reason).

    Raises:
        BatchlrError: for a study batchlr did not make.
    """
    space = study_spec(study).space
    facts = data_facts(study)
    chance = None if facts is None else facts.chance
    trials = study.get_trials(deepcopy=False)
    fits = fit_ridges(scored_trials(trials, space), chance)
    ridges = {
        optimizer: fits.get(optimizer)
        or RidgeFit(optimizer, None, "it needs complete trials, it has none")
        for optimizer in space.optimizers
    }
    return StudyAnswer(ridges | fits, near_optimal_band(trials, space), chance)
