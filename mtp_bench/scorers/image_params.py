"""Settings of the ``image`` scorer (class-conditional image generation); imports no torch, so that a suite validates
without importing the scorer (the ``mtp_bench.scorer_params`` entry point names it)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from mtp_bench.api.settings import Settings

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ImageScorerParams(Settings):
    samples_per_class: int = Field(default=10, ge=1)
    """Images sampled per class at each evaluation (LlamaGen's ImageNet FID: 50 per class, 50,000 in all)."""

    classes: int | list[int] | None = None
    """Which classes to sample: None (all of the task's), the first N, or a list of labels."""

    cfg_scale: float = Field(default=2.0, ge=1.0)
    """Classifier-free guidance: ``logits = uncond + cfg_scale * (cond - uncond)``, the unconditional row prompted
    with the null class (the MuToR paper and LlamaGen-B: 2.0). 1 samples without guidance (one row per image)."""

    temperature: float = Field(default=1.0, ge=0.0)
    """Sampling temperature (LlamaGen: 1.0); 0 is greedy."""

    top_k: int = Field(default=0, ge=0)
    """Keep the k most likely codes (LlamaGen's c2i sampling: 0, off); 0 keeps all."""

    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling (LlamaGen: 1.0, off)."""

    seed: int = 0
    """Seed of the sampler, combined with the split scored: a split gets the same random numbers at every evaluation
    and for every method and trial seed (paired draws); validation and test draw independently (a checkpoint chosen
    on validation samples is reported on fresh ones)."""

    batch_size: int | None = Field(default=None, ge=1)
    """Images per forward; default: ``evaluation.batch_size`` (a guided image takes two rows)."""

    reference: str = Field(default="train", pattern="^(train|split)$")
    """Real images the Fréchet distance compares against: ``train`` (the task's training images, the same yardstick
    at every evaluation) or ``split`` (the real images of the split being scored)."""

    grids_per_class: int = Field(default=8, ge=0)
    """Samples per class drawn in the PNG grid artifact (rows: classes; at most 32 classes are drawn); 0: none."""

    save_codes: bool = False
    """Also save the generated code grids (``codes.npy``, shape (N, H*W), int64, the layout a LlamaGen VQ decoder
    reads with ``decode_code``) and their labels (``labels.npy``) as artifacts. Always on for tasks whose codes need
    a VQ decoder (``image_codes``)."""

    decoder: str | None = None
    """VQ-code tasks: ``module:function`` turning codes ``(N, H, W)`` int64 into images ``(N, H', W', 3)`` uint8 (or
    floats in [0, 1]); with it the scorer reports FID and IS through torch-fidelity (``pip install
    'mtp-bench[fidelity]'``). Without it the codes are saved for decoding elsewhere."""

    fid_reference: str | None = None
    """With ``decoder``: torch-fidelity's second input: a folder of reference images (e.g. the ImageNet validation
    images at the sample resolution), or a registered input name. Needed for FID; IS needs none."""

    @field_validator("decoder", "fid_reference", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value  # "${VAR:-}" in a suite: an unset variable means "not configured"

    @field_validator("decoder")
    @classmethod
    def _callable(cls, value: str | None) -> str | None:
        if value is not None and not _CALLABLE.match(value):
            raise ValueError(f"decoder must be 'module:function' (e.g. my_vq.decode:decode_codes), not {value!r}")
        return value

    @model_validator(mode="after")
    def _reference_needs_decoder(self) -> ImageScorerParams:
        if self.fid_reference is not None and self.decoder is None:
            raise ValueError("fid_reference needs decoder (codes become images only through the VQ decoder)")
        if isinstance(self.classes, list) and (not self.classes or min(self.classes) < 0):
            raise ValueError("classes: a non-empty list of labels >= 0")
        if isinstance(self.classes, int) and self.classes < 1:
            raise ValueError("classes: at least 1")
        return self
