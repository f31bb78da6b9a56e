"""Settings of ``ntp`` (next-token prediction), which has none; imports no torch, so that a suite validates without
importing the method (the ``mtp_bench.method_params`` entry point names it)."""

from __future__ import annotations

from mtp_bench.api.settings import Settings


class NTPParams(Settings):
    """Next-token prediction has no settings of its own."""
