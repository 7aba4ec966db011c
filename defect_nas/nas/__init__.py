"""The search: a run (run.py), its trials (trial.py) and workers (workers.py) on an optuna study, the
time plan and the phases after exploration (plan.py, phases.py), storage, report, the winner's export."""
