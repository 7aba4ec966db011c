"""Opening a study's storage: a race with another process creating the same fresh schema is
waited out, not reported as a broken storage."""

import sqlite3

import pytest
from sqlalchemy.exc import IntegrityError

import defect_nas.nas.storage as storage
from defect_nas.core.errors import DefectNasError


def _race(times: int):
    calls = {"n": 0}
    real = storage.RDBStorage

    def fake(url, **kw):
        calls["n"] += 1
        if calls["n"] <= times:  # what optuna raises when another process wrote the schema first
            raise IntegrityError("INSERT INTO alembic_version", (), sqlite3.IntegrityError("UNIQUE constraint failed"))
        return real(url, **kw)

    return fake, calls


def test_open_storage_waits_out_a_schema_creation_race(tmp_path, monkeypatch):
    fake, calls = _race(times=1)
    monkeypatch.setattr(storage, "RDBStorage", fake)
    s = storage.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert calls["n"] == 2 and s.get_all_studies() == []


def test_open_storage_gives_up_with_one_clear_error(tmp_path, monkeypatch):
    fake, _ = _race(times=3)
    monkeypatch.setattr(storage, "RDBStorage", fake)
    with pytest.raises(DefectNasError, match="is not usable: UNIQUE constraint failed; try again"):
        storage.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
