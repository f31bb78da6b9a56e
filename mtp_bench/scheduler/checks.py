"""Before a grid starts: can it ever run where it was sent? Resources no node has, a tracking store other machines
cannot reach: a :class:`SchedulingError`; a Ray that would not start: a :class:`RayStartError`. Both are raised
before any trial (or any parent run) exists, with a message meant for the user as it is.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from mtp_bench.errors import SchedulingError
from mtp_bench.suite.config import TrialConfig

_LOCAL_STORES = {"", "file", "sqlite"}  # tracking URI schemes only processes on this machine can write to
_HINT = "; lower the request, or join a cluster that has it (--address / RAY_ADDRESS)"


# ------------------------------------------------------------------- before a grid starts: can it ever run? ----
# Pure functions of the trials and the cluster's live nodes (``{"id", "host", "resources"}``), so that they are
# tested without a cluster.
def check_tracking(trials: list[TrialConfig], nodes: list[dict[str, Any]]) -> None:
    """A SQLite or file store lives on one machine's disk: on a cluster of several machines, trials elsewhere
    could not record anything. Require a tracking server (or a database server) there."""
    hosts = sorted({n["host"] for n in nodes})
    if len(hosts) < 2:
        return
    for uri in sorted({t.tracking.uri for t in trials}):
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme in _LOCAL_STORES:
            raise SchedulingError(
                f"tracking.uri is {uri!r}, a store on this machine's disk, but the Ray cluster spans {len(hosts)} "
                f"machines ({', '.join(hosts[:4])}{', ...' if len(hosts) > 4 else ''}): trials on the others could "
                "not record their runs. Start a tracking server that every node reaches, e.g. `mlflow server "
                "--backend-store-uri sqlite:///PATH/mlflow.db --host 0.0.0.0 --port 5000`, and set "
                "tracking.uri=http://HOST:5000 (or MLFLOW_TRACKING_URI); a database URI (postgresql://...) works too")


def resource_demand(trial: TrialConfig) -> dict[str, float]:
    res = trial.resources
    return {k: v for k, v in {"CPU": res.cpus_per_trial, "GPU": res.gpus_per_trial}.items() if v > 0}


def _fits(capacity: dict[str, float], demand: dict[str, float]) -> int:
    """How many bundles of ``demand`` one node holds."""
    return min(int(math.floor(capacity.get(k, 0.0) / v + 1e-9)) for k, v in demand.items())


def check_resources(trials: list[TrialConfig], nodes: list[dict[str, Any]]) -> None:
    """Fail now, naming the trial and the resource, when no node (or, for several workers, the whole cluster) could
    ever hold what a trial asks for: its pool worker would otherwise wait for it forever."""
    problems: dict[str, list[str]] = {}
    for trial in trials:
        res, demand = trial.resources, resource_demand(trial)
        device = trial.train.device
        if res.num_workers > 1 and res.strategy == "fsdp" and trial.train.precision == "fp16":
            # each rank would see inf/NaN only in its own gradient shard, and skip steps the others take
            problem = ("asks for resources.strategy=fsdp with train.precision=fp16, whose loss scaler does not work "
                       "on sharded gradients; use bf16 (or fp32)")
        elif device.startswith("cuda") and res.gpus_per_trial == 0:
            problem = (f"train.device is {device!r} but resources.gpus_per_trial is 0: Ray shows a trial only the "
                       "GPUs it reserves; set resources.gpus_per_trial (fractions allowed)")
        elif res.num_workers == 1 and not any(_fits(n["resources"], demand) for n in nodes):
            problem = (f"asks for {_describe(demand)} (resources.cpus_per_trial / gpus_per_trial) but no node of the "
                       f"Ray cluster has that: {_inventory(nodes)}{_HINT}")
        elif res.num_workers > 1 and sum(_fits(n["resources"], demand) for n in nodes) < res.num_workers:
            placeable = sum(_fits(n["resources"], demand) for n in nodes)
            problem = (f"asks for {res.num_workers} workers with {_describe(demand)} each (resources.num_workers, "
                       f"cpus_per_trial, gpus_per_trial) but the Ray cluster can hold {placeable}: "
                       f"{_inventory(nodes)}{_HINT}")
        else:
            continue
        problems.setdefault(problem, []).append(trial.label)
    if problems:
        lines = []
        for problem, labels in problems.items():
            more = f" (and {len(labels) - 1} more trials)" if len(labels) > 1 else ""
            lines.append(f"trial {labels[0]!r}{more} {problem}")
        raise SchedulingError("; ".join(lines))


def concurrency_cap(trials: list[TrialConfig], nodes: list[dict[str, Any]]) -> int | None:
    """``resources.max_concurrent_trials``, and for multi-worker trials the number whose workers fit at once: their
    pool worker is only a driver that reserves nothing (its Ray Train workers hold the resources), so without a cap
    the pool would start them all and leave most waiting."""
    caps = [t.resources.max_concurrent_trials for t in trials if t.resources.max_concurrent_trials]
    for trial in trials:
        if trial.resources.num_workers > 1:
            placeable = sum(_fits(n["resources"], resource_demand(trial)) for n in nodes)
            caps.append(max(1, placeable // trial.resources.num_workers))
    return min(caps) if caps else None


def _describe(demand: dict[str, float]) -> str:
    return " + ".join(f"{v:g} {k}" for k, v in demand.items())


def _inventory(nodes: list[dict[str, Any]]) -> str:
    counts = Counter(f"{n['resources'].get('CPU', 0):g} CPU, {n['resources'].get('GPU', 0):g} GPU" for n in nodes)
    return "; ".join(f"{count} node(s) with {what}" for what, count in counts.items())
