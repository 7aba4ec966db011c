"""defect-nas: design compact defect classifiers under a compute budget.

Layers, bottom up; each imports only the layers below it (the import-linter contracts in ``pyproject.toml`` enforce it):

- ``core``: the architecture spec, exact cost model, budget fit, NetScore, Pareto front, config, errors.
  Pure Python: no torch, no training, no CLI.
- ``search_spaces``: the blocks, the one builder (spec -> torch module) and the spaces that propose specs.
- ``evaluators``: data, augmentation, training, teachers, distillation, metrics, latency.
- ``nas``: the search itself: run, trial, workers (optuna), plan and phases, storage, report, winner.
- ``cli``: the ``defect-nas`` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("defect-nas")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
