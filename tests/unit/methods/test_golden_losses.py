"""Golden losses: the first optimiser steps of every built-in method on a fixed-seed tiny Llama, through the shared
loop (``Trainer``), pinned to the numbers the code gave when they were recorded.

Refactors of the method toolkit and speed-ups of a method must change no number: every loss and accuracy term the
method logs, the weighted objective and the gradient norm of three steps are compared (1e-5 relative for losses).
To re-record after an intended change of a method's maths, ``PYTHONPATH=tests python
tests/unit/methods/test_golden_losses.py`` prints the table.
"""

from __future__ import annotations

import pytest
import torch

from helpers import make_batch, make_model, random_pairs
from mtp_bench.api import MethodContext
from mtp_bench.methods.deepseek_mtp import DeepSeekMTP
from mtp_bench.methods.medusa import Medusa
from mtp_bench.methods.mtp_heads import MultiTokenHeads
from mtp_bench.methods.mutor import MuToR
from mtp_bench.methods.ntp import NextTokenPrediction
from mtp_bench.suite.config import TrainConfig
from mtp_bench.train.loop import Trainer, TrainModule

STEPS = 3
# Rows of very different prompt and answer lengths (MuToR's register counts differ per row; right padding).
LENGTHS = [(3, 7), (6, 2), (2, 5), (5, 4)]

# case -> (method class, params, bidirectional prompt)
CASES = {
    "ntp": (NextTokenPrediction, {}, False),
    "ntp-bidirectional": (NextTokenPrediction, {}, True),
    "mutor": (MuToR, {}, False),
    "mutor-bidirectional": (MuToR, {}, True),
    "mutor-sparse": (MuToR, {"registers_per_sequence": 2, "d_min": 2, "d_max": 3}, False),
    "mtp_heads": (MultiTokenHeads, {"n_future": 3, "a": 0.3}, False),
    "mtp_heads-bidirectional": (MultiTokenHeads, {"n_future": 2}, True),
    "deepseek_mtp": (DeepSeekMTP, {"depth": 2}, False),
    "deepseek_mtp-bidirectional": (DeepSeekMTP, {"depth": 1}, True),
    "medusa-1": (Medusa, {"variant": "medusa-1", "n_heads": 2}, False),
    "medusa-2": (Medusa, {"variant": "medusa-2", "n_heads": 2}, False),
}


def train_three_steps(case: str) -> list[dict[str, float]]:
    """Loss, accuracy and gradient-norm metrics of each of the first ``STEPS`` optimiser steps of ``case``."""
    cls, params, bidirectional = CASES[case]
    model = make_model("llama", "sdpa", seed=0)
    method = cls(cls.Params(**params), MethodContext(train_mode="full", bidirectional_prompt=bidirectional))
    extra = method.prepare(model, None)
    cfg = TrainConfig(max_steps=STEPS, lr=1e-2, batch_size=4, warmup_steps=0, progress=False, log_every=1)

    def batches_for_step(step: int):
        return [make_batch(random_pairs(step, LENGTHS), bidirectional_prompt=bidirectional)]

    trainer = Trainer(TrainModule(model, extra, method), method, cfg, total_steps=STEPS, device=torch.device("cpu"),
                      precision=None, seed=0, batches_for_step=batches_for_step, eval_steps=set())
    kept = ("train/loss", "train/acc", "train/grad_norm")
    return [{name: value for name, value in trainer.train_step(step).items() if name.startswith(kept)}
            for step in range(STEPS)]


