"""Creating a study whole or not at all."""

from __future__ import annotations

import json

import optuna
import sqlalchemy.exc


def create_study_from(
    storage: optuna.storages.RDBStorage, draft: optuna.storages.InMemoryStorage, name: str
) -> bool:
    """Copy the study ``name`` of ``draft`` (without trials) to ``storage``, with its directions
    and all its attrs, in one transaction, so that a study interrupted at any moment of its
    creation is either absent or whole.

    Returns False when ``storage`` holds a study of that name already.
    """
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
