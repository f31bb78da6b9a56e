"""Names and values as MLflow accepts them: metric names that are legal and the same for every method, and nested
configs flattened into dotted string params."""

from __future__ import annotations

import json
import re
from typing import Any

_ILLEGAL = re.compile(r"[^A-Za-z0-9_\-. /]")
_MAX_PARAM_VALUE = 6000


def metric_name(name: str) -> str:
    """An MLflow-legal metric name, stable across methods. lm-eval's ``exact_match,strict-match`` becomes
    ``exact_match/strict-match``; any other illegal character becomes ``_``."""
    return _ILLEGAL.sub("_", name.replace(",", "/")).strip("/") or "_"


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Dotted ``key -> string`` pairs of a nested config, for MLflow params."""
    out: dict[str, str] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(config, list) and config and all(isinstance(v, dict) for v in config):
        for index, value in enumerate(config):
            out.update(flatten(value, f"{prefix}.{index}"))
    else:
        text = json.dumps(config) if not isinstance(config, str) else config
        out[prefix] = text[:_MAX_PARAM_VALUE]
    return out
