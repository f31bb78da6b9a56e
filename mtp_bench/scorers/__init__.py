"""Scorers: what measures a trained model. One module per scorer (named as its ``mtp_bench.scorers`` entry point)
with its settings model in ``<name>_params.py`` beside it (pydantic only, no torch, so a suite validates without
importing the scorer); the image scorer's helpers are the ``image_*`` modules. The contract is
:class:`mtp_bench.api.Scorer`; the guide is docs/scorers.md.
"""
