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
