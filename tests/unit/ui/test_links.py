"""The links ``mtp-bench ui`` prints: the side-by-side view lists a suite's runs by method, then by seed."""

from __future__ import annotations

from mtp_bench.ui.links import method_then_seed


def test_side_by_side_link_orders_runs_by_method_then_seed() -> None:
    def run(run_id: str, method: str, seed: str) -> dict:
        tags = [{"key": "mtp_bench.method", "value": method}, {"key": "mtp_bench.seed", "value": seed}]
        return {"info": {"run_id": run_id}, "data": {"tags": tags}}

    runs = [run("a", "ntp", "10"), run("b", "mutor", "1"), run("c", "ntp", "2"), run("d", "mutor", "0")]
    assert [r["info"]["run_id"] for r in sorted(runs, key=method_then_seed)] == ["d", "b", "c", "a"]  # 2 before 10
