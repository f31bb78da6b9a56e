"""MuToR (Gerontopoulos, Komodakis, Gidaris, "Multi-Token Prediction Needs Registers", arXiv 2505.10518).

Learned register tokens are added to the training sequence; the register placed after token x_t predicts x_{t+d},
with d drawn once per sequence from {d_min..d_max}. Real tokens never attend to registers and keep their positions,
so the real-token path is exactly the plain causal LM: at inference the registers are dropped and nothing is added.

    loss = (1 - a) * L_ntp + a * L_reg        (each a token mean over the effective batch, through the LM head)

How this file realises the paper for any Hugging Face causal LM that takes a 4D mask and ``position_ids``:

- One shared register vector (the paper's single ``<reg>`` embedding; ``registers: per_offset`` gives each offset d
  its own, the paper's ablation) lives in the method's ``extra`` module and is
  injected through ``inputs_embeds``. It is not a vocabulary row, so it never becomes an output class under tied
  embeddings, stays trainable under LoRA, and the exported model is the base model unchanged.
- Layout: each row's registers sit right after *its own* real tokens (one slot each) instead of interleaved; their
  position ids and the 4D mask say where they "are". The maths equals interleaving (a register is seen by no other
  token, so its slot order is irrelevant), real tokens keep their indices, and all indexing is a handful of
  vectorised gathers. Packing per row (not after the longest row) keeps the padding of rows with very different
  register counts small. Registers whose target runs past the sequence get no slot at all (the official code keeps
  them, ignored).
- Cost: one forward of real tokens and registers together; the LM head runs only where there is a target (answer
  tokens and valid registers), never on prompt, padding or padded register slots.
- Which registers: one after every x_t whose successor x_{t+1} is a training target (answer tokens in fine-tuning,
  so none in the prompt; every token but the first in pretraining), kept if x_{t+d} is a target too; or, with
  ``registers_per_sequence``, that many drawn at random among those (the paper's sparse registers).
- Positions (verified against the official code, ``process_input_and_labels_mutor`` in
  github.com/nasosger/MuToR, language_modeling/src/finetune.py: register before answer token j gets position
  ``question_length + j + offset - 1`` with ``offset = d - 1``): the register after x_t (0-based) gets position id
  ``t + d - 1``, the position of x_{t+d-1}, whose next-token prediction has the same target. With d = 1 it shares
  position and target with the NTP prediction at x_t. That is the paper's "t + d - 1" with 1-based token indices.
- Attention: real tokens see real tokens only (causal, or the bidirectional prompt block); a register sees exactly
  what its anchor x_t sees, plus itself, and no other register. Sliding-window layers keep their window (a custom
  4D mask would otherwise silently lift it).

**Images** (paper Sections 3.4, 4.2 and Appendices A.2, B.2; read in a stored full text of arXiv 2505.10518, the
NeurIPS 2025 version; the released code has no image part: its README says MuToR-2D code is planned). An image
sequence is a prompt ending in one class token, then the H x W image tokens in raster order, then EOS; the loss is on
the image tokens and EOS only (the class token is the prompt).

- MuToR-1D (``layout: 1d``, the default) is text MuToR unchanged: d along the raster order, one d per sequence
  (paper: "MuToR-1D with 1D offsets (as in language modeling)", d_max = 4 in Table 7).
- MuToR-2D (``layout: 2d``, ``grid: [H, W]``), paper Section 3.4: per sequence, a 2D offset (d_h, d_w) with both
  uniform in 1..d_max_2D, (1, 1) excluded, and "the rasterized offset" d = (d_h - 1) * w + d_w - 1; "each register
  token r_d predicts the token d steps ahead in the sequence, with all other components (attention masking,
  positional embeddings, and loss) implemented identically". Here (dy, dx) = (d_h - 1, d_w - 1): a register after
  the token at cell (r, c) predicts the token at (r + dy, c + dx), which is D = dy * W + dx steps ahead, so it *is* a
  1D register with d = D: same anchor rule, attention and position rule. The 2D part is only the choice of anchors and
  targets (``mutor_grid.grid_registers``); layout, mask and forward are shared with text.
- Offsets: by default the paper's best neighbourhood, d_max_2D = 4 (Table 7; Table 9 tries 3, 4, 5 = 8, 15, 24
  targets): dy, dx in 0..3 without (0, 0), 15 offsets. ``offsets_2d`` lists others (left offsets allowed; ours).
- Sampling: one offset per sequence (``offset_sampling: sequence``, the paper's). ``register`` (ours) draws one per
  register among the offsets whose target fits the grid at that anchor.
- Grid edges (our choice; not stated in the paper): a register whose target cell (r + dy, c + dx) is outside the grid
  gets no slot, as text MuToR drops one past the end. Read literally, "the token d steps ahead in the sequence" would
  instead wrap past the right edge to the start of a lower row; that token is not in the 2D neighbourhood the paper
  draws (its Figure 3), so we drop it.
- The class token's register (our choice; not stated): the class token counts as the cell (0, -1) just left of the
  first image token, so its register targets (dy, dx - 1) when that is in the grid; with (0, 1) it predicts image
  token 0 like NTP at the class token. This matches the paper's count of 256 registers for a 256-token image in the
  dense setting (after the class token and image tokens 0..254, as in text: after every token whose successor is a
  target).
- Positions: the paper's model is LlamaGen-B, whose RoPE is "extended to two dimensions" (A.2): LlamaGen looks up
  sequence index k's rotation in a table of the grid cells (``precompute_freqs_cis_2d`` in
  github.com/FoundationVision/LlamaGen, autoregressive/models/gpt.py; class tokens get none), so the paper's register
  position t + D - 1 there means the 2D cell of the raster token before the target. The harness's models are Hugging
  Face causal LMs with 1D RoPE: a 2D register gets position id anchor + D - 1, the position of the real token whose
  next-token prediction has the same target, exactly the paper's index; only its rotation is 1D (the model tells a
  (1, 0) register from a (0, 1) one by the distance W vs 1, as a raster-order model sees the grid anyway).
- Sparse registers (``registers_per_sequence``): the paper inserts 80 "randomly placed" registers per 256-token image
  (about +30% sequence length; Tables 8, 9, 15), "random positions for each training sample" (A.2); here that many
  per image, uniformly among the anchors that hold one (all of them if fewer).
- Paper's image recipe, for suites (A.2): a = 0.5; class embedding dropped with probability 0.1; sampling with
  temperature 1.0 and guidance scale 2.0 (l_u + 2 (l_c - l_u)), no top-k or top-p stated; 360K steps, AdamW
  (0.9, 0.95), weight decay 0.05, constant learning rate 4e-4, batch 1024.
- Metrics: ``loss/h{dy}_{dx}`` and ``acc/h{dy}_{dx}`` per 2D offset (e.g. ``h1_3``: one row down, three columns
  right) besides ``loss/reg``/``acc/reg``; ``registers: per_offset`` gives each 2D offset its own embedding. No
  drafter: a 2D register predicts off the raster path, which a speculative decoder verifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtp_bench.api.anatomy import anatomy, as_input_embedding
from mtp_bench.api.batches import LossOutput, ModelBatch, TokenBatch
from mtp_bench.api.decoding import cache_keyword, custom_attention
from mtp_bench.api.method import MethodContext, required_extra
from mtp_bench.api.targets import count_targets, shifted_targets, target_loss
from mtp_bench.methods.mutor_grid import grid_registers
from mtp_bench.methods.mutor_layout import RegisterLayout, place_registers, register_forward_inputs, select_registers
from mtp_bench.methods.mutor_params import MuToRParams

MASK_IMPLEMENTATIONS = ("eager", "sdpa")  # attention kernels that read an arbitrary 4D mask


class RegisterEmbedding(nn.Module):
    """The learned register input: one vector shared by every register (the paper's ``<reg>`` token embedding,
    ``register`` [d]), or one per offset (the paper's ablation, ``register`` [offsets, d], row i for offset
    ``first + i``)."""

    def __init__(self, vector: Tensor, offsets: range | None = None):
        super().__init__()
        if offsets is None:
            self.register = nn.Parameter(vector.detach().clone())
        else:
            self.register = nn.Parameter(vector.detach().expand(len(offsets), -1).clone())
        self.first = offsets.start if offsets is not None else 0

    def vectors(self, offsets: Tensor) -> Tensor:
        """The input vector of a register drafting each of ``offsets`` (any shape): [*offsets.shape, d]."""
        if self.register.dim() == 1:
            return self.register.expand(*offsets.shape, -1)
        return self.register[(offsets - self.first).clamp(0, self.register.size(0) - 1)]

    def inputs(self, offsets: Tensor) -> Tensor:
        """What the layout functions take: the shared vector [d] itself, else the vector of each slot."""
        return self.register if self.register.dim() == 1 else self.vectors(offsets)


# ------------------------------------------------------------------------------------------------ method ----


@dataclass(eq=False)
class MuToR:
    params: MuToRParams
    context: MethodContext
    name: ClassVar[str] = "mutor"
    Params: ClassVar[type] = MuToRParams

    @property
    def offsets(self) -> range:
        """Layout 1d: the offsets d. Layout 2d: the indices of ``params.grid_offsets()``."""
        if self.params.layout == "2d":
            return range(len(self.params.grid_offsets()))
        return range(self.params.d_min, self.params.d_max + 1)

    @property
    def horizons(self) -> list[tuple[str, int]]:
        """(metric suffix, offset key) of each offset: ``h{d}`` with key d (1d), ``h{dy}_{dx}`` with key its index in
        ``grid_offsets()`` (2d; e.g. ``h1_-1`` for one row down, one column left)."""
        if self.params.layout == "2d":
            return [(f"h{dy}_{dx}", i) for i, (dy, dx) in enumerate(self.params.grid_offsets())]
        return [(f"h{d}", d) for d in self.offsets]

    @property
    def offset_key(self) -> str:
        """The tensor of a ModelBatch that holds each register slot's offset key (see :attr:`horizons`)."""
        return "offset_ids" if self.params.layout == "2d" else "offsets"

    def prepare(self, model: nn.Module, tokenizer: Any) -> nn.Module:
        implementation = getattr(model.config, "_attn_implementation", None) or "eager"
        if implementation not in MASK_IMPLEMENTATIONS:
            raise ValueError(
                f"mutor needs an attention kernel that takes a 4D mask ({' or '.join(MASK_IMPLEMENTATIONS)}); "
                f"the model uses {implementation!r}: set model.attn_implementation"
            )
        if self.params.layout == "2d" and self.context.train_mode == "pretrain":
            raise ValueError(
                "mutor layout 2d reads the image as the first grid[0] * grid[1] target tokens, so the class token must "
                "be the prompt (no loss on it): use train.mode full (a preset model trains from scratch in it), not "
                "train.mode pretrain"
            )
        weight = model.get_input_embeddings().weight.detach()
        if self.params.register_init == "mean":
            vector = weight.float().mean(0)
        else:
            # A forked RNG: drawing here must not shift what is drawn later (e.g. LoRA init), or NTP and MuToR
            # trials of one seed would start from different adapters.
            with torch.random.fork_rng(devices=[]):
                vector = torch.randn(weight.size(1)) * weight.float().std()
        per_offset = self.offsets if self.params.registers == "per_offset" else None
        return RegisterEmbedding(vector.to(device=weight.device, dtype=weight.dtype), per_offset)

    def transform(self, batch: TokenBatch, generator: torch.Generator) -> ModelBatch:
        layout, register_targets, keys = self._registers(batch.labels, generator)
        targets = shifted_targets(batch.labels)
        n_targets = count_targets(targets)
        n_registers = layout.valid.sum()
        per_offset = torch.bincount(keys[layout.valid], minlength=self.offsets.stop)
        counts: dict[str, Tensor | int] = {
            "loss/ntp": n_targets, "acc/ntp": n_targets, "loss/reg": n_registers, "acc/reg": n_registers
        }
        for suffix, key in self.horizons:
            counts[f"loss/{suffix}"] = counts[f"acc/{suffix}"] = per_offset[key]
        tensors = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "targets": targets,
            "anchors": layout.anchors,
            "offsets": layout.offsets,
            "register_valid": layout.valid,
            "register_targets": register_targets,
        }
        if self.params.layout == "2d":
            tensors["offset_ids"] = keys
        if batch.bidirectional_prompt:
            tensors["prompt_lengths"] = batch.prompt_lengths
        # The 4D mask is built in ``loss``, not here: the loop transforms every micro-batch of a step up front.
        return ModelBatch(tensors=tensors, counts=counts, n_tokens=batch.n_real_tokens + int(n_registers))

    def _registers(self, labels: Tensor, generator: torch.Generator) -> tuple[RegisterLayout, Tensor, Tensor]:
        """(layout, each slot's target, each slot's offset key) with offsets drawn as the params say."""
        p = self.params
        if p.layout == "2d":
            assert p.grid is not None  # the params' validator guarantees it
            return grid_registers(labels, p.grid, p.grid_offsets(), p.offset_sampling == "register",
                                  p.registers_per_sequence, generator)
        shape = labels.shape if p.offset_sampling == "register" else labels.shape[:1]
        d = torch.randint(p.d_min, p.d_max + 1, shape, generator=generator, device=labels.device)
        layout, register_targets = select_registers(labels, d, p.registers_per_sequence, generator)
        return layout, register_targets, layout.offsets

    def hidden_states(self, model: nn.Module, extra: nn.Module, batch: ModelBatch) -> tuple[Tensor, Tensor]:
        """(final-normed hidden states of the real tokens [B, T, d], of the register slots [B, R, d]) of one forward
        pass; padding slots hold whatever their clamped column holds."""
        t = batch.tensors
        layout = RegisterLayout(anchors=t["anchors"], offsets=t["offsets"], valid=t["register_valid"])
        inputs = register_forward_inputs(
            model, extra.inputs(t[self.offset_key]), t["input_ids"], t["attention_mask"], layout, t.get("prompt_lengths")
        )
        hidden = anatomy(model).backbone(**inputs, use_cache=False).last_hidden_state
        length = t["input_ids"].size(1)
        columns = place_registers(t["attention_mask"].sum(1), layout, length).columns
        registers = hidden.gather(1, columns[:, :, None].expand(-1, -1, hidden.size(-1)))
        return hidden[:, :length], registers

    def logits(self, model: nn.Module, extra: nn.Module, batch: ModelBatch) -> tuple[Tensor, Tensor]:
        """(real-token logits [B, T, V], register logits [B, R, V]) of one forward pass (for inspection; the loss
        runs the LM head only where there are targets)."""
        real, registers = self.hidden_states(model, extra, batch)
        anat = anatomy(model)
        return anat.logits(real), anat.logits(registers)

    def loss(self, model: nn.Module, extra: nn.Module | None, batch: ModelBatch) -> LossOutput:
        extra = required_extra(extra, self.name, "RegisterEmbedding")
        t = batch.tensors
        anat = anatomy(model)
        real_hidden, register_hidden = self.hidden_states(model, extra, batch)
        ntp_loss, ntp_correct = target_loss(anat.logits, real_hidden, t["targets"])
        valid = t["register_valid"]
        register_logits, register_targets = anat.logits(register_hidden[valid]), t["register_targets"][valid]
        # Per-register losses once, then summed per offset: one log-softmax over the register logits, not one per d.
        per_register = F.cross_entropy(register_logits.float(), register_targets, reduction="none")
        correct = register_logits.detach().argmax(-1) == register_targets
        keys = t[self.offset_key][valid]
        sums = {"loss/ntp": ntp_loss, "acc/ntp": ntp_correct, "loss/reg": per_register.sum(), "acc/reg": correct.sum()}
        for suffix, key in self.horizons:
            selected = keys == key
            sums[f"loss/{suffix}"] = per_register[selected].sum()
            sums[f"acc/{suffix}"] = correct[selected].sum()
        return LossOutput(sums=sums)

    def loss_weights(self) -> dict[str, float]:
        """``(1 - a) * L_ntp + a * L_reg``; the per-offset terms are only logged."""
        return {"loss/ntp": 1.0 - self.params.a, "loss/reg": self.params.a}

    def make_drafter(self, model: nn.Module, extra: nn.Module | None, k: int) -> RegisterDrafter | None:
        """Registers as drafters: after the last accepted x_t, registers at positions t+d-1 draft x_{t+d} for
        d = 2..k+1 (the training layout), limited to the offsets the register was trained on."""
        if self.params.layout == "2d":
            # A 2D register drafts a token off the raster path (below the current one); a speculative decoder
            # verifies the next raster tokens, so 2D registers have nothing to offer it.
            return None
        drafts = min(k, self.params.d_max - 1)
        if extra is None or drafts < 1 or self.params.d_min > 2:
            return None
        return RegisterDrafter(model, extra.inputs(torch.arange(2, drafts + 2, device=extra.register.device)), drafts)

    def export(self, model: nn.Module, extra: nn.Module | None) -> nn.Module:
        return model  # registers are a training device only: the plain causal LM, unchanged


