"""defect-nas engine: architecture spec, cost model, budget, NetScore (search loop to come)."""

__version__ = "0.1.0"
