"""Pareto fronts: exactly the non-dominated candidates."""

from defect_nas.core.pareto import pareto_front


def test_front_keeps_only_non_dominated_points():
    rows = [
        {"n": 0, "val_accuracy": 90, "macs": 100},
        {"n": 1, "val_accuracy": 95, "macs": 100},  # dominates 0
        {"n": 2, "val_accuracy": 92, "macs": 50},
        {"n": 3, "val_accuracy": 92, "macs": 60},  # dominated by 2
        {"n": 4, "val_accuracy": None, "macs": 10},  # not measured: ignored
    ]
    assert [r["n"] for r in pareto_front(rows)] == [2, 1]


def test_several_cost_axes():
    rows = [{"n": 0, "val_accuracy": 90, "macs": 100, "latency_ms": 1.0},
            {"n": 1, "val_accuracy": 90, "macs": 100, "latency_ms": 2.0},
            {"n": 2, "val_accuracy": 90, "macs": 90, "latency_ms": 3.0}]
    assert {r["n"] for r in pareto_front(rows, minimize=("macs", "latency_ms"))} == {0, 2}
