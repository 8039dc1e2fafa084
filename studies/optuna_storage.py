"""Optuna's storage on the Django ORM: the ``Study`` and ``Trial`` rows *are* Optuna's.

``DjangoStorage`` implements :class:`optuna.storages.BaseStorage` and
:class:`optuna.storages._heartbeat.BaseHeartbeat`, so ``optuna.create_study(storage=
DjangoStorage())`` works with any sampler and pruner, and every page, API call and worker
reads the same rows Optuna samples from.

Safety across processes follows Optuna's ``RDBStorage``:

* every call is one transaction;
* ``create_new_trial`` locks the study row (``SELECT ... FOR UPDATE``) and numbers the new
  trial by counting, so numbers stay unique and dense under many workers;
* every write to a trial locks its row, then refuses to touch a finished trial
  (``UpdateFinishedTrialError``); WAITING to RUNNING is a compare-and-set under that lock,
  so each waiting trial is handed to exactly one worker;
* heartbeats and staleness use the database clock; start and completion times the Python
  clock, as naive local datetimes exactly as Optuna gives them;
* a deadlock or serialization failure is retried a few times.

Like Optuna's ``_CachedStorage`` it keeps, per process, the trials that have finished (they
never change again) and re-reads only the unfinished ones and those created since, so TPE's
read of the whole study on every new trial stays cheap. The instance holds no connection
and pickles without its cache.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Container, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import optuna
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Now
from optuna import distributions as optuna_distributions
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._base import DEFAULT_STUDY_NAME_PREFIX
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaTrialState

from studies.models import Study, StudyParamDistribution
from trials.models import Trial

_T = TypeVar("_T")
_MAX_ATTEMPTS = 5

# The columns a FrozenTrial is built from, in this order.
_TRIAL_COLUMNS = (
    "id",
    "number",
    "state",
    "values_json",
    "params_json",
    "intermediate_values_json",
    "user_attrs_json",
    "system_attrs_json",
    "datetime_start",
    "datetime_complete",
)


def _retry_transient(method: Callable[..., _T]) -> Callable[..., _T]:
    """Retry a whole call after a deadlock, a serialization failure or a busy SQLite file.

    Only at the outermost transaction: inside a caller's ``atomic`` block the failed
    transaction cannot be replayed here, so the error goes up.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                return method(*args, **kwargs)
            except OperationalError:
                if attempt == _MAX_ATTEMPTS or connection.in_atomic_block:
                    raise
                time.sleep(random.uniform(0, 0.05 * 2**attempt))
        raise AssertionError("unreachable")

    return wrapper


def _to_db_datetime(value: datetime | None) -> datetime | None:
    """Optuna speaks naive local time; the database keeps aware UTC when USE_TZ is on."""
    if value is None or not settings.USE_TZ or value.tzinfo is not None:
        return value
    return value.astimezone()  # a naive datetime is taken as local time


