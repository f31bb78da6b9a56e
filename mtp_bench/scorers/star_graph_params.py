"""Settings of the ``star_graph`` (path-finding on star graphs) scorer; imports no torch, so that a suite validates
without importing the scorer (the ``mtp_bench.scorer_params`` entry point names it)."""

from __future__ import annotations

from mtp_bench.api.settings import Settings


class StarGraphParams(Settings):
    max_new_tokens: int | None = None
    """Decoding budget; default: ``evaluation.max_new_tokens`` (a path needs about twice its length in tokens)."""

    directed: bool = True
    """Edges go from ``u`` to ``v`` only (star graphs point away from the centre). False accepts either direction
    when checking ``valid_path_rate``."""
