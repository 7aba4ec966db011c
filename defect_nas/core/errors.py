"""Errors a user can fix: the CLI prints them as one line and exits non-zero."""


class DefectNasError(Exception):
    """Base of every error caused by input the user can correct (file, flag, budget, data)."""


class SpecError(DefectNasError, ValueError):
    """An ArchSpec (or its JSON) is invalid; the message names the offending field."""


class Infeasible(DefectNasError):
    """No spec derived from the proposal meets the budget; the message says why."""


class DataError(DefectNasError):
    """A dataset is missing, unreadable or malformed; the message names the file or folder."""
