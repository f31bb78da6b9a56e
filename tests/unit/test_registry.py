"""Plugins: an out-of-tree method (the docs' own example, docs/methods.md) is found through its entry point and trains; an
unknown name lists what is installed; the built-in scorers load by name and refuse unknown settings."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from helpers import REPO, make_batch, make_model, random_pairs
from mtp_bench import registry
from mtp_bench.api import MethodContext
from mtp_bench.scorers.exact_match import AnswerExactMatch
from mtp_bench.scorers.gsm8k import GSM8KExactMatch
from mtp_bench.scorers.star_graph import StarGraphScorer


def _documented_example() -> str:
    text = (REPO / "docs" / "methods.md").read_text()
    section = text[text.index("## Writing a method") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def out_of_tree_plugin(tmp_path, monkeypatch):
    """Install the docs' example as a distribution on sys.path (module + dist-info with an entry point)."""
    site = tmp_path / "site"
    (site / "my_mtp-0.1.dist-info").mkdir(parents=True)
    (site / "my_mtp.py").write_text(_documented_example())
    (site / "my_mtp-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: my-mtp\nVersion: 0.1\n")
    (site / "my_mtp-0.1.dist-info" / "entry_points.txt").write_text('[mtp_bench.methods]\nskip_one = my_mtp:SkipOne\n')
    monkeypatch.syspath_prepend(str(site))
    registry._entry_points.cache_clear()
    registry.load.cache_clear()
    yield
    registry._entry_points.cache_clear()
    registry.load.cache_clear()
    sys.modules.pop("my_mtp", None)


def test_documented_out_of_tree_method_is_found_and_trains(out_of_tree_plugin) -> None:
    info = {i.name: i for i in registry.available(registry.METHODS)}
    assert info["skip_one"].distribution == "my-mtp" and info["ntp"].distribution == "mtp-bench"
    cls = registry.load(registry.METHODS, "skip_one")
    method = cls(cls.Params(weight=0.5), MethodContext(train_mode="full"))
    model = make_model("llama")
    batch = method.transform(make_batch(random_pairs(0, [(3, 5), (2, 4)])), torch.Generator())
    out = method.loss(model, None, batch)
    assert set(out.sums) == {"loss/ntp", "loss/h2"} and int(batch.counts["loss/h2"]) == 5 + 4  # every answer token, seen from 2 back
    assert method.loss_weights() == {"loss/ntp": 1.0, "loss/h2": 0.5}  # the objective, as the method declares it
    out.sums["loss/h2"].backward()
    assert model.lm_head.weight.grad is not None


def test_unknown_method_lists_what_is_installed() -> None:
    with pytest.raises(registry.PluginError) as error:
        registry.load(registry.METHODS, "nttp")
    message = str(error.value)
    assert "unknown method 'nttp' (did you mean 'ntp'?)" in message and "installed methods: " in message


def test_scorers_are_registered_plugins() -> None:
    assert registry.load(registry.SCORERS, "star_graph") is StarGraphScorer
    assert registry.load(registry.SCORERS, "gsm8k") is GSM8KExactMatch
    for cls in (StarGraphScorer, GSM8KExactMatch, AnswerExactMatch):
        assert cls.main_metric in {"full_path_accuracy", "exact_match"}
        with pytest.raises(ValueError):
            cls.Params.model_validate({"no_such_setting": 1})