def _from_db_datetime(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone().replace(tzinfo=None)


def _dumps_number(value: float) -> float | None:
    """A float fit for the ``value`` column: SQLite would turn NaN into NULL anyway."""
    return None if value != value else value


@functools.lru_cache(maxsize=4096)
def _distribution_from_json(text: str) -> optuna_distributions.BaseDistribution:
    # Many trials share a handful of distributions; parse each JSON text once.
    return optuna_distributions.json_to_distribution(text)


def _directions_to_json(directions: Sequence[StudyDirection]) -> list[str]:
    return [direction.name.lower() for direction in directions]


def _directions_from_json(names: Sequence[str]) -> list[StudyDirection]:
    return [StudyDirection[name.upper()] for name in names]


class _StudyCache:
    """What this process knows of one study's trials (finished ones never change)."""

    def __init__(self) -> None:
        self.trials: dict[int, FrozenTrial] = {}  # by number
        self.unfinished_trial_ids: set[int] = set()
        self.last_finished_trial_id = -1
        self.distributions: dict[str, optuna_distributions.BaseDistribution] = {}
        self.distributions_loaded = False


class DjangoStorage(BaseStorage, BaseHeartbeat):
    """Optuna storage on the platform's ``Study`` and ``Trial`` models.

    Args:
        heartbeat_interval: seconds between heartbeats of a running trial; ``None`` turns
            heartbeats off.
        grace_period: seconds without a heartbeat after which ``fail_stale_trials`` fails a
            running trial; default twice the interval.
        failed_trial_callback: called with ``(study, trial)`` for each trial failed as stale,
            e.g. ``optuna.storages.RetryHeartbeatStaleTrialCallback`` to re-queue it.
        workspace_id: the workspace that studies created through Optuna belong to; ``None``
            for studies only operators see.

    Thread-safe: each thread uses its own Django connection; the cache is locked.
    """

    def __init__(
        self,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        failed_trial_callback: Callable[["optuna.Study", FrozenTrial], None] | None = None,
        *,
        workspace_id: int | None = None,
    ) -> None:
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("The value of `heartbeat_interval` should be a positive integer.")
        if grace_period is not None and grace_period <= 0:
            raise ValueError("The value of `grace_period` should be a positive integer.")
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.failed_trial_callback = failed_trial_callback
        self.workspace_id = workspace_id
        self._studies: dict[int, _StudyCache] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"], state["_local"]
        state["_studies"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._local = threading.local()

    # --- studies -------------------------------------------------------------------------

    @_retry_transient
    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        if study_name is None:
            study_name = DEFAULT_STUDY_NAME_PREFIX + str(uuid.uuid4())
        try:
            with transaction.atomic():
                study = Study.objects.create(
                    workspace_id=self.workspace_id,
                    name=study_name,
                    optuna_name=study_name,
                    dataset="",
                    directions=_directions_to_json(directions),
                )
        except IntegrityError:
            raise DuplicatedStudyError(
                f"Another study with name '{study_name}' already exists."
            ) from None
        return study.pk

    @_retry_transient
    def delete_study(self, study_id: int) -> None:
        with transaction.atomic():
            deleted = Study.objects.filter(pk=study_id).delete()[0]
        if not deleted:
            raise KeyError(f"No study with study_id {study_id} exists.")
        with self._lock:
            self._studies.pop(study_id, None)

    def _set_study_attr(self, study_id: int, column: str, key: str, value: Any) -> None:
        with transaction.atomic():
            attrs_text = self._locked_study_values(study_id, column)
            attrs = json.loads(attrs_text)
            attrs[key] = value
            Study.objects.filter(pk=study_id).update(**{column: json.dumps(attrs)})

    @staticmethod
    def _locked_study_values(study_id: int, column: str) -> Any:
        row = Study.objects.select_for_update().filter(pk=study_id).values_list(column).first()
        if row is None:
            raise KeyError(f"No study with study_id {study_id} exists.")
        return row[0]

    @_retry_transient
    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._set_study_attr(study_id, "user_attrs_json", key, value)

    @_retry_transient
    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._set_study_attr(study_id, "system_attrs_json", key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        study_id = Study.objects.filter(optuna_name=study_name).values_list("id", flat=True).first()
        if study_id is None:
            raise KeyError(f"No such study {study_name}.")
        return study_id

    def _study_value(self, study_id: int, column: str) -> Any:
        row = Study.objects.filter(pk=study_id).values_list(column).first()
        if row is None:
            raise KeyError(f"No study with study_id {study_id} exists.")
        return row[0]

    def get_study_name_from_id(self, study_id: int) -> str:
        return str(self._study_value(study_id, "optuna_name"))

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return _directions_from_json(self._study_value(study_id, "directions"))

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return dict(json.loads(self._study_value(study_id, "user_attrs_json")))

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return dict(json.loads(self._study_value(study_id, "system_attrs_json")))

    def get_all_studies(self) -> list[FrozenStudy]:
        rows = Study.objects.order_by("id").values_list(
            "id", "optuna_name", "directions", "user_attrs_json", "system_attrs_json"
        )
        return [
            FrozenStudy(
                study_name=name,
                direction=None,
                directions=_directions_from_json(directions),
                user_attrs=json.loads(user_attrs),
                system_attrs=json.loads(system_attrs),
                study_id=study_id,
            )
            for study_id, name, directions, user_attrs, system_attrs in rows
        ]

    # --- creating trials and their params --------------------------------------------------

    @_retry_transient
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        with transaction.atomic():
            # The study row lock serializes numbering: count, then insert, then commit.
            if not Study.objects.select_for_update().filter(pk=study_id).exists():
                raise KeyError(f"No study with study_id {study_id} exists.")
            number = Trial.objects.filter(study_id=study_id).count()
            fields = self._new_trial_fields(study_id, template_trial)
            trial = Trial.objects.create(study_id=study_id, number=number, **fields)
        return trial.pk

    def _new_trial_fields(self, study_id: int, template: FrozenTrial | None) -> dict[str, Any]:
        if template is None:
            return {
                "state": OptunaTrialState.RUNNING.name,
                "datetime_start": _to_db_datetime(datetime.now()),
            }
        params: dict[str, list[Any]] = {}
        for name, external in template.params.items():
            distribution = template.distributions[name]
            self._check_distribution(study_id, name, distribution)
            params[name] = [
                distribution.to_internal_repr(external),
                optuna_distributions.distribution_to_json(distribution),
            ]
        values = template.values
        return {
            "state": template.state.name,
            "values_json": json.dumps(list(values)) if values is not None else None,
            "value": _dumps_number(values[0]) if values else None,
            "params_json": json.dumps(params),
            "intermediate_values_json": json.dumps(
                {str(step): v for step, v in template.intermediate_values.items()}
            ),
            "user_attrs_json": json.dumps(template.user_attrs),
            "system_attrs_json": json.dumps(template.system_attrs),
            "datetime_start": _to_db_datetime(template.datetime_start),
            "datetime_complete": _to_db_datetime(template.datetime_complete),
        }

    def _check_distribution(
        self, study_id: int, name: str, distribution: optuna_distributions.BaseDistribution
    ) -> None:
        """Raise ``ValueError`` if ``distribution`` conflicts with the study's earlier one.

        The first distribution a study sees for a name is registered in
        ``StudyParamDistribution`` (concurrent first registrations: one wins, the others are
        checked against it) and remembered by this process.
        """
        with self._lock:
            cache = self._studies.setdefault(study_id, _StudyCache())
            known = cache.distributions.get(name)
            loaded = cache.distributions_loaded
        if known is None and not loaded:
            # First look in this process: read every distribution the study has (one query).
            rows = StudyParamDistribution.objects.filter(study_id=study_id).values_list("name", "distribution_json")
            stored_all = {row_name: _distribution_from_json(text) for row_name, text in rows}
            with self._lock:
                cache.distributions.update(stored_all)
                cache.distributions_loaded = True
            known = stored_all.get(name)
        if known is None:
            text = optuna_distributions.distribution_to_json(distribution)
            StudyParamDistribution.objects.bulk_create(
                [StudyParamDistribution(study_id=study_id, name=name, distribution_json=text)],
                ignore_conflicts=True,
            )
            stored = (
                StudyParamDistribution.objects.filter(study_id=study_id, name=name)
                .values_list("distribution_json", flat=True)
                .get()
            )
            known = _distribution_from_json(stored)
            with self._lock:
                self._studies.setdefault(study_id, _StudyCache()).distributions[name] = known
        optuna_distributions.check_distribution_compatibility(known, distribution)

    def _locked_trial(self, trial_id: int, *columns: str) -> tuple[Any, ...]:
        """Lock the trial row and return (study_id, state, *columns); refuse finished trials."""
        row = (
            Trial.objects.select_for_update()
            .filter(pk=trial_id)
            .values_list("study_id", "state", "number", *columns)
            .first()
        )
        if row is None:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        if OptunaTrialState[row[1]].is_finished():
            raise UpdateFinishedTrialError(
                f"Trial#{row[2]} has already finished and can not be updated."
            )
        return row[0], row[1], *row[3:]

    @_retry_transient
    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: optuna_distributions.BaseDistribution,
    ) -> None:
        batch = self._param_batches().get(trial_id)
        if batch is not None:
            study_id, pending = batch
            self._check_distribution(study_id, param_name, distribution)
            pending[param_name] = (param_value_internal, distribution)
            return
        self._write_params(trial_id, {param_name: (param_value_internal, distribution)})

    def _param_batches(self) -> dict[int, tuple[int, dict[str, tuple[float, Any]]]]:
        batches = getattr(self._local, "param_batches", None)
        if batches is None:
            batches = self._local.param_batches = {}
        return batches

    @contextlib.contextmanager
    def param_batch(self, trial_id: int) -> Iterator[None]:
        """Write the params this thread sets on ``trial_id`` inside the block in one
        transaction when it ends, instead of one transaction each.

        Each ``set_trial_param`` is still checked at once (finished trial, distribution
        compatible with the study's), so ``trial.suggest_*`` raises where it would without
        the batch; only the write waits. Optuna's ``Trial`` keeps the params it suggested in
        its own cache, so nothing in the block needs to read them back from storage. If the
        block raises, the params set so far are still written (best effort) and the error
        goes up. This is how a worker writes a trial's dozen params: one round trip, not
        twelve (``bench/scaling.py``).
        """
        batches = self._param_batches()
        if trial_id in batches:  # nested: the outer block writes
            yield
            return
        row = Trial.objects.filter(pk=trial_id).values_list("study_id", "state", "number").first()
        if row is None:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        if OptunaTrialState[row[1]].is_finished():
            raise UpdateFinishedTrialError(f"Trial#{row[2]} has already finished and can not be updated.")
        batches[trial_id] = (row[0], {})
        failed = True
        try:
            yield
            failed = False
        finally:
            _study_id, pending = batches.pop(trial_id)
            if pending:
                if failed:
                    with contextlib.suppress(Exception):
                        self._write_params(trial_id, pending)
                else:
                    self._write_params(trial_id, pending)

    @_retry_transient
    def _write_params(self, trial_id: int, pending: dict[str, tuple[float, Any]]) -> None:
        with transaction.atomic():
            study_id, _state, params_text = self._locked_trial(trial_id, "params_json")
            params = json.loads(params_text)
            for name, (value, distribution) in pending.items():
                self._check_distribution(study_id, name, distribution)
                params[name] = [value, optuna_distributions.distribution_to_json(distribution)]
            Trial.objects.filter(pk=trial_id).update(params_json=json.dumps(params))

    # --- trial state, values, attributes ---------------------------------------------------

    @_retry_transient
    def set_trial_state_values(
        self, trial_id: int, state: OptunaTrialState, values: Sequence[float] | None = None
    ) -> bool:
        with transaction.atomic():
            _study_id, current = self._locked_trial(trial_id)
            if state == OptunaTrialState.RUNNING and current != OptunaTrialState.WAITING.name:
                return False  # another worker claimed it first
            updates: dict[str, Any] = {"state": state.name}
            if values is not None:
                updates["values_json"] = json.dumps(list(values))
                updates["value"] = _dumps_number(values[0]) if len(values) else None
            if state == OptunaTrialState.RUNNING:
                updates["datetime_start"] = _to_db_datetime(datetime.now())
            if state.is_finished():
                updates["datetime_complete"] = _to_db_datetime(datetime.now())
            Trial.objects.filter(pk=trial_id).update(**updates)
        return True

    def _update_trial_json(self, trial_id: int, column: str, key: str, value: Any) -> None:
        with transaction.atomic():
            _study_id, _state, text = self._locked_trial(trial_id, column)
            mapping = json.loads(text)
            mapping[key] = value
            Trial.objects.filter(pk=trial_id).update(**{column: json.dumps(mapping)})

    @_retry_transient
    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._update_trial_json(trial_id, "intermediate_values_json", str(step), intermediate_value)

    @_retry_transient
    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._update_trial_json(trial_id, "user_attrs_json", key, value)

    @_retry_transient
    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._update_trial_json(trial_id, "system_attrs_json", key, value)

    # --- reading trials ----------------------------------------------------------------------

    @staticmethod
    def _frozen_trial(row: Sequence[Any]) -> FrozenTrial:
        (
            trial_id,
            number,
            state,
            values_text,
            params_text,
            intermediate_text,
            user_attrs_text,
            system_attrs_text,
            datetime_start,
            datetime_complete,
        ) = row
        params: dict[str, Any] = {}
        distributions: dict[str, optuna_distributions.BaseDistribution] = {}
        for name, (internal, distribution_text) in json.loads(params_text).items():
            distribution = _distribution_from_json(distribution_text)
            distributions[name] = distribution
            params[name] = distribution.to_external_repr(internal)
        return FrozenTrial(
            number=number,
            state=OptunaTrialState[state],
            value=None,
            values=json.loads(values_text) if values_text is not None else None,
            datetime_start=_from_db_datetime(datetime_start),
            datetime_complete=_from_db_datetime(datetime_complete),
            params=params,
            distributions=distributions,
            user_attrs=json.loads(user_attrs_text),
            system_attrs=json.loads(system_attrs_text),
            intermediate_values={int(k): v for k, v in json.loads(intermediate_text).items()},
            trial_id=trial_id,
        )

    def get_trial(self, trial_id: int) -> FrozenTrial:
        row = Trial.objects.filter(pk=trial_id).values_list(*_TRIAL_COLUMNS).first()
        if row is None:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        return self._frozen_trial(row)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        trial_id = (
            Trial.objects.filter(study_id=study_id, number=trial_number)
            .values_list("id", flat=True)
            .first()
        )
        if trial_id is None:
            raise KeyError(
                f"No trial with trial number {trial_number} exists in study with study_id "
                f"{study_id}."
            )
        return trial_id

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[OptunaTrialState] | None = None,
    ) -> list[FrozenTrial]:
        if not Study.objects.filter(pk=study_id).exists():
            raise KeyError(f"No study with study_id {study_id} exists.")
        with self._lock:
            cache = self._studies.setdefault(study_id, _StudyCache())
            self._refresh(study_id, cache)
            trials = sorted(cache.trials.values(), key=lambda trial: trial.number)
        if states is not None:
            trials = [trial for trial in trials if trial.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def _refresh(self, study_id: int, cache: _StudyCache) -> None:
        """Read the trials this process may not know as they are now (call under the lock)."""
        rows = (
            Trial.objects.filter(study_id=study_id)
            .filter(Q(id__in=cache.unfinished_trial_ids) | Q(id__gt=cache.last_finished_trial_id))
            .values_list(*_TRIAL_COLUMNS)
        )
        for row in rows:
            trial = self._frozen_trial(row)
            cache.trials[trial.number] = trial
            if trial.state.is_finished():
                cache.unfinished_trial_ids.discard(trial._trial_id)
                # Ids grow with creation under the study lock, so a later read need only
                # ask for ids above this one besides the unfinished ones.
                cache.last_finished_trial_id = max(cache.last_finished_trial_id, trial._trial_id)
            else:
                cache.unfinished_trial_ids.add(trial._trial_id)

    # --- heartbeats ---------------------------------------------------------------------------

    def record_heartbeat(self, trial_id: int) -> None:
        Trial.objects.filter(pk=trial_id).update(heartbeat=Now())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        assert self.heartbeat_interval is not None
        grace = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        return list(
            Trial.objects.filter(
                study_id=study_id,
                state=OptunaTrialState.RUNNING.name,
                heartbeat__lt=Now() - timedelta(seconds=grace),
            ).values_list("id", flat=True)
        )

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[["optuna.Study", FrozenTrial], None] | None:
        return self.failed_trial_callback


def storage_for_study(study: Study) -> DjangoStorage:
    """The storage a worker runs ``study`` with: heartbeats from the settings, and a trial
    whose worker died retried (as WAITING) up to the study's retry limit."""
    return DjangoStorage(
        heartbeat_interval=settings.HPO_HEARTBEAT_INTERVAL,
        grace_period=settings.HPO_HEARTBEAT_GRACE,
        failed_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=study.retry_limit
        ),
        workspace_id=study.workspace_id,
    )
