"""Torch-free core: ArchSpec, exact cost model, budget fit, NetScore, Pareto front, search config, errors."""