# Recorded from the code before the method-toolkit refactor and MuToR's speed-up (see the module docstring).
GOLDEN: dict[str, list[dict[str, float]]] = {
    'ntp': [
        {'train/acc/ntp': 0.0, 'train/grad_norm': 2.0650792121887207, 'train/loss': 4.128744337293837,
         'train/loss/ntp': 4.128744337293837},
        {'train/acc/ntp': 0.0, 'train/grad_norm': 1.9687682390213013, 'train/loss': 4.0990041097005205,
         'train/loss/ntp': 4.0990041097005205},
        {'train/acc/ntp': 0.0, 'train/grad_norm': 2.449470043182373, 'train/loss': 4.120970831976996,
         'train/loss/ntp': 4.120970831976996},
    ],
    'ntp-bidirectional': [
        {'train/acc/ntp': 0.0, 'train/grad_norm': 2.0657219886779785, 'train/loss': 4.13053724500868,
         'train/loss/ntp': 4.13053724500868},
        {'train/acc/ntp': 0.05555555555555555, 'train/grad_norm': 2.0070598125457764, 'train/loss': 4.101993136935764,
         'train/loss/ntp': 4.101993136935764},
        {'train/acc/ntp': 0.0, 'train/grad_norm': 2.7462010383605957, 'train/loss': 4.116786956787109,
         'train/loss/ntp': 4.116786956787109},
    ],
    'mutor': [
        {'train/acc/h1': 0.0, 'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/h4': 0.25, 'train/acc/ntp': 0.0,
         'train/acc/reg': 0.08333333333333333, 'train/grad_norm': 2.291922092437744, 'train/loss': 4.117173057132296,
         'train/loss/h1': 4.064888954162598, 'train/loss/h2': 4.147974014282227, 'train/loss/h3': 4.042901992797852,
         'train/loss/h4': 4.094919204711914, 'train/loss/ntp': 4.128744337293837,
         'train/loss/reg': 4.090173403422038},
        {'train/acc/h1': 0.0, 'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/h4': 0.0, 'train/acc/ntp': 0.0,
         'train/acc/reg': 0.0, 'train/grad_norm': 1.8160947561264038, 'train/loss': 4.1162023756239146,
         'train/loss/h1': 4.174463748931885, 'train/loss/h2': 4.03645133972168, 'train/loss/h3': 4.125213623046875,
         'train/loss/h4': 0.0, 'train/loss/ntp': 4.117550743950738, 'train/loss/reg': 4.113056182861328},
        {'train/acc/h1': 0.0, 'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/h4': 0.0, 'train/acc/ntp': 0.0,
         'train/acc/reg': 0.0, 'train/grad_norm': 2.429525375366211, 'train/loss': 4.1747473928663466,
         'train/loss/h1': 4.131372451782227, 'train/loss/h2': 4.148669719696045, 'train/loss/h3': 0.0,
         'train/loss/h4': 4.245768070220947, 'train/loss/ntp': 4.174523247612847,
         'train/loss/reg': 4.175270398457845},
    ],
    'mutor-bidirectional': [
        {'train/acc/h1': 0.0, 'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/h4': 0.25, 'train/acc/ntp': 0.0,
         'train/acc/reg': 0.08333333333333333, 'train/grad_norm': 2.2666170597076416, 'train/loss': 4.119615607791476,
         'train/loss/h1': 4.076391220092773, 'train/loss/h2': 4.157849629720052, 'train/loss/h3': 4.038712501525879,
         'train/loss/h4': 4.09677791595459, 'train/loss/ntp': 4.13053724500868, 'train/loss/reg': 4.094131787618001},
        {'train/acc/h1': 0.0, 'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/h4': 0.0, 'train/acc/ntp': 0.0,
         'train/acc/reg': 0.0, 'train/grad_norm': 1.8238579034805298, 'train/loss': 4.105027383005517,
         'train/loss/h1': 4.159013271331787, 'train/loss/h2': 4.007930755615234, 'train/loss/h3': 4.113515472412109,
         'train/loss/h4': 0.0, 'train/loss/ntp': 4.109313117133246, 'train/loss/reg': 4.095027336707482},
        {'train/acc/h1': 0.0, 'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/h4': 0.0, 'train/acc/ntp': 0.0,
         'train/acc/reg': 0.0, 'train/grad_norm': 2.7941417694091797, 'train/loss': 4.170302952660455,
         'train/loss/h1': 4.153375148773193, 'train/loss/h2': 4.1765971183776855, 'train/loss/h3': 0.0,
         'train/loss/h4': 4.203394412994385, 'train/loss/ntp': 4.1670947604709205,
         'train/loss/reg': 4.177788734436035},
    ],
    'mutor-sparse': [
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/ntp': 0.0, 'train/acc/reg': 0.0,
         'train/grad_norm': 3.0449681282043457, 'train/loss': 4.12624512929765, 'train/loss/h2': 4.084851264953613,
         'train/loss/h3': 4.147085189819336, 'train/loss/ntp': 4.128744337293837,
         'train/loss/reg': 4.120413643973214},
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/ntp': 0.0, 'train/acc/reg': 0.0,
         'train/grad_norm': 1.9686874151229858, 'train/loss': 4.1261954776824465, 'train/loss/h2': 4.211779022216797,
         'train/loss/h3': 4.091168403625488, 'train/loss/ntp': 4.104285346137153,
         'train/loss/reg': 4.1773191179547995},
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/ntp': 0.0, 'train/acc/reg': 0.0,
         'train/grad_norm': 2.3471786975860596, 'train/loss': 4.139556079440647, 'train/loss/h2': 4.107297897338867,
         'train/loss/h3': 4.091628074645996, 'train/loss/ntp': 4.157858106825087,
         'train/loss/reg': 4.096851348876953},
    ],
    'mtp_heads': [
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.058823529411764705, 'train/acc/ntp': 0.0,
         'train/grad_norm': 1.6287367343902588, 'train/loss': 4.122861059350905, 'train/loss/h2': 4.116884019639757,
         'train/loss/h3': 4.101384779986213, 'train/loss/ntp': 4.128743913438585},
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/ntp': 0.0, 'train/grad_norm': 1.728371500968933,
         'train/loss': 4.115256166146471, 'train/loss/h2': 4.12906731499566, 'train/loss/h3': 4.128566068761489,
         'train/loss/ntp': 4.109444512261285},
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/ntp': 0.0, 'train/grad_norm': 2.7689192295074463,
         'train/loss': 4.127383537541807, 'train/loss/h2': 4.17718505859375, 'train/loss/h3': 4.087894215303309,
         'train/loss/ntp': 4.125173780653212},
    ],
    'mtp_heads-bidirectional': [
        {'train/acc/h2': 0.0, 'train/acc/ntp': 0.0, 'train/grad_norm': 1.9070136547088623,
         'train/loss': 4.129289245605468, 'train/loss/h2': 4.118049621582031, 'train/loss/ntp': 4.130538092719184},
        {'train/acc/h2': 0.0, 'train/acc/ntp': 0.0, 'train/grad_norm': 1.933678150177002,
         'train/loss': 4.112249204847547, 'train/loss/h2': 4.146009657118055, 'train/loss/ntp': 4.108498043484158},
        {'train/acc/h2': 0.0, 'train/acc/ntp': 0.0, 'train/grad_norm': 2.7215895652770996,
         'train/loss': 4.126718775431315, 'train/loss/h2': 4.14437739054362, 'train/loss/ntp': 4.124756707085504},
    ],
    'deepseek_mtp': [
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.058823529411764705, 'train/acc/ntp': 0.0,
         'train/grad_norm': 2.15453839302063, 'train/loss': 5.35270800621681, 'train/loss/h2': 4.084690517849392,
         'train/loss/h3': 4.075070100672105, 'train/loss/ntp': 4.128743913438585},
        {'train/acc/h2': 0.05555555555555555, 'train/acc/h3': 0.0, 'train/acc/ntp': 0.0,
         'train/grad_norm': 2.109299898147583, 'train/loss': 5.3419679429796005, 'train/loss/h2': 4.0765270657009545,
         'train/loss/h3': 4.184761047363281, 'train/loss/ntp': 4.102774726019965},
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.058823529411764705, 'train/acc/ntp': 0.0,
         'train/grad_norm': 2.498490333557129, 'train/loss': 5.375517731710198, 'train/loss/h2': 4.0829272800021705,
         'train/loss/h3': 4.124686297248392, 'train/loss/ntp': 4.144375695122613},
    ],
    'deepseek_mtp-bidirectional': [
        {'train/acc/h2': 0.0, 'train/acc/ntp': 0.0, 'train/grad_norm': 2.183223247528076,
         'train/loss': 5.3555382198757595, 'train/loss/h2': 4.083333757188585, 'train/loss/ntp': 4.130538092719184},
        {'train/acc/h2': 0.0, 'train/acc/ntp': 0.0, 'train/grad_norm': 2.1998984813690186,
         'train/loss': 5.329878489176432, 'train/loss/h2': 4.076101515028212, 'train/loss/ntp': 4.107048034667969},
        {'train/acc/h2': 0.05555555555555555, 'train/acc/ntp': 0.0, 'train/grad_norm': 2.683727979660034,
         'train/loss': 5.360315916273329, 'train/loss/h2': 4.07174555460612, 'train/loss/ntp': 4.138792249891493},
    ],
    'medusa-1': [
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.058823529411764705, 'train/acc/ntp': 0.0,
         'train/grad_norm': 1.695214033126831, 'train/loss': 7.397991843628727, 'train/loss/h2': 4.116884019639757,
         'train/loss/h3': 4.101384779986213, 'train/loss/ntp': 4.128743913438585},
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/ntp': 0.05555555555555555,
         'train/grad_norm': 1.7217267751693726, 'train/loss': 7.467315025578917, 'train/loss/h2': 4.154323154025608,
         'train/loss/h3': 4.141239839441636, 'train/loss/ntp': 4.097050560845269},
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/ntp': 0.0, 'train/grad_norm': 1.7335150241851807,
         'train/loss': 7.4509516198650685, 'train/loss/h2': 4.141851637098524, 'train/loss/h3': 4.13637497845818,
         'train/loss/ntp': 4.113402896457249},
    ],
    'medusa-2': [
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.058823529411764705, 'train/acc/ntp': 0.0,
         'train/grad_norm': 2.2999966144561768, 'train/loss': 5.6083422821643305, 'train/loss/h2': 4.116884019639757,
         'train/loss/h3': 4.101384779986213, 'train/loss/ntp': 4.128743913438585},
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.0, 'train/acc/ntp': 0.0, 'train/grad_norm': 2.1961138248443604,
         'train/loss': 5.5940513431324685, 'train/loss/h2': 4.14372083875868, 'train/loss/h3': 4.136438257553998,
         'train/loss/ntp': 4.103477054172092},
        {'train/acc/h2': 0.0, 'train/acc/h3': 0.058823529411764705, 'train/acc/ntp': 0.0,
         'train/grad_norm': 3.6816139221191406, 'train/loss': 5.620637278837316, 'train/loss/h2': 4.1764882405598955,
         'train/loss/h3': 4.120224447811351, 'train/loss/ntp': 4.1261037190755205},
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_first_steps_match_the_recorded_losses(case: str) -> None:
    measured = train_three_steps(case)
    expected = GOLDEN[case]
    assert len(measured) == len(expected) == STEPS
    for step, (got, want) in enumerate(zip(measured, expected)):
        assert sorted(got) == sorted(want), f"step {step + 1}: metric names changed"
        for name, value in want.items():
            # Accuracies are counts over targets (exact); losses 1e-5 relative; the gradient norm is a sum of
            # squares over every parameter, more sensitive to summation order.
            rel = 1e-4 if name == "train/grad_norm" else 1e-5
            assert got[name] == pytest.approx(value, rel=rel, abs=1e-7), f"{case}, step {step + 1}: {name}"


if __name__ == "__main__":
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print("GOLDEN: dict[str, list[dict[str, float]]] = {")
    for name in CASES:
        rows = train_three_steps(name)
        print(f"    {name!r}: [")
        for row in rows:
            print("        {" + ", ".join(f"{k!r}: {v!r}" for k, v in sorted(row.items())) + "},")
        print("    ],")
    print("}")
