"""The links ``mtp-bench ui`` prints: the suite's trial runs, its latest invocation, and its trials side by side
ordered by method, then seed — found through the server's REST API (any backend the server runs on)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from mtp_bench.tracking import KIND_INVOCATION, KIND_TRIAL, TAG_KIND, TAG_METHOD, TAG_PARENT, TAG_SEED
from mtp_bench.ui.server import OPENER, MlflowServer

# The UI opens in its GenAI view; our runs live in the "Model training" one.
_TRAINING_VIEW = {"workflowType": "machine_learning"}


# ---------------------------------------------------------------------------------------------------- links ----
def _api(base: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call to the server's REST API (works for any backend the server runs on)."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with OPENER.open(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def find_experiment(base: str, name: str) -> str | None:
    query = urllib.parse.urlencode({"experiment_name": name})
    try:
        return str(_api(base, f"experiments/get-by-name?{query}")["experiment"]["experiment_id"])
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        return None


def search_runs(base: str, experiment_id: str, filter_string: str, max_results: int = 1000) -> list[dict[str, Any]]:
    payload = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": max_results,
               "order_by": ["attributes.start_time DESC"]}
    return list(_api(base, "runs/search", payload).get("runs", []))


def _fragment(route: str, params: dict[str, str]) -> str:
    return f"/#{route}?{urllib.parse.urlencode(params, quote_via=urllib.parse.quote)}"


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's trial runs as a flat list sorted by name (sorting by anything but date un-nests child
    runs, so every method x seed is one row, ready to select and compare)."""
    return base + _fragment(f"/experiments/{experiment_id}/runs", {
        **_TRAINING_VIEW, "searchFilter": f"tags.`{TAG_KIND}` = '{KIND_TRIAL}'",
        "orderByKey": "tags.`mlflow.runName`", "orderByAsc": "true",
    })


def run_url(base: str, experiment_id: str, run_id: str, tab: str = "artifacts") -> str:
    return base + _fragment(f"/experiments/{experiment_id}/runs/{run_id}/{tab}", _TRAINING_VIEW)


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    return base + _fragment("/compare-runs", {"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])})


def method_then_seed(run: dict[str, Any]) -> tuple[str, int, str]:
    """Sort key of a REST run: its method label, then its seed (numerically), then its id."""
    tags = {tag["key"]: tag["value"] for tag in run.get("data", {}).get("tags", [])}
    seed = tags.get(TAG_SEED, "")
    return tags.get(TAG_METHOD, ""), int(seed) if seed.lstrip("-").isdigit() else 0, run["info"]["run_id"]


def describe(server: MlflowServer, experiment: str | None) -> list[str]:
    """What to open: the suite's runs, its latest invocation and a side-by-side view, or every experiment."""
    api, base = server.local_url, server.url
    if experiment is None:
        found = _api(api, "experiments/search", {"max_results": 50}).get("experiments", [])
        lines = [f"  {e['name']}: {runs_url(base, e['experiment_id'])}" for e in found if e["name"] != "Default"]
        return ["Experiments in this store (trial runs of each):", *lines] if lines else \
            [f"This store has no experiments yet: {base}/#/experiments"]
    experiment_id = find_experiment(api, experiment)
    if experiment_id is None:
        return [f"No experiment {experiment!r} in this store yet: its runs appear once `mtp-bench run` starts. "
                f"All experiments: {base}/#/experiments"]
    lines = [f"Runs of {experiment} to compare (one row per trial): {runs_url(base, experiment_id)}"]
    latest = search_runs(api, experiment_id, f"tags.`{TAG_KIND}` = '{KIND_INVOCATION}'", max_results=1)
    if latest:
        info = latest[0]["info"]
        lines.append(f"Latest invocation, {info.get('run_name', info['run_id'])!r} (comparison plot and table "
                     f"under Artifacts): {run_url(base, experiment_id, info['run_id'])}")
        trials = search_runs(api, experiment_id, f"tags.`{TAG_PARENT}` = '{info['run_id']}'")
        if len(trials) > 1:
            ids = [run["info"]["run_id"] for run in sorted(trials, key=method_then_seed)]
            lines.append(f"Its {len(ids)} trial runs side by side: {compare_url(base, experiment_id, ids)}")
    return lines


