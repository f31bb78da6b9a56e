"""Which MLflow tracking URIs a suite may name, checked without importing mlflow (so ``validate`` stays fast).

The schemes are those MLflow's own store registry knows (a path or ``file:`` store, which MLflow 3 opens only with
``MLFLOW_ALLOW_FILE_STORE=true``, SQLite and the other SQLAlchemy
databases, a tracking server over HTTP(S), Databricks, Unity Catalog), plus any a plugin registers through MLflow's
``mlflow.tracking_store`` entry points.
"""

from __future__ import annotations

import os
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import urlparse

DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
SERVERS = ("http", "https", "databricks", "databricks-uc", "uc")


@cache
def _plugin_schemes() -> frozenset[str]:
    return frozenset(ep.name for ep in entry_points(group="mlflow.tracking_store"))


def check_tracking_uri(uri: str) -> str | None:
    """None when MLflow can open ``uri``'s kind of store; otherwise what is wrong, in one line."""
    if not uri.strip():
        return "empty; use e.g. sqlite:///results/mlflow.db"
    scheme = urlparse(uri).scheme.lower()
    engine = scheme.split("+", 1)[0]  # postgresql+psycopg2://
    if len(scheme) <= 1 or scheme == "file":  # a path (C:\\ on Windows reads as scheme "c")
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true"):
            return None
        return (f"{uri!r} is a file store, which MLflow 3 refuses unless MLFLOW_ALLOW_FILE_STORE=true; use "
                "sqlite:///PATH.db")
    if engine == "sqlite":
        if not uri.startswith(("sqlite:///", f"{scheme}:///")):
            return f"{uri!r}: a SQLite URI is sqlite:///relative/path.db or sqlite:////absolute/path.db"
        target = Path(uri.split(":///", 1)[1])
        if target.is_dir():
            return f"{uri!r}: {target} is a directory, not a database file"
        return None
    if engine in DATABASES or scheme in SERVERS or scheme in _plugin_schemes():
        return None
    known = ", ".join(f"{name}://" for name in (*DATABASES, *SERVERS))
    return f"unsupported scheme {scheme!r} in {uri!r}; MLflow stores: a path, file://, {known}"
