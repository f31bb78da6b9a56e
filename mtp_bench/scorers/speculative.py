"""The ``speculative`` scorer: self-speculative greedy decoding with the method's own drafter, against plain greedy
decoding of the same model on the same prompts, measured in the same call.

Metrics (the harness prefixes ``{split}/speculative/``): ``acceptance/h{k}`` and ``acceptance_given_previous/h{k}``
per draft position, ``tau`` (tokens per verifier step, the verifier's own token included), ``speedup`` (plain greedy
wall time / speculative wall time, both at batch size 1), ``mismatches`` (examples whose speculative output differs
from greedy: must be 0), timings and throughputs. A method without a drafter (NTP) gets no metrics and one sample
row saying so, never an error.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import torch

from mtp_bench.api.method import SupportsDrafting
from mtp_bench.api.scorer import EvalContext, ScoreResult
from mtp_bench.api.task import Example
from mtp_bench.data.pipeline import encode_prompt
from mtp_bench.evaluation.speculative_decoding import compare_with_greedy
from mtp_bench.scorers.speculative_params import SpeculativeParams

log = logging.getLogger(__name__)


class SpeculativeDecoding:
    name: ClassVar[str] = "speculative"
    Params: ClassVar[type] = SpeculativeParams
    main_metric: ClassVar[str] = "tau"
    # A speed figure must never choose checkpoints, and decoding every example twice is too dear for periodic
    # evaluations: read by the runner where it supports them (otherwise list this scorer after an accuracy scorer).
    selectable: ClassVar[bool] = False
    periodic: ClassVar[bool] = False

    def __init__(self, params: SpeculativeParams):
        self.params = params

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        method = context.method
        drafter = None
        if isinstance(method, SupportsDrafting):
            drafter = method.make_drafter(context.model, context.extra, self.params.k)
        if drafter is None or drafter.max_drafts < 1:
            reason = f"n/a: method {getattr(method, 'name', None)!r} has no drafter"
            log.info("speculative scorer: %s", reason)
            return ScoreResult(metrics={}, samples=[{"note": reason}])
        chosen = examples[: self.params.limit] if self.params.limit else examples
        prompts = [encode_prompt(context.tokenizer, example.prompt) for example in chosen]
        budget = self.params.max_new_tokens or context.max_new_tokens
        dtype = context.autocast_dtype
        extra_was_training = context.extra is not None and context.extra.training
        if context.extra is not None:
            context.extra.eval()  # no dropout in the drafting heads
        try:
            with torch.autocast(context.device.type, dtype=dtype, enabled=dtype is not None):
                report = compare_with_greedy(
                    context.model,
                    drafter,
                    prompts,
                    eos_id=context.tokenizer.eos_token_id,
                    pad_id=context.tokenizer.pad_token_id,
                    max_new_tokens=budget,
                    bidirectional_prompt=context.bidirectional_prompt,
                )
        finally:
            if extra_was_training:
                context.extra.train()
        if report.mismatches:
            log.warning("speculative decoding differed from greedy on %d of %d examples", report.mismatches,
                        len(prompts))
        samples = [
            {"index": index, "prompt": example.prompt, "matches_greedy": output == greedy,
             "speculative": context.tokenizer.decode(output, skip_special_tokens=True),
             "greedy": context.tokenizer.decode(greedy, skip_special_tokens=True)}
            for index, (example, output, greedy) in enumerate(zip(chosen, report.outputs, report.greedy))
        ]
        return ScoreResult(metrics=report.metrics(), samples=samples)
