"""Bad suites and overrides, as a new user would give them: every case goes through the real command line and must
exit 2 within seconds, print at most five lines (one naming the key path or file:line), no traceback, and leave no
MLflow store, no run and no trial folder behind. Most cases run ``cli.main`` in this process; a few run the command in
a subprocess to prove the exit code and the absence of a traceback end to end. Bad data files and resources:
``test_bad_data_and_resources.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import bomb, cuda_devices, refused
from mtp_bench import cli
from mtp_bench.suite.document import MAX_SUITE_BYTES


def test_the_base_suite_is_valid(suite_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(suite_file)]) == 0, capsys.readouterr().err


# ------------------------------------------------------------------------------------ values (as overrides) ----
# (override, what the message must contain: the key path, and a word of the reason)
BAD_VALUES = [
    ("train.lr=.inf", "train.lr: Input should be a finite number"),
    ("train.lr=inf", "train.lr: Input should be a finite number"),
    ("train.lr=.nan", "train.lr: Input should be a finite number"),
    ("train.lr=-1e-3", "train.lr: Input should be greater than 0"),
    ("train.lr=0", "train.lr: Input should be greater than 0"),
    ("train.lr=fast", "train.lr: Input should be a valid number"),
    ("train.max_steps=true", "train.max_steps: expected a number, got true"),
    ("train.max_steps=0", "train.max_steps: Input should be greater than or equal to 1"),
    ("train.max_steps=-5", "train.max_steps"),
    ("train.max_steps=1.5", "train.max_steps: Input should be a valid integer"),
    ("train.max_steps=[1]", "train.max_steps: Input should be a valid integer"),
    ("train.max_steps={a: 1}", "train.max_steps: Input should be a valid integer"),
    ("train.batch_size=false", "train.batch_size: Input should be greater than or equal to 1 (got False)"),
    ("train.batch_size=ten", "train.batch_size: Input should be a valid integer"),
    ("train.warmup_ratio=2", "train.warmup_ratio: Input should be less than or equal to 1"),
    ("train.clip_grad_norm=.inf", "train.clip_grad_norm: Input should be a finite number"),
    ("train.betas=[0.9]", "train.betas"),
    ("train.betas=[0.9, .nan]", "train.betas.1: Input should be a finite number"),
    ("train.mode=finetune", "train.mode: Input should be 'full', 'lora' or 'pretrain'"),
    ("train.precision=fp8", "train.precision"),
    ("train.lrr=0.1", "train.lrr: unknown key"),
    ("train.lora.dropout=1", "train.lora.dropout"),
    ("model.preset=huge-llama", "model.preset: unknown preset 'huge-llama'"),
    ("model.preset=null", "model: set exactly one of model.preset and model.pretrained"),
    ("model.dtype=float8", "model.dtype"),
    ("model.tokenizer_vocab_size=true", "model.tokenizer_vocab_size: Input should be greater than or equal to 16"),
    ("methods.0.name=mutr", "methods.0.name: unknown method 'mutr' (did you mean 'mutor'?)"),
    ("methods.ntp.params.a=0.3", "methods.0.params.a: unknown key"),
    ("methods=[]", "methods: List should have at least 1 item"),
    ("methods=[{name: ntp}, {name: ntp}]", "methods: method labels must be unique"),
    ("methods=[{name: ntp}, {name: mutor, params: {d_max: true}}]",
     "methods.1.params.d_max: expected a number, got true"),
    ("methods=[{name: ntp}, {name: deepseek_mtp, params: {weight: .inf}}]",
     "methods.1.params.weight: must be a finite number"),
    ("methods=[{name: ntp}, {name: mutor, params: {d_min: 5, d_max: 2}}]",
     "methods.1.params: d_min (5) must not exceed d_max (2)"),
    ("methods.0.sweep={params.a: []}", "methods.0.sweep.params.a: needs at least one value"),
    ("baseline=mutor", "baseline: 'mutor' is not one of the suite's methods"),
    ("data.task=additon", "data.task: unknown task 'additon' (did you mean 'addition'?)"),
    ("data.params.digits=0", "data.params.digits"),
    ("data.params.digits=true", "data.params.digits: expected a number, got true"),
    ("data.params.train_size=.inf", "data.params.train_size"),
    ("data.validation_size=-1", "data.validation_size"),
    ("data.validation_size=500", "data.validation_size: 500 leaves no training examples"),
    ("data.train_limit=0", "data.train_limit"),
    ("evaluation.scorers.0.name=exact", "evaluation.scorers.0.name: unknown scorer 'exact'"),
    ("evaluation.scorers.0.params={k: 0}", "evaluation.scorers.0.params.k: unknown key"),
    ("evaluation.scorers=[{name: speculative, params: {k: true}}]",
     "evaluation.scorers.0.params.k: expected a number, got true"),
    ("evaluation.max_new_tokens=0", "evaluation.max_new_tokens"),
    ("evaluation.select_on=best", "evaluation.select_on"),
    ("grid.seeds=[]", "grid.seeds: List should have at least 1 item"),
    ("grid.seeds=[a]", "grid.seeds.0: Input should be a valid integer"),
    ("grid.seeds=true", "grid.seeds: Input should be a valid list"),
    ("grid.overrides={train.lr: []}", "grid.overrides.train.lr: needs at least one value"),
    ("grid.overrides={train.lr: [.inf]}", "grid.overrides.train.lr.0: must be a finite number"),
    ("grid.overrides={train.max_steps: [true]}", "grid.overrides.train.max_steps: expected a number, got true"),
    ("grid.overrides={methods.0.name: [mutor]}", "grid.overrides.methods.0.name: use methods[].sweep"),
    ("grid.seeds=[" + ",".join(map(str, range(20_000))) + "]", "grid: 20,000 trials"),
    ("grid.overrides={train.lr: [" + ",".join(f"{i + 1}.0e-5" for i in range(101)) + "], train.batch_size: ["
     + ",".join(map(str, range(1, 101))) + "]}", "grid: 10,100 trials"),
    ("tracking.uri=ftp://example.com/store", "tracking.uri: unsupported scheme 'ftp'"),
    ("tracking.uri=mlruns", "tracking.uri: 'mlruns' is a file store"),
    ("tracking.uri=file:///tmp/mlruns", "tracking.uri: 'file:///tmp/mlruns' is a file store"),
    ("tracking.uri=sqlite:/store.db", "tracking.uri: 'sqlite:/store.db': a SQLite URI is sqlite:///"),
    ("tracking.uri=''", "tracking.uri: empty"),
    ("tracking.uri=sqlite:////tmp", "tracking.uri: 'sqlite:////tmp': /tmp is a directory"),
    ("resources.cpus_per_trial=0", "resources.cpus_per_trial"),
    ("resources.gpus_per_trial=-1", "resources.gpus_per_trial"),
    ("resources.num_workers=0", "resources.num_workers"),
    ("resources.num_workers=true", "resources.num_workers: expected a number, got true"),
    ("resources.strategy=zero", "resources.strategy"),
    ("name='bad name!'", "name: String should match pattern"),
    ("bidirectional_prompt=maybe", "bidirectional_prompt: Input should be a valid boolean"),
    ("model.config_overrides={rope_theta: .inf}", "model.config_overrides.rope_theta: must be a finite number"),
    ("surprise=1", "surprise: unknown key"),
    # the override itself
    ("train..lr=1", "override 'train..lr=1': bad key path 'train..lr'"),
    ("=3", "override '=3': bad key path ''"),
    ("train.lr", "override 'train.lr': expected key.path=value"),
    ("methods.nosuch.params.a=1", "override 'methods.nosuch.params.a=1': methods.nosuch: no list item named 'nosuch'"),
    ("methods.7.name=ntp", "override 'methods.7.name=ntp': methods.7: index 7 out of range (1 items)"),
    ("train.lr.x=1", "override 'train.lr.x=1': train.lr.x: cannot set a key inside a float"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES, ids=[o[:40] for o, _ in BAD_VALUES])
def test_bad_value_is_refused(suite_file, tmp_path, capsys, override, message) -> None:
    refused(["validate", str(suite_file), override], capsys, tmp_path, f"mtp-bench: error: {suite_file}: {message}")


def test_tracking_uri_from_the_environment_is_checked_too(suite_file, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "gopher://tracking")
    refused(["validate", str(suite_file)], capsys, tmp_path, "tracking.uri (from MLFLOW_TRACKING_URI): unsupported")


# --------------------------------------------------------------------------------------------- suite files ----
# (file content as bytes, given the valid suite's text; what the message must contain: {path} is the file, {end}
# the line after the valid suite's last, {steps} the line of train.max_steps)
BAD_FILES = [
    ("latin-1 comment", lambda s: ("# caf\xe9\n" + s).encode("latin-1"), "{path}:1: not UTF-8 text: byte 0xe9"),
    ("latin-1 value", lambda s: s.replace("bad_input", "bad_\xefnput").encode("latin-1"),
     "{path}:1: not UTF-8 text: byte 0xef"),
    ("utf-16", lambda s: s.encode("utf-16"), "(it looks like UTF-16)"),
    ("binary", lambda s: bytes(range(256)) * 4, "{path}:2: not UTF-8 text: byte 0x80"),
    ("NUL byte", lambda s: s.encode() + b"\x00\n", "{path}:{end}: not valid YAML: control character U+0000"),
    ("empty", lambda s: b"", "{path}: must hold a mapping"),
    ("only comments", lambda s: b"# nothing here\n", "{path}: must hold a mapping"),
    ("a list", lambda s: b"- name: x\n", "{path}: must hold a mapping"),
    ("a scalar", lambda s: b"just words\n", "{path}: must hold a mapping"),
    ("alias bomb", lambda s: bomb().encode(), "{path}: more than 100,000 values once YAML aliases are expanded"),
    ("alias bomb of long strings", lambda s: ("a: &a '" + "x" * 900_000 + "'\nb: [" + ", ".join(["*a"] * 10)
                                               + "]\n").encode(), "{path}: more than 4,000,000 characters"),
    ("recursive alias", lambda s: b"a: &x [1, *x]\n", "{path}:1: a.1: a YAML alias refers to a node that contains it"),
    ("deep nesting", lambda s: b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "{path}: nested too deeply"),
    ("oversized", lambda s: s.encode() + b"#" * (MAX_SUITE_BYTES + 10) + b"\n",
     "{path}: 1.0 MB; suite files are limited to"),
    ("duplicate top-level key", lambda s: (s + "name: again\n").encode(),
     "{path}:{end}: name: duplicate key (first at line 1)"),
    ("duplicate nested key", lambda s: s.replace("  max_steps: 2\n", "  max_steps: 40\n  max_steps: 7\n").encode(),
     "{path}:{steps_next}: train.max_steps: duplicate key (first at line {steps})"),
    ("5000 unknown keys", lambda s: (s + "".join(f"junk{i}: {i}\n" for i in range(5000))).encode(),
     "error: ... and 4996 more problems"),
    ("syntax error", lambda s: (s + "train: [unclosed\n").encode(), "{path}:{end_next}: not valid YAML (column 1)"),
    ("two documents", lambda s: (s + "---\nname: other\n").encode(),
     "{path}:{end}: not valid YAML (column 1): but found another document"),
    ("tab indentation", lambda s: b"name: x\ntrain:\n\tlr: 1\n", "{path}:3: not valid YAML (column 1)"),
    ("impossible date", lambda s: s.replace("name: bad_input", "name: 2024-02-30").encode(),
     "{path}:1: a value cannot be read: day is out of range"),
    ("5000-digit integer", lambda s: s.replace("max_steps: 2", "max_steps: " + "9" * 5000).encode(),
     "{path}:{steps}: a value cannot be read: Exceeds the limit"),
    ("unset variable", lambda s: s.replace("bad_input", "${MTP_BENCH_SURELY_UNSET}").encode(),
     "{path}: name: environment variable MTP_BENCH_SURELY_UNSET is not set"),
]


@pytest.mark.parametrize(("content", "message"), [(c, m) for _, c, m in BAD_FILES], ids=[n for n, _, _ in BAD_FILES])
def test_bad_suite_file_is_refused(suite_file, tmp_path, capsys, content, message) -> None:
    text = suite_file.read_text()
    end, steps = len(text.splitlines()) + 1, text.splitlines().index("  max_steps: 2") + 1
    suite_file.write_bytes(content(text))
    expected = message.format(path=suite_file, end=end, end_next=end + 1, steps=steps, steps_next=steps + 1)
    refused(["validate", str(suite_file)], capsys, tmp_path, expected)


def test_duplicate_keys_name_both_lines(suite_file, tmp_path, capsys) -> None:
    text = suite_file.read_text()
    lines = text.splitlines()
    first = lines.index("  max_steps: 2") + 1
    suite_file.write_text(text.replace("  max_steps: 2\n", "  max_steps: 40\n  max_steps: 7\n"))
    refused(["validate", str(suite_file)], capsys, tmp_path,
            f"{suite_file}:{first + 1}: train.max_steps: duplicate key (first at line {first})")


def test_suite_path_that_is_not_a_file(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    refused(["validate", str(tmp_path)], capsys, tmp_path, f"{tmp_path}: not a regular file")
    refused(["validate", "nowhere/suite.yaml"], capsys, tmp_path, "nowhere/suite.yaml: no such file (resolved:")


def test_override_alias_bomb_is_refused(suite_file, tmp_path, capsys) -> None:
    mapping = "{" + bomb().strip().replace("\n", ", ") + "}"
    refused(["validate", str(suite_file), f"model.config_overrides={mapping}"], capsys, tmp_path,
            "override model.config_overrides: more than 100,000 values once YAML aliases are expanded")


def test_error_lines_are_capped(suite_file, tmp_path, capsys) -> None:
    overrides = [f"train.junk{i}=1" for i in range(7)]
    err = refused(["validate", str(suite_file), *overrides], capsys, tmp_path, "train.junk0: unknown key")
    assert err.strip().splitlines()[-1] == "mtp-bench: error: ... and 3 more problems"




# --------------------------------------------------------------------------------- the installed command ----
SUBPROCESS_CASES = [
    (["train.lr=.inf"], "train.lr: Input should be a finite number"),
    (["train.max_steps=true"], "train.max_steps: expected a number, got true"),
    (["resources.gpus_per_trial=1"], "resources.gpus_per_trial"),
]


@pytest.mark.parametrize(("overrides", "message"), SUBPROCESS_CASES, ids=[m[:30] for _, m in SUBPROCESS_CASES])
def test_run_in_a_subprocess_exits_2_without_traceback(suite_file, tmp_path, overrides, message) -> None:
    if "gpus" in message and cuda_devices():
        pytest.skip("this machine has CUDA")
    result = subprocess.run([sys.executable, "-m", "mtp_bench.cli", "run", str(suite_file), *overrides, "--no-ray"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 5 and "Traceback" not in result.stderr and message in result.stderr, result.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "trials").exists()


def test_alias_bomb_and_binary_file_in_a_subprocess(suite_file, tmp_path) -> None:
    for content, message in ((bomb(12).encode(), "aliases are expanded"), (b"\xff\xfe\x00\x01" * 64, "UTF-16")):
        suite_file.write_bytes(content)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "mtp_bench.cli", "run", str(suite_file)],
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert time.monotonic() - started < 30
        assert result.returncode == 2 and "Traceback" not in result.stderr and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) <= 5
