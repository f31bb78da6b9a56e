"""The trial's last step: the trained model saved as a plain causal LM (``from_pretrained`` and lm-eval read it), its
tokenizer beside it, and the method's extra modules (heads, register embeddings) in ``extra`` or
``extra.safetensors``. Last, because merging LoRA adapters into the weights changes the model in place."""

from __future__ import annotations

from pathlib import Path

from mtp_bench.api.method import SavesExtra
from mtp_bench.models.build import merged
from mtp_bench.trial.build import Prepared


def export(prepared: Prepared, directory: Path) -> Path:
    model = prepared.method.export(merged(prepared.module.model), prepared.module.extra)
    model.save_pretrained(directory)
    prepared.tokenizer.save_pretrained(directory)
    extra = prepared.module.extra
    if extra is not None:
        if isinstance(prepared.method, SavesExtra):
            prepared.method.save_extra(extra, directory / "extra")
        else:
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in extra.state_dict().items()}
            save_file(state, str(directory / "extra.safetensors"))
    return directory
