"""MuToR-2D (``mutor`` with ``layout: 2d``): anchors, offsets, targets, positions and mask on a hand-worked 3 x 4
image, real-token exactness, equivalence with NTP at a = 0 on image sequences, sparse registers, per-offset
registers and metrics, and the params' validation."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from helpers import generator, loss_and_gradients, make_batch, make_model, objective
from mtp_bench.api import IGNORE_INDEX, MethodContext, allowed_attention, shifted_targets
from mtp_bench.methods.mutor import MuToR, MuToRParams
from mtp_bench.methods.mutor_grid import grid_registers
from mtp_bench.methods.mutor_layout import attention_with_registers
from mtp_bench.methods.ntp import NextTokenPrediction, NTPParams
from mtp_bench.train.loop import TrainModule

EOS, CLASS = 1, 5
HEIGHT, WIDTH = 3, 4
IMAGE = list(range(10, 22))  # image tokens 10..21: token 10 + j at cell (j // 4, j % 4)


def mutor(**params) -> MuToR:
    return MuToR(MuToRParams(layout="2d", **params), MethodContext(train_mode="full"))


def image_batch(rows: list[tuple[list[int], list[int]]]):
    """Prompt (BOS? + class token) and answer (the image tokens, then EOS) per row."""
    return make_batch([(prompt, image + [EOS]) for prompt, image in rows])


def random_images(seed: int, n: int, cells: int, prompts: list[list[int]] | None = None):
    g = torch.Generator().manual_seed(seed)
    prompts = prompts or [[0, 3 + i % 4] for i in range(n)]
    return [(prompts[i % len(prompts)], torch.randint(10, 61, (cells,), generator=g).tolist()) for i in range(n)]


# ------------------------------------------------------------------------------------ hand-worked example ----
# Columns of the row [BOS, c, x0 .. x11, EOS]: BOS 0, class 1, image token j at column 2 + j, EOS at 14. Grid 3 x 4:
#     x0 x1 x2 x3        (row 0: columns 2..5)
#     x4 x5 x6 x7        (row 1: columns 6..9)
#     x8 x9 x10 x11      (row 2: columns 10..13)
# The class token is the cell (0, -1), just left of x0.
HAND_WORKED = {
    # offset: (anchor columns, target tokens); position of each register = anchor + (dy * 4 + dx) - 1
    (1, 1): (  # one row down, one right: raster distance 5. Class (0,-1) -> (1,0) = x4; x_j -> x_{j+5} for j in
        [1, 2, 3, 4, 6, 7, 8],  # rows 0-1, columns 0-2
        [14, 15, 16, 17, 19, 20, 21],
    ),
    (0, 2): (  # two right: raster distance 2. Class -> (0,1) = x1; x_j -> x_{j+2} for columns 0-1 of every row
        [1, 2, 3, 6, 7, 10, 11],
        [11, 12, 13, 16, 17, 20, 21],
    ),
    (1, -1): (  # one down, one left: raster distance 3. Class -> (1,-2): outside. x_j -> x_{j+3} for rows 0-1,
        [3, 4, 5, 7, 8, 9],  # columns 1-3
        [14, 15, 16, 18, 19, 20],
    ),
}


@pytest.mark.parametrize("offset", list(HAND_WORKED))
def test_hand_worked_3x4_grid_anchors_targets_and_positions(offset):
    anchors, targets = HAND_WORKED[offset]
    distance = offset[0] * WIDTH + offset[1]
    batch = image_batch([([0, CLASS], IMAGE)])
    layout, register_targets, ids = grid_registers(batch.labels, (HEIGHT, WIDTH), [offset], True)
    assert layout.anchors.tolist() == [anchors]
    assert register_targets.tolist() == [targets]
    assert layout.offsets.tolist() == [[distance] * len(anchors)]
    assert layout.positions.tolist() == [[a + distance - 1 for a in anchors]]  # the real token before the target
    assert ids.tolist() == [[0] * len(anchors)]
    # The position is that of the real token whose next-token prediction has the same target.
    ntp = shifted_targets(batch.labels)[0]
    assert [int(ntp[p]) for p in layout.positions[0]] == targets
    # Through the method: the same registers, and the counts of its per-offset metric.
    model_batch = mutor(grid=(HEIGHT, WIDTH), offsets_2d=[offset]).transform(batch, generator())
    t = model_batch.tensors
    assert t["anchors"].tolist() == [anchors] and t["register_targets"].tolist() == [targets]
    name = f"h{offset[0]}_{offset[1]}"
    assert model_batch.counts[f"loss/{name}"] == model_batch.counts["loss/reg"] == len(anchors)
    assert model_batch.counts["loss/ntp"] == 13  # 12 image tokens and EOS
    assert model_batch.n_tokens == 15 + len(anchors)


def test_hand_worked_mask_one_down_one_right():
    # Offset (1, 1): registers after columns 1, 2, 3, 4, 6, 7, 8 (keys 15..21). Each sees its anchor's keys (the
    # causal prefix up to and including the anchor) and itself; real tokens never see a register.
    batch = image_batch([([0, CLASS], IMAGE)])
    layout, _, _ = grid_registers(batch.labels, (HEIGHT, WIDTH), [(1, 1)], True)
    mask = attention_with_registers(allowed_attention(batch.attention_mask), layout).int()[0]
    assert mask.shape == (22, 22)
    real = torch.tril(torch.ones(15, 15, dtype=torch.int))
    assert torch.equal(mask[:15, :15], real) and mask[:15, 15:].sum() == 0
    expected_registers = [
        # real keys 0..14                                   registers 15..21
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],  # after the class token
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],  # after x0
        [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],  # after x1
        [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],  # after x2
        [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],  # after x4
        [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],  # after x5
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],  # after x6
    ]
    assert mask[15:].tolist() == expected_registers


def test_offset_0_1_is_the_next_token_prediction_at_every_anchor():
    # (0, 1) from the class token targets x0; from x_j targets x_{j+1} unless x_j ends a grid row (no wrap-around).
    batch = image_batch([([0, CLASS], IMAGE)])
    layout, targets, _ = grid_registers(batch.labels, (HEIGHT, WIDTH), [(0, 1)], True)
    assert layout.anchors.tolist() == [[1, 2, 3, 4, 6, 7, 8, 10, 11, 12]]
    assert torch.equal(layout.positions, layout.anchors)
    assert torch.equal(targets, shifted_targets(batch.labels).gather(1, layout.anchors))


def test_every_drawn_register_targets_its_cell_plus_offset():
    # Per-register draws over the default window, rows with different prompt lengths (padding, columns shift).
    grid = (4, 5)
    offsets = MuToRParams(layout="2d", grid=grid).grid_offsets()
    batch = image_batch(random_images(1, 4, 20, prompts=[[0, 6], [7], [0, 8], [9]]))
    layout, targets, ids = grid_registers(batch.labels, grid, offsets, True, generator=generator(3))
    assert len(set(ids[layout.valid].tolist())) > 3  # offsets differ between registers of a row
    for row in range(4):
        start = int((batch.labels[row] != IGNORE_INDEX).int().argmax())
        for slot in layout.valid[row].nonzero().flatten().tolist():
            j = int(layout.anchors[row, slot]) - start
            r, c = (0, -1) if j < 0 else divmod(j, 5)
            dy, dx = offsets[int(ids[row, slot])]
            assert 0 <= r + dy < 4 and 0 <= c + dx < 5
            target_column = start + (r + dy) * 5 + (c + dx)
            assert int(targets[row, slot]) == int(batch.input_ids[row, target_column])
            assert int(layout.positions[row, slot]) == target_column - 1


def test_per_register_offsets_are_uniform_where_every_offset_fits():
    # offset_sampling register, 16 x 16 grid, the default 15 offsets: an anchor at rows 0..12, columns 0..12 can take
    # any of them.
    batch = image_batch(random_images(7, 40, 256))
    offsets = MuToRParams(layout="2d", grid=(16, 16)).grid_offsets()
    layout, _, ids = grid_registers(batch.labels, (16, 16), offsets, True, generator=generator(4))
    j = layout.anchors - 2  # image index of each anchor (prompt [BOS, class])
    interior = layout.valid & (j >= 0) & (j // 16 <= 12) & (j % 16 <= 12)
    frequencies = torch.bincount(ids[interior], minlength=15).float() / interior.sum()
    assert (frequencies - 1 / 15).abs().max() < 0.011  # about 3.5 sigma at n = 40 x 169


def test_one_offset_per_sequence_by_default_uniform_over_the_offsets():
    # The paper's protocol: each sequence draws one (dy, dx); its registers all predict that offset.
    batch = image_batch(random_images(2, 3000, 16))
    t = mutor(grid=(4, 4)).transform(batch, generator(1)).tensors
    valid = t["register_valid"]
    assert all(len(set(t["offset_ids"][row][valid[row]].tolist())) == 1 for row in range(20))
    first = t["offset_ids"][:, 0]  # slot 0 holds a register in every row: the class token's, or x0's
    assert valid[:, 0].all()
    frequencies = torch.bincount(first, minlength=15).float() / 3000
    assert (frequencies - 1 / 15).abs().max() < 0.017  # about 3.7 sigma at n = 3000


# ----------------------------------------------------------------------------------------- exactness ----
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_registers_never_change_image_token_logits(attn):
    model = make_model("llama", attn)
    method = mutor(grid=(3, 4), offset_sampling="register")
    extra = method.prepare(model, None)
    extra.register.data.normal_()  # an arbitrary register: nothing of it may reach the real tokens
    batch = image_batch(random_images(3, 3, 12, prompts=[[0, 4], [6], [0, 7]]))
    model_batch = method.transform(batch, generator())
    assert model_batch.tensors["register_valid"].sum() > 20
    with torch.no_grad():
        real, _ = method.logits(model, extra, model_batch)
        reference = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    on_real = batch.attention_mask.bool()
    assert (real - reference)[on_real].abs().max().item() <= 1e-5


@pytest.mark.parametrize("sparse", [None, 5])
def test_a0_equals_ntp_on_images_in_loss_and_every_gradient(sparse):
    batch = image_batch(random_images(4, 3, 12))
    results = [loss_and_gradients(method, make_model("llama", "sdpa"), batch)
               for method in (NextTokenPrediction(NTPParams(), MethodContext("full")),
                              mutor(grid=(3, 4), a=0.0, registers_per_sequence=sparse))]
    (ntp_loss, ntp_grads), (mutor_loss, mutor_grads) = results
    assert torch.allclose(mutor_loss, ntp_loss, atol=1e-6)
    for name, grad in ntp_grads.items():
        assert torch.allclose(mutor_grads[name], grad, atol=1e-6), name


def test_loss_terms_per_offset_add_up_and_per_offset_registers_learn():
    model = make_model("llama")
    method = mutor(grid=(3, 4), registers="per_offset", a=0.5)
    extra = method.prepare(model, None)
    offsets = method.params.grid_offsets()
    assert extra.register.shape == (len(offsets), model.config.hidden_size)
    model_batch = method.transform(image_batch(random_images(5, 4, 12)), generator(2))
    output = method.loss(model, extra, model_batch)
    names = [f"h{dy}_{dx}" for dy, dx in offsets]
    assert "loss/h1_3" in output.sums and "acc/h2_2" in model_batch.counts and len(names) == 11
    assert sum(int(model_batch.counts[f"loss/{n}"]) for n in names) == int(model_batch.counts["loss/reg"])
    assert sum(output.sums[f"loss/{n}"] for n in names).item() == pytest.approx(output.sums["loss/reg"].item(),
                                                                                rel=1e-5)
    objective(method, TrainModule(model, extra, method), model_batch).backward()
    used = model_batch.tensors["offset_ids"][model_batch.tensors["register_valid"]].unique()
    grad_rows = extra.register.grad.abs().sum(1) > 0
    assert grad_rows[used].all() and int(grad_rows.sum()) == len(used)
    assert method.make_drafter(model, extra, 3) is None  # no drafting with 2D registers


# --------------------------------------------------------------------------------------------- sparse ----
def test_sparse_registers_exactly_per_image_and_reproducible():
    batch = image_batch(random_images(6, 5, 16))
    method = mutor(grid=(4, 4), registers_per_sequence=6, offset_sampling="register")
    draws = [method.transform(batch, generator(seed)).tensors for seed in range(5)]
    assert all(d["register_valid"].sum(1).tolist() == [6] * 5 for d in draws)
    again = method.transform(batch, generator(0)).tensors
    assert all(torch.equal(draws[0][k], again[k]) for k in ("anchors", "offsets", "offset_ids", "register_targets"))
    assert len({tuple(d["anchors"][0].tolist()) for d in draws}) > 1
    # Every kept register is one the dense draw with the same generator had: sparsity only drops registers.
    dense_layout, dense_targets, dense_ids = grid_registers(
        batch.labels, (4, 4), method.params.grid_offsets(), True, None, generator(0))
    sparse = draws[0]
    for row in range(5):
        table = {int(a): (int(y), int(i)) for a, y, i, v in zip(dense_layout.anchors[row], dense_targets[row],
                                                              dense_ids[row], dense_layout.valid[row]) if v}
        for a, y, i, v in zip(sparse["anchors"][row], sparse["register_targets"][row], sparse["offset_ids"][row],
                              sparse["register_valid"][row]):
            assert not v or table[int(a)] == (int(y), int(i))


def test_sparse_registers_with_one_offset_per_sequence():
    # 8 x 8 grid, 20 registers (the digits suite's sparse setting): even (3, 3) leaves 25 image anchors.
    batch = image_batch(random_images(8, 30, 64))
    t = mutor(grid=(8, 8), registers_per_sequence=20).transform(batch, generator(5)).tensors
    assert t["register_valid"].sum(1).tolist() == [20] * 30


def test_sparse_registers_take_all_when_fewer_are_eligible():
    # Grid 2 x 2 and offset (1, 1): only the class token (0, -1) and x0 can anchor a register (targets x2, x3).
    batch = image_batch([([0, CLASS], [10, 11, 12, 13])])
    t = mutor(grid=(2, 2), offsets_2d=[(1, 1)], registers_per_sequence=5).transform(batch, generator()).tensors
    assert t["register_valid"].sum().item() == 2 and t["register_targets"].tolist() == [[12, 13]]


# -------------------------------------------------------------------------------------------- settings ----
def test_params_defaults_and_validation():
    assert MuToRParams().layout == "1d" and MuToRParams(layout="2d", grid=(8, 8)).offset_sampling == "sequence"
    # The paper's d_max_2D = 4 neighbourhood: (d_h, d_w) in {1..4}^2 without (1, 1), as (dy, dx) = (d_h-1, d_w-1).
    assert MuToRParams(layout="2d", grid=(16, 16)).grid_offsets() == [
        (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1), (2, 2), (2, 3), (3, 0), (3, 1), (3, 2),
        (3, 3)]
    assert len(MuToRParams(layout="2d", grid=(3, 4)).grid_offsets()) == 11  # dy = 3 cannot fit 3 rows
    assert MuToRParams(layout="2d", grid=(2, 2)).grid_offsets() == [(0, 1), (1, 0), (1, 1)]
    # A suite completes params with their defaults (d_min, d_max included) and the trial validates them again.
    again = MuToRParams.model_validate(MuToRParams(layout="2d", grid=(3, 4), offsets_2d=[(1, -1)]).model_dump(
        mode="json"))
    assert again.grid == (3, 4) and again.grid_offsets() == [(1, -1)]
    bad = {
        "layout 2d needs grid": {"layout": "2d"},
        r"offsets_2d\[0\] = \(0, 0\): \(0, 0\) is the anchor itself": {"offsets_2d": [(0, 0)]},
        r"offsets_2d\[1\] = \(3, 0\) can never land inside the 3 x 4 grid": {"offsets_2d": [(1, 0), (3, 0)]},
        r"offsets_2d\[0\] = \(1, -4\) can never land": {"offsets_2d": [(1, -4)]},
        r"offsets_2d\[0\] = \(0, -1\) points before the anchor": {"offsets_2d": [(0, -1)]},
        r"offsets_2d\[0\] = \(-1, 2\) points before the anchor": {"offsets_2d": [(-1, 2)]},
        "lists an offset twice": {"offsets_2d": [(1, 0), (1, 0)]},
        "d_max is a setting of layout 1d": {"d_max": 3},
    }
    for message, fields in bad.items():
        fields = {"layout": "2d", "grid": (3, 4), **fields} if fields != {"layout": "2d"} else fields
        with pytest.raises(ValidationError, match=message):
            MuToRParams(**fields)
    with pytest.raises(ValidationError, match="grid is a setting of layout 2d"):
        MuToRParams(grid=(3, 4))
    with pytest.raises(ValidationError, match="grid must be two positive sizes"):
        MuToRParams(layout="2d", grid=(0, 4))


def test_a_row_shorter_than_the_grid_and_pretraining_are_refused():
    with pytest.raises(ValueError, match=r"row 1 .* 5 target tokens, fewer than the 3 x 4 = 12 image tokens"):
        mutor(grid=(3, 4)).transform(image_batch([([0, 4], IMAGE), ([0, 4], IMAGE[:4])]), generator())
    method = MuToR(MuToRParams(layout="2d", grid=(3, 4)), MethodContext(train_mode="pretrain"))
    with pytest.raises(ValueError, match="train.mode pretrain"):
        method.prepare(make_model("llama"), None)