# ---------------------------------------------------------------------------------------------- drafting ----


class RegisterDrafter:
    """Self-speculative drafting with MuToR registers (satisfies :class:`mtp_bench.api.method.Drafter`).

    After each real token x_t that may end the accepted prefix, k registers are appended in the same forward as the
    verifier's tokens: the one for offset d (2..k+1) has the position id of x_{t+d-1} (exactly as in training),
    attends to every real token up to x_t and to itself, and its prediction drafts x_{t+d}. Real tokens never see
    registers, so the verifier's logits are those of the plain model; registers sit after all real tokens in the
    cache and leave it when the decoder crops it to the accepted length.
    """

    def __init__(self, model: nn.Module, register: Tensor, k: int):
        # register: one vector [d], or [k, d], the vector of each offset 2..k+1
        self.model, self.register, self.max_drafts = model, register, k
        self.anat = anatomy(model)
        self.cache_keyword = cache_keyword(model)
        self._drafts: dict[int, list[int]] = {}

    @torch.inference_mode()
    def forward(self, input_ids: Tensor, cache: Any, past_length: int, prefill: bool = False,
                bidirectional: bool = False) -> Tensor:
        n, k, device = input_ids.numel(), self.max_drafts, input_ids.device
        anchors = [n - 1] if prefill else list(range(n))  # a prefill is only ever continued after its last token
        step = torch.arange(n, device=device)
        real_allowed = step[None, :] <= step[:, None]
        if bidirectional:
            real_allowed = torch.ones_like(real_allowed)
        slots = len(anchors) * k
        total = n + slots
        allowed = torch.zeros(total, past_length + total, dtype=torch.bool, device=device)
        allowed[:, :past_length] = True
        allowed[:n, past_length : past_length + n] = real_allowed
        anchor_of_slot = torch.tensor(anchors, device=device).repeat_interleave(k)
        offset_of_slot = torch.arange(2, k + 2, device=device).repeat(len(anchors))
        allowed[n:, past_length : past_length + n] = real_allowed[anchor_of_slot]
        allowed[n:, past_length + n :] = torch.eye(slots, dtype=torch.bool, device=device)
        positions = torch.cat([past_length + step, past_length + anchor_of_slot + offset_of_slot - 1])
        embeddings = self.anat.embed(input_ids.reshape(1, n))
        registers = as_input_embedding(self.register, self.anat.embed_tokens, embeddings.dtype)
        registers = registers.repeat(len(anchors), 1)[None] if registers.dim() == 2 else registers.expand(1, slots, -1)
        # Sliding windows are measured from each query's anchor, as in training: a register sees its anchor's keys.
        window_at = torch.cat([past_length + step, past_length + anchor_of_slot])
        keys = torch.cat([torch.arange(past_length, device=device), window_at])
        mask = custom_attention(self.anat.model, allowed[None], window_at[None], keys[None])
        logits = self.model(
            inputs_embeds=torch.cat([embeddings, registers], dim=1),
            position_ids=positions[None],
            attention_mask=mask,
            **{self.cache_keyword: cache},
            use_cache=True,
        ).logits[0]
        drafted = logits[n:].argmax(-1).view(len(anchors), k).tolist()
        self._drafts = dict(zip(anchors, drafted))
        return logits[:n]

    def accept(self, kept: int, next_token: int) -> list[int]:
        return self._drafts.get(kept - 1, [])
