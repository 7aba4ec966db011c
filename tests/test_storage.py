"""Opening a study's storage: a race with another process creating the same fresh schema is
waited out, not reported as a broken storage."""

import sqlite3

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

import defect_nas.nas.storage as storage
from defect_nas.core.errors import DefectNasError

DUPLICATE_ROW = IntegrityError("INSERT INTO alembic_version", (), sqlite3.IntegrityError("UNIQUE constraint failed"))
# what CI saw once under load (tests/test_faults.py, two workers starting together)
DUPLICATE_TABLE = OperationalError("CREATE TABLE studies", (), sqlite3.OperationalError("table studies already exists"))


def _race(times: int, error: Exception = DUPLICATE_ROW):
    calls = {"n": 0}
    real = storage.RDBStorage

    def fake(url, **kw):
        calls["n"] += 1
        if calls["n"] <= times:  # what optuna raises when another process wrote the schema first
            raise error
        return real(url, **kw)

    return fake, calls


@pytest.mark.parametrize("error", [DUPLICATE_ROW, DUPLICATE_TABLE], ids=["duplicate row", "duplicate table"])
def test_open_storage_waits_out_a_schema_creation_race(tmp_path, monkeypatch, error):
    fake, calls = _race(times=1, error=error)
    monkeypatch.setattr(storage, "RDBStorage", fake)
    s = storage.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert calls["n"] == 2 and s.get_all_studies() == []


def test_open_storage_gives_up_with_one_clear_error(tmp_path, monkeypatch):
    fake, _ = _race(times=3)
    monkeypatch.setattr(storage, "RDBStorage", fake)
    with pytest.raises(DefectNasError, match="is not usable: UNIQUE constraint failed; try again"):
        storage.open_storage(f"sqlite:///{tmp_path / 'study.db'}")


def test_an_operational_error_that_is_no_race_is_reported_at_once(tmp_path, monkeypatch):
    fake, calls = _race(times=3, error=OperationalError("SELECT", (), sqlite3.OperationalError("disk I/O error")))
    monkeypatch.setattr(storage, "RDBStorage", fake)
    with pytest.raises(DefectNasError, match="is not usable: .*disk I/O error.*; check the URL and the server"):
        storage.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert calls["n"] == 1  # not retried: only a schema-creation race is waited out


def test_a_trial_no_worker_named_itself_on_is_failed_and_queued_again_after_the_grace(tmp_path):
    """A worker killed between starting a trial and naming itself on it left the trial RUNNING for
    nobody (CI: "7 of 8 trials finished"); once the grace has passed it is failed and queued again,
    while a trial a worker named itself on is left to that worker."""
    import optuna

    study = optuna.create_study(storage=storage.open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    owned = study.ask()
    owned.set_user_attr("worker", "host:123")
    assert storage.fail_unowned_trials(study, after_s=3600) == 0  # too fresh: its worker may be naming itself
    assert storage.fail_unowned_trials(study, after_s=0) == 1
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    assert states[owned.number] == optuna.trial.TrialState.RUNNING
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["retry_of"] for t in waiting] == [orphan.number]
    assert waiting[0].system_attrs["fixed_params"] == orphan.params  # the same draw, run again
