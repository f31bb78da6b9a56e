"""FSDP for trials larger than one device: shard the :class:`~mtp_bench.train.loop.TrainModule`, gather it back whole
for the work rank 0 does alone, and move checkpoint tensors between their sharded and whole forms.

FSDP2 (``fully_shard``) keeps each parameter as a ``DTensor`` holding this rank's slice and all-gathers a group of
them around each forward and backward. Each decoder layer (of the model and any copies a method keeps in its extra
modules) is one group; the rest (embeddings, LM head, final norm, method modules such as MuToR's register) is the
root's group, gathered for the whole forward, so a method may call those submodules directly. Parameters keep the
dtype the trial gave them (fp32, or bf16 under ``train.precision: bf16-pure``) and the loop's autocast does mixed
precision, exactly as on one device and under DDP: evaluation, the ``best`` checkpoint and the export of an FSDP trial
read the same weights as the other strategies would.

Rank 0 evaluates, checkpoints and exports alone; with sharded weights the others must take part in gathering them.
:func:`gathered` does that: every rank all-gathers, rank 0 keeps the whole parameters until the block ends (forwards
then gather nothing), the others free them at once. The checkpoint helpers work on plain tensors too, so the
checkpoint format is the same for every strategy: whole tensors, optimizer state by parameter index.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


def _is_dtensor(value: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor)


# ---------------------------------------------------------------------------------------------- wrapping ----
def shard(module: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """Shard ``module`` (a TrainModule) in place across the default process group: one FSDP group per decoder layer,
    found by class so that layer copies in the method's extra modules are sharded the same way, then the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from mtp_bench.api.anatomy import UnsupportedModelError, anatomy

    if device.type == "cuda":
        torch.cuda.set_device(device)
    mesh = init_device_mesh(device.type, (world_size,))
    try:
        layer_types = tuple({type(layer) for layer in anatomy(module.model).layers})
    except UnsupportedModelError as error:  # still correct, but the whole model is gathered at once
        log.warning("FSDP shards %s as one group: %s", type(module.model).__name__, error)
        layer_types = ()
    for layer in [m for m in module.modules() if layer_types and isinstance(m, layer_types)]:
        fully_shard(layer, mesh=mesh, reshard_after_forward=True)
    # The root stays gathered from its forward to its backward (FSDP's default for a root; set here so that
    # gathered() can restore it).
    return fully_shard(module, mesh=mesh, reshard_after_forward=False)


@contextlib.contextmanager
def gathered(root: nn.Module, keep: bool) -> Iterator[None]:
    """Inside, ``root``'s parameters are whole plain tensors where ``keep`` (rank 0): its forwards, generation,
    ``state_dict()`` and in-place copies behave as on one device and need no other rank. Every rank must enter
    (the all-gathers are collective); where not ``keep`` the gathered copies are freed at once.

    Writes to the whole parameters inside (e.g. scoring the ``best`` checkpoint) do not reach the shards: they are
    dropped on exit, and training continues from the weights it had."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    modules = [m for m in root.modules() if isinstance(m, FSDPModule)]
    # A trial resumed at its last step evaluates before any forward: settle which module is FSDP's root first.
    fully_shard.state(root)._lazy_init()
    lifted: list[Any] = []
    # fully_shard marks every module it manages; transformers' generate() then syncs every decoding step with the
    # other ranks (as for ZeRO-3), which are not generating. Rank 0's whole modules are plain ones meanwhile.
    marked = [m for m in root.modules() if getattr(m, "_is_fsdp_managed_module", False)] if keep else []
    try:
        for module in modules:
            module.set_reshard_after_forward(False, recurse=False)  # forwards inside must not free (and re-gather)
            module.unshard()
        if keep:
            lifted = _lift_state_dict_hooks(modules)
            for module in marked:
                module._is_fsdp_managed_module = False
        else:
            for module in modules:
                module.reshard()
        yield
    finally:
        for module in marked:
            module._is_fsdp_managed_module = True
        for group in lifted:
            group._register_state_dict_hooks()
        # Reshards every group and forgets the forwards run inside (FSDP orders its backward prefetches by the
        # recorded forwards: rank 0's evaluation forwards would make it prefetch what the other ranks do not).
        root.reset_iter_state()
        for module in modules:
            module.set_reshard_after_forward(module is not root, recurse=False)


def _lift_state_dict_hooks(modules: list[nn.Module]) -> list[Any]:
    """Remove FSDP's ``state_dict`` pre-hooks, which reshard before reading: ``save_pretrained`` and a method's
    ``save_extra`` on rank 0 would otherwise free the whole parameters and meet DTensor slices. (FSDP2 offers no
    public switch; these are torch 2.13 internals, checked by tests/e2e/test_ray_train.py.)"""
    groups = [group for module in modules for group in module._get_fsdp_state()._fsdp_param_groups]
    for group in groups:
        save, load = group._module_to_pre_save_state_dict_hook_handle, group._module_to_pre_load_state_dict_hook_handle
        for hooks in (save, load):
            for handle in hooks.values():
                handle.remove()
            hooks.clear()
    return groups


# ------------------------------------------------------------------------------------- checkpoint tensors ----
def whole(value: Tensor, keep: bool = True) -> Tensor | None:
    """A CPU copy of all of ``value`` where ``keep``, else None. A DTensor is gathered first: a collective, so every
    rank calls this for every sharded tensor, in the same order."""
    if _is_dtensor(value):
        value = value.full_tensor()
    return value.detach().cpu().clone() if keep else None


def like(value: Tensor, target: Tensor) -> Tensor:
    """The whole tensor ``value`` in ``target``'s form: this rank's slice of it where ``target`` is a DTensor (cut
    locally: every rank read the same checkpoint), else ``value`` on ``target``'s device and dtype."""
    if _is_dtensor(target):
        from torch.distributed.tensor import DTensor, distribute_tensor

        mesh, placements = target.device_mesh, target.placements
        cut = distribute_tensor(value.to(target.dtype), mesh, placements, src_data_rank=None)
        # the cut is a view of the whole tensor: copy it, so the whole one is freed
        return DTensor.from_local(cut.to_local().clone(), mesh, placements, run_check=False, shape=target.shape,
                                  stride=target.stride())
    return value.to(target.device, target.dtype)


def whole_optimizer_state(state: dict[str, Any], keep: bool) -> dict[str, Any] | None:
    """``optimizer.state_dict()`` with its sharded tensors gathered whole (collective); None where not ``keep``."""
    gathered_state = {
        index: {name: whole(value, keep) if _is_dtensor(value) else value for name, value in entries.items()}
        for index, entries in state["state"].items()
    }
    return {**state, "state": gathered_state} if keep else None


def local_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """A saved (whole) optimizer state in the form of this rank's optimizer: per-parameter tensors shaped like a
    sharded parameter (Adam's moments) become this rank's slice; every other tensor is copied, so that nothing keeps
    a memory-mapped checkpoint file open while it is rotated."""
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def local(value: Any, param: Tensor) -> Any:
        if not torch.is_tensor(value):
            return value
        if _is_dtensor(param) and value.shape == param.shape:
            return like(value, param)
        return value.clone()

    entries = {index: {name: local(value, params[int(index)]) for name, value in values.items()}
               for index, values in state["state"].items()}
    return {**state, "state": entries}


def scalar(value: Tensor) -> float:
    """A float from a possibly sharded scalar (``clip_grad_norm_`` returns a DTensor under FSDP)."""
    return float(value.full_tensor() if _is_dtensor(value) else value)
