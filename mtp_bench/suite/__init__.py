"""Suites: configuration models, loading with overrides, and grid expansion (no torch, ray or mlflow here)."""

from mtp_bench.errors import SuiteError
from mtp_bench.suite.config import MethodEntry, SuiteConfig, TrialConfig
from mtp_bench.suite.load import expand_grid, load_suite, validate_suite

__all__ = ["MethodEntry", "SuiteConfig", "SuiteError", "TrialConfig", "expand_grid", "load_suite", "validate_suite"]
