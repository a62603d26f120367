"""Liveness of running trials that every storage carries, a database's or the gRPC proxy's.

Optuna's RDB heartbeats live in a table of their own and are judged by the database's clock;
the gRPC proxy carries neither. Here a running trial's worker refreshes a stamp, a trial
system attr that any storage stores, and every other worker judges the stamp by its own
monotonic clock: a trial whose stamp has not changed for two intervals, as this process timed
it, is stale. Clocks of different hosts are never compared, so their skew does not matter;
the price is that a process must watch a trial for two intervals before it can call it stale.
The stamp carries its worker's interval, and the longer of that and the checker's own is the
one judged by: workers given different ``--heartbeat`` values never fail each other's live
trials.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

ALIVE_ATTR = "batchlr:alive"
"""The trial system attr a running trial's worker refreshes every heartbeat."""

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class Liveness(BaseHeartbeat):
    """Optuna's heartbeat protocol on a trial system attr, mixed into a storage class ahead of
    it (``class S(Liveness, SomeStorage)``), so that Optuna's ``optimize`` refreshes the stamp
    in its heartbeat thread and fails stale trials before each new one.

    Off until :meth:`watch` gives an interval.
    """

    _interval: int | None = None
    _on_stale: StaleCallback | None = None

    def watch(self, interval: int | None, on_stale: StaleCallback | None) -> None:
        """Refresh running trials' stamps every ``interval`` seconds and call ``on_stale``
        for each trial this process fails as stale; ``None`` turns liveness off."""
        self._interval = interval
        self._on_stale = on_stale
        self._stamps = (f"{uuid.uuid4().hex[:12]}-{count}" for count in itertools.count())
        self._seen: dict[int, tuple[Any, float]] = {}

    def record_heartbeat(self, trial_id: int) -> None:
        assert isinstance(self, optuna.storages.BaseStorage)
        # Another worker may have failed the trial as stale (this one stalled), leaving nothing
        # to keep alive; a storage fault (a proxy restarting, a lost connection) the next beat
        # tries again, and the trial's own next call reports if it lasts. Either way, the
        # heartbeat thread must not die.
        with contextlib.suppress(Exception):
            stamp = {"beat": next(self._stamps), "every": self._interval}
            self.set_trial_system_attr(trial_id, ALIVE_ATTR, stamp)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """The running trials whose stamp this process has seen unchanged for two intervals."""
        assert isinstance(self, optuna.storages.BaseStorage) and self._interval
        now = time.monotonic()
        seen: dict[int, tuple[Any, float]] = {}
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            stamp = trial.system_attrs.get(ALIVE_ATTR)
            previous = self._seen.get(trial._trial_id)
            if previous is None or previous[0] != stamp:
                seen[trial._trial_id] = (stamp, now)
                continue
            seen[trial._trial_id] = previous
            if now - previous[1] > 2 * judged_interval(stamp, self._interval):
                stale.append(trial._trial_id)
        self._seen = seen
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> StaleCallback | None:
        return self._on_stale


def judged_interval(stamp: Any, own: int) -> int:
    """The heartbeat interval a trial with liveness ``stamp`` is judged by: the longer of
    ``own`` and the one its worker stamps at (none in a stamp of an earlier release)."""
    every = stamp.get("every") if isinstance(stamp, dict) else None
    return max(own, every) if isinstance(every, int) else own


class LiveRDBStorage(Liveness, optuna.storages.RDBStorage):
    """Optuna's RDBStorage with :class:`Liveness` in place of its heartbeat table."""
