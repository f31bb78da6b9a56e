"""Settings of ``mutor`` (:mod:`mtp_bench.methods.mutor`); imports no torch, so that a suite validates without importing
the method (the ``mtp_bench.method_params`` entry point names it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mtp_bench.api.settings import Settings

# MuToR-2D's default offsets (dy rows down, dx columns right): the paper's d_max_2D = 4 neighbourhood (arXiv
# 2505.10518, Section 3.4 and Table 7): (d_h, d_w) in {1..4}^2 without (1, 1), i.e. (dy, dx) = (d_h - 1, d_w - 1).
DEFAULT_OFFSETS_2D: tuple[tuple[int, int], ...] = tuple(
    (dy, dx) for dy in range(4) for dx in range(4) if (dy, dx) != (0, 0)
)


class MuToRParams(Settings):
    """Settings of MuToR. Defaults are the paper's best for GSM8K fine-tuning (d_max 4, a 0.3); ``layout: 2d`` with a
    ``grid`` is MuToR-2D for images (see :mod:`mtp_bench.methods.mutor`)."""

    a: float = Field(default=0.3, ge=0.0, le=1.0)
    """Weight of the register loss: ``(1 - a) * L_ntp + a * L_reg``. With 0 the objective is plain NTP."""

    d_min: int = Field(default=1, ge=1)
    """Smallest offset: a register after x_t predicts x_{t+d}, d drawn per sequence uniformly from d_min..d_max
    (the paper uses 1 for fine-tuning, 2 for the star-graph task). Layout 1d only."""

    d_max: int = Field(default=4, ge=1)
    """Largest offset (the paper: 4 for GSM8K, 6 with the largest data sets, 3-4 for summarisation). Layout 1d only."""

    register_init: Literal["mean", "random"] = "mean"
    """Initial register embedding: ``mean`` of the input-embedding rows (a typical token, so early training is
    not disturbed by an out-of-distribution input), or ``random``: normal with the embeddings' standard deviation
    (close to what the official code got from resizing the vocabulary)."""

    registers: Literal["shared", "per_offset"] = "shared"
    """``shared``: one learned register embedding for every offset (the paper's method). ``per_offset``: one per
    offset (d_min..d_max, or each entry of ``offsets_2d``), each register (and the drafter) using that of the offset
    it predicts (the paper's ablation, Table 6); each starts as the shared one would."""

    registers_per_sequence: int | None = Field(default=None, ge=1)
    """Sparse registers: this many per sequence at random positions among the eligible ones (the paper's image
    experiments: 80 per 256-token image in Table 8). None: a register after every eligible token (dense, the paper's
    language setting)."""

    layout: Literal["1d", "2d"] = "1d"
    """``1d``: a register predicts the token d steps ahead in the sequence (text MuToR; on images, d along the raster
    order: MuToR-1D). ``2d``: a register predicts the token at a 2D offset (dy rows down, dx columns right) in the
    image grid (MuToR-2D); the image tokens are the first ``grid[0] * grid[1]`` target tokens of every sequence."""

    grid: tuple[int, int] | None = None
    """(height, width) of the image token grid, e.g. [16, 16] for LlamaGen's 256 x 256 images. Required by, and only
    used with, layout 2d."""

    offsets_2d: list[tuple[int, int]] | None = None
    """Layout 2d: the offsets (dy, dx) a register may be given; each must lie after its anchor in raster order
    (dy >= 0, and dx >= 1 when dy = 0) and be able to land inside the grid (dy < height, |dx| < width). None: the
    paper's neighbourhood, dy and dx in 0..3 but not both 0 (15 offsets; its d_max_2D = 4), less those the grid
    cannot hold. Offsets to the left (dx < 0) are allowed but are not the paper's."""

    offset_sampling: Literal["sequence", "register"] = "sequence"
    """How offsets are drawn: one per ``sequence``, uniform over the offsets (every register of a sequence predicts the
    same offset; registers whose target leaves the sequence or grid are dropped; the paper's protocol for text and
    images), or one per ``register`` (ours, not the paper's): in 1d uniform over d_min..d_max, dropped past the end;
    in 2d uniform over the offsets whose target is inside the grid at that anchor."""

    @model_validator(mode="after")
    def _offsets_ordered(self) -> MuToRParams:
        if self.d_min > self.d_max:
            raise ValueError(f"d_min ({self.d_min}) must not exceed d_max ({self.d_max})")
        if self.layout == "1d":
            for name in ("grid", "offsets_2d"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is a setting of layout 2d (MuToR-2D); set layout: 2d or remove {name}")
            return self
        if self.grid is None:
            raise ValueError("layout 2d needs grid: the (height, width) of the image token grid, e.g. grid: [8, 8]")
        height, width = self.grid
        if height < 1 or width < 1:
            raise ValueError(f"grid must be two positive sizes (height, width), got {list(self.grid)}")
        # Compared with the defaults, not with the fields set: suites complete params with defaults before a trial
        # validates them again.
        set_1d = [name for name in ("d_min", "d_max") if getattr(self, name) != type(self).model_fields[name].default]
        if set_1d:
            verb = "are settings" if len(set_1d) > 1 else "is a setting"
            raise ValueError(f"{' and '.join(set_1d)} {verb} of layout 1d; layout 2d draws its offsets from offsets_2d")
        if self.offsets_2d is not None:
            _check_offsets_2d(self.offsets_2d, height, width)
        if not self.grid_offsets():
            raise ValueError(f"no default offset fits a {height} x {width} grid; give offsets_2d")
        return self

    def grid_offsets(self) -> list[tuple[int, int]]:
        """The 2D offsets of layout 2d, in order (``offsets_2d``, or the default window fitted to the grid)."""
        if self.grid is None:
            return []
        if self.offsets_2d is not None:
            return [tuple(offset) for offset in self.offsets_2d]
        height, width = self.grid
        return [(dy, dx) for dy, dx in DEFAULT_OFFSETS_2D if dy < height and abs(dx) < width]


def _check_offsets_2d(offsets: list[tuple[int, int]], height: int, width: int) -> None:
    if not offsets:
        raise ValueError("offsets_2d must list at least one offset (dy, dx)")
    if len(set(offsets)) != len(offsets):
        raise ValueError(f"offsets_2d lists an offset twice: {[list(o) for o in offsets]}")
    for index, (dy, dx) in enumerate(offsets):
        where = f"offsets_2d[{index}] = ({dy}, {dx})"
        if (dy, dx) == (0, 0):
            raise ValueError(f"{where}: (0, 0) is the anchor itself; a register predicts a later token")
        if dy < 0 or (dy == 0 and dx < 1):
            raise ValueError(f"{where} points before the anchor in raster order: need dy >= 0, and dx >= 1 when dy = 0")
        if dy >= height or abs(dx) >= width:
            raise ValueError(f"{where} can never land inside the {height} x {width} grid: need dy < {height} and "
                             f"|dx| < {width}")
