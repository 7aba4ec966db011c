"""Where a study lives: SQLite in the run folder by default, PostgreSQL to share it across machines.

Both go through optuna's RDBStorage with a heartbeat, so a trial whose worker died (crash,
SIGKILL, lost machine) is failed after the grace period and retried once, never left RUNNING.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryFailedTrialCallback
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from defect_nas.core.errors import DefectNasError
from defect_nas.core.runfolder import RunFolder

HEARTBEAT_S = 10
GRACE_S = 40


def sqlite_url(run_dir: Path) -> str:
    return f"sqlite:///{RunFolder(run_dir).study_db.resolve()}"


def open_storage(url: str) -> RDBStorage:
    """An RDBStorage with heartbeat and one retry of failed trials; a clear error if unreachable."""
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(3):
        try:
            with warnings.catch_warnings():  # heartbeat and retry are marked experimental by optuna
                warnings.simplefilter("ignore")
                storage = RDBStorage(
                    url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                    failed_trial_callback=RetryFailedTrialCallback(max_retry=1),
                )
            if url.startswith("sqlite"):
                _serialise_sqlite_writes(storage.engine)
            return storage
        except (IntegrityError, OperationalError, ProgrammingError) as e:
            # Another process is creating the same fresh schema at this moment (two workers, or a
            # report, starting together): optuna then meets a duplicate version row (IntegrityError)
            # or a table the other made first ("table studies already exists": an OperationalError
            # on SQLite, seen once in CI under load; PostgreSQL's DuplicateTable is a
            # ProgrammingError). Its tables exist a moment later, so opening again works.
            if not isinstance(e, IntegrityError) and "already exists" not in str(e.orig):
                raise DefectNasError(f"storage {redact(url)} is not usable: {_first_line(e)}; check the URL and the "
                                     "server") from None
            if attempt == 2:
                raise DefectNasError(f"storage {redact(url)} is not usable: {e.orig}; try again") from None
            time.sleep(0.5)
        except Exception as e:  # sqlalchemy errors: unreachable server, bad URL, missing driver
            raise DefectNasError(
                f"storage {redact(url)} is not usable: {_first_line(e)}; check the URL and the server"
            ) from None
    raise AssertionError("unreachable")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__)[:200]


def _serialise_sqlite_writes(engine: sqlalchemy.engine.Engine) -> None:
    """Begin every SQLite transaction with BEGIN IMMEDIATE, so a read-check-write (optuna's claim
    of a WAITING trial: read it, check it is still WAITING, set RUNNING) holds the write lock from
    its read on. SQLite ignores SELECT ... FOR UPDATE and pysqlite begins a transaction only at the
    first write, so two workers both read WAITING and both trained the trial: 66 claims of 40
    queued trials by 6 processes (tests/test_faults.py). PostgreSQL honours FOR UPDATE already."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # pysqlite's own BEGIN off: the "begin" hook starts them

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while the schema was made predate the hooks


def redact(url: str) -> str:
    """The URL without its password, for messages and config files (a resumed run reconnects with
    it, taking the password from the environment or ~/.pgpass as libpq does)."""
    try:
        u = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return url.split("@", 1)[-1] if "@" in url else url
    bare = sqlalchemy.engine.URL.create(u.drivername, u.username, None, u.host, u.port, u.database, u.query)
    return bare.render_as_string(hide_password=False)


class RunLock:
    """An exclusive lock on a run folder: only one ``defect-nas search`` drives it at a time.

    Holding it proves no local worker of this run is alive, so trials left RUNNING by a killed
    process can be failed (and retried) at once instead of after the heartbeat grace period.
    """

    def __init__(self, run_dir: Path):
        self.path = RunFolder(run_dir).lock
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise DefectNasError(f"{self.path.parent}: another defect-nas search is running on this folder") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


UNOWNED_S = 10.0  # a worker names itself on its trial within milliseconds of starting it


def fail_orphaned_trials(study: optuna.Study, pid: int | None = None) -> int:
    """Fail RUNNING trials whose process is gone and re-enqueue each once: all of them (we hold the
    run lock, so no local worker is alive), or those of the worker process ``pid`` (it died)."""
    return _fail_and_requeue(study, lambda t: pid is None or str(t.user_attrs.get("worker", "")).endswith(f":{pid}"))


def fail_unowned_trials(study: optuna.Study, after_s: float = UNOWNED_S) -> int:
    """Fail and re-enqueue RUNNING trials started ``after_s`` ago that no worker named itself on: a
    worker killed between starting a trial and naming itself (CI, under load, hit that window) left
    the trial RUNNING for nobody, and the search one trial short."""
    now = datetime.datetime.now()
    return _fail_and_requeue(study, lambda t: "worker" not in t.user_attrs and t.datetime_start is not None
                             and (now - t.datetime_start).total_seconds() >= after_s)


def _fail_and_requeue(study: optuna.Study, which) -> int:
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not which(t):
            continue
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        if "failed_trial" not in t.system_attrs and "retry_of" not in t.user_attrs:  # once, as the heartbeat does
            keep = {k: t.user_attrs[k] for k in ("prototype",) if k in t.user_attrs}  # a prototype stays one
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, **keep}, skip_if_exists=False)
        n += 1
    return n
