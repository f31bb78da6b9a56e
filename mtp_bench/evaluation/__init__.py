"""Evaluation machinery: the context scorers are given (:mod:`.context`), greedy generation and sampling,
self-speculative decoding, held-out loss and scoring a split (:mod:`.scoring`), and the lm-eval bridge. The scorers
themselves are in :mod:`mtp_bench.scorers`."""
