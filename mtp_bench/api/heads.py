"""What the methods that add predictor heads (extra layers, MTP modules, Medusa heads) do alike: targets for every
horizon, saving their extra modules beside the export with the settings that rebuild them, reloading them, and
building their drafter. Plain functions the methods call (composition, no base class): each method keeps only the
one-line ``export``, ``save_extra`` and ``make_drafter`` its class must declare to satisfy the Protocols."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from torch import Tensor, nn

from mtp_bench.api.batches import ModelBatch, TokenBatch
from mtp_bench.api.targets import count_targets, future_targets

HEADS_WEIGHTS = "heads.safetensors"
HEADS_CONFIG = "heads.json"

Extra = TypeVar("Extra", bound=nn.Module)
Settings = TypeVar("Settings", bound=BaseModel)


def horizon_batch(batch: TokenBatch, horizons: int) -> ModelBatch:
    """The model batch of a heads method: the plain inputs and, for h = 1..``horizons``, the targets h steps ahead
    (``targets_ntp``, ``targets_h2``, ...) with their counts (``loss/ntp`` and ``acc/ntp``, ``loss/h{h}`` ...)."""
    tensors = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    counts: dict[str, Tensor | int] = {}
    for horizon in range(1, horizons + 1):
        targets = future_targets(batch.labels, horizon)
        name = "ntp" if horizon == 1 else f"h{horizon}"
        tensors[f"targets_{name}"] = targets
        counts[f"loss/{name}"] = counts[f"acc/{name}"] = count_targets(targets)
    if batch.bidirectional_prompt:
        tensors["prompt_lengths"] = batch.prompt_lengths
    return ModelBatch(tensors=tensors, counts=counts, n_tokens=batch.n_real_tokens)


def save_heads(extra: nn.Module, directory: Path, method: str, params: BaseModel | dict[str, Any]) -> None:
    """Write a method's extra modules and the settings that rebuild them (read back by :func:`heads_config`)."""
    from safetensors.torch import save_file

    if isinstance(params, BaseModel):
        params = params.model_dump(mode="json")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: value.detach().cpu().contiguous() for name, value in extra.state_dict().items()}
    save_file(state, str(directory / HEADS_WEIGHTS))
    (directory / HEADS_CONFIG).write_text(json.dumps({"method": method, "params": params}, indent=2))


def heads_config(directory: Path, method: str) -> tuple[Path, dict[str, Any]]:
    """(folder holding the heads, the method's saved params) for an export folder or its ``extra`` subfolder."""
    directory = Path(directory)
    if not (directory / HEADS_CONFIG).is_file() and (directory / "extra" / HEADS_CONFIG).is_file():
        directory = directory / "extra"
    path = directory / HEADS_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"no saved heads in {directory} (expected {HEADS_CONFIG} beside {HEADS_WEIGHTS})")
    saved = json.loads(path.read_text())
    if saved.get("method") != method:
        raise ValueError(f"{path} holds heads of method {saved.get('method')!r}, not {method!r}")
    return directory, saved["params"]


def load_heads_state(extra: Extra, directory: Path) -> Extra:
    from safetensors.torch import load_file

    extra.load_state_dict(load_file(str(Path(directory) / HEADS_WEIGHTS)), strict=True)
    return extra


def load_saved_heads(model: nn.Module, directory: Path, method: str, params_type: type[Settings],
                     build: Callable[[nn.Module, Settings], Extra], **overrides: Any) -> Extra:
    """The extra modules saved beside an export (its folder or its ``extra`` subfolder), rebuilt for ``model`` by
    ``build`` from the saved settings (with ``overrides``) and loaded."""
    folder, params = heads_config(directory, method)
    return load_heads_state(build(model, params_type.model_validate({**params, **overrides})), folder)


Drafter = TypeVar("Drafter")


def heads_drafter(drafter: Callable[[nn.Module, list], Drafter], model: nn.Module, heads: Sequence[nn.Module] | None,
                  k: int) -> Drafter | None:
    """A drafter built on the first ``k`` heads, or None when there are no heads or no drafts are asked for."""
    if heads is None or k < 1:
        return None
    return drafter(model, list(heads)[:k])
