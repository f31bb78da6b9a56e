"""The names benchmark parts import, gathered from the modules that define them: sizes (:mod:`.sizes`), where and
how a part was measured (:mod:`.context`), interleaved timing (:mod:`.timing`) and GSM8K-shaped inputs
(:mod:`.batches`). New code may import those modules directly."""

from __future__ import annotations

from mtp_bench.bench.batches import batch_indices, gsm8k_dir, gsm8k_suite, make_batches, trainer_for, trials
from mtp_bench.bench.context import REPO, RunContext, Settings, load_average, machine, versions
from mtp_bench.bench.sizes import FULL, QUICK, Sizes, sizes_for
from mtp_bench.bench.timing import Interleaved, Spread, interleave, number, spread, synchronize

__all__ = ["FULL", "QUICK", "REPO", "Interleaved", "RunContext", "Settings", "Sizes", "Spread", "batch_indices",
           "gsm8k_dir", "gsm8k_suite", "interleave", "load_average", "machine", "make_batches", "number", "sizes_for",
           "spread", "synchronize", "trainer_for", "trials", "versions"]
