"""Creating a study whole or not at all.

On a database, in one transaction. Through a storage proxy no transaction spans two calls, so
the study is created first and its attrs after, one system attr last: a study without it is
unfinished. Readers take an unfinished study for one being created; a run waits up to
:data:`CREATION_WAIT` seconds for it to become whole and else, its creator having died,
removes it and creates it anew.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from typing import Any

import optuna
import sqlalchemy.exc

CREATING_ATTR = "batchlr:creating"
"""The first attr a study created through a proxy gets: its creation has begun."""
CREATION_WAIT = 60
"""Seconds a run waits for another worker to finish creating a study through a proxy."""
FIRST_WRITE_WAIT = 5
"""Seconds an empty study may stay so before it is taken for someone else's, through a proxy."""


def create_study_from(
    storage: optuna.storages.BaseStorage,
    draft: optuna.storages.InMemoryStorage,
    name: str,
    last_attr: str,
) -> bool:
    """Copy the study ``name`` of ``draft`` (without trials) to ``storage``, with its directions
    and all its attrs: on a database in one transaction, else with the system attr
    ``last_attr`` written last (see the module's note).

    Returns False when ``storage`` holds a study of that name already.
    """
    if isinstance(storage, optuna.storages.RDBStorage):
        return _in_one_transaction(storage, draft, name)
    study_id = draft.get_study_id_from_name(name)
    try:
        created = storage.create_new_study(draft.get_study_directions(study_id), name)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    try:
        storage.set_study_system_attr(created, CREATING_ATTR, True)
        for key, value in draft.get_study_user_attrs(study_id).items():
            storage.set_study_user_attr(created, key, value)
        system = draft.get_study_system_attrs(study_id)
        for key, value in system.items():
            if key != last_attr:
                storage.set_study_system_attr(created, key, value)
        storage.set_study_system_attr(created, last_attr, system[last_attr])
    except KeyError:
        return False  # a waiter that took it for a dead creator's removed it: start again
    return True


def is_unfinished(system_attrs: Mapping[str, Any], last_attr: str) -> bool:
    """Whether a study of these system attrs is one whose creation through a proxy has begun
    (:data:`CREATING_ATTR`) and not written ``last_attr`` yet."""
    return CREATING_ATTR in system_attrs and last_attr not in system_attrs


def wait_for_first_write(storage: optuna.storages.BaseStorage, study_id: int) -> None:
    """Through a proxy, give a study that holds nothing yet up to :data:`FIRST_WRITE_WAIT`
    seconds to get its first attr: between creating a study and marking it
    :data:`CREATING_ATTR` its creator makes one call, in which it looks like anyone's empty
    study. On a database, where a study is created whole, return at once."""
    if isinstance(storage, optuna.storages.RDBStorage):
        return
    deadline = time.monotonic() + FIRST_WRITE_WAIT
    while (
        time.monotonic() < deadline
        and not storage.get_study_system_attrs(study_id)
        and not storage.get_study_user_attrs(study_id)
        and not storage.get_all_trials(study_id, deepcopy=False)
    ):
        time.sleep(0.1)


def settle_unfinished(storage: optuna.storages.BaseStorage, name: str, last_attr: str) -> None:
    """Wait up to :data:`CREATION_WAIT` seconds for the unfinished study ``name`` to become
    whole (another worker creating it) or go; remove it if it does neither (its creator died).

    Only the study first seen is removed: a new one of that name, another waiter's fresh
    creation, gets a wait of its own.
    """
    watched, deadline = None, 0.0
    while True:
        try:
            study_id = storage.get_study_id_from_name(name)
        except KeyError:
            return
        if not is_unfinished(storage.get_study_system_attrs(study_id), last_attr):
            return
        if study_id != watched:
            watched, deadline = study_id, time.monotonic() + CREATION_WAIT
        elif time.monotonic() > deadline:
            with contextlib.suppress(KeyError):  # another waiter removed it first
                storage.delete_study(study_id)
            return
        time.sleep(0.5)


def _in_one_transaction(
    storage: optuna.storages.RDBStorage, draft: optuna.storages.InMemoryStorage, name: str
) -> bool:
    # Optuna creates a study and each attr in separate transactions
    from optuna.storages._rdb import models

    study_id = draft.get_study_id_from_name(name)
    session = storage.scoped_session()
    try:
        session.add(
            models.StudyModel(
                study_name=name,
                directions=[
                    models.StudyDirectionModel(objective=index, direction=direction)
                    for index, direction in enumerate(draft.get_study_directions(study_id))
                ],
                user_attributes=[
                    models.StudyUserAttributeModel(key=key, value_json=json.dumps(value))
                    for key, value in draft.get_study_user_attrs(study_id).items()
                ],
                system_attributes=[
                    models.StudySystemAttributeModel(key=key, value_json=json.dumps(value))
                    for key, value in draft.get_study_system_attrs(study_id).items()
                ],
            )
        )
        session.commit()
    except sqlalchemy.exc.IntegrityError:
        session.rollback()
        return False
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    return True
