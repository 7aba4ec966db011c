"""The search: the optuna engine (generator and inquisitor), the final phase, storage, report, export."""
