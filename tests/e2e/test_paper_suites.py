"""The paper suites and their CPU twins: every suite under suites/paper/ validates without reaching the hub, every
twin validates, and the AQuA-RAT twin runs end to end through the CLI (train NTP and MuToR, generate, score letters,
compare) on a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from helpers import REPO, make_suite, recorded_trials, shared_data, write_codes, write_suite
from mtp_bench import cli

TWINS = {"aqua_tiny": ("aqua", "MTP_BENCH_AQUA_DIR"), "dialogsum_tiny": ("dialogsum", "MTP_BENCH_DIALOGSUM_DIR")}


@pytest.mark.parametrize("suite", sorted(TWINS))
def test_twin_validates(suite: str, monkeypatch, capsys) -> None:
    folder, variable = TWINS[suite]
    monkeypatch.setenv(variable, str(shared_data(folder)))
    assert cli.main(["validate", str(REPO / "suites" / f"{suite}.yaml")]) == 0
    assert "6 trials" in capsys.readouterr().out


def test_twin_with_a_malformed_local_file_fails_validation_naming_file_and_line(tmp_path: Path, monkeypatch,
                                                                               capsys) -> None:
    source = shared_data("aqua")
    good = (source / "dev.json").read_text().splitlines()[0]
    (tmp_path / "dev.json").write_text(good + "\n" + good[:40] + "\n")
    (tmp_path / "test.json").write_text((source / "test.json").read_text())
    monkeypatch.setenv("MTP_BENCH_AQUA_DIR", str(tmp_path))
    assert cli.main(["validate", str(REPO / "suites" / "aqua_tiny.yaml")]) == 2
    assert f"{tmp_path / 'dev.json'}:2: not valid JSON" in capsys.readouterr().err


def test_own_validation_with_a_carved_size_fails_validation_at_its_key_path(monkeypatch, capsys) -> None:
    """``validation: own`` (the dataset's validation split) and ``data.validation_size`` exclude each other: validate
    names the key and exits 2 before any trial; with 0 the suite validates."""
    monkeypatch.setenv("MTP_BENCH_DIALOGSUM_DIR", str(shared_data("dialogsum")))
    path = str(REPO / "suites" / "dialogsum_tiny.yaml")
    own = ["data.params.train_file=dialogsum.test.jsonl", "data.params.validation=own"]  # dev validates, test trains
    assert cli.main(["validate", path, *own]) == 2
    assert "data.validation_size: 32, but data.params.validation is own" in capsys.readouterr().err
    assert cli.main(["validate", path, *own, "data.validation_size=0"]) == 0


PAPER_SUITES = sorted((REPO / "suites" / "paper").glob("*.yaml"))
# (methods, trials) of the suites that are not one Table 1/2 row (3 methods; 3 seeds on Gemma, 1 on Llama): the
# ablations, whose sweeps and method lists are the point of the file
ABLATIONS = {"gemma2b_t3_compute_matched": (1, 3), "gemma2b_t4_dmax": (3, 27), "gemma2b_t5_lora": (2, 6),
             "gemma2b_t6_registers": (3, 9), "gemma2b_t12_epochs10": (2, 6), "gemma2b_t12_epochs10_math": (2, 6),
             "gemma2b_t13_samsum_epochs5": (2, 6), "gemma2b_t13_dialogsum_epochs5": (2, 6),
             "llama3_8b_t14_epochs10": (2, 2), "gemma2b_t16_deepseek": (3, 9), "gemma2b_t16_deepseek_math": (3, 9),
             "gemma2b_t17_loss_weight": (2, 18)}

# the image suites (Section 4.2; their own protocol, see tests/e2e/test_image_suites.py): (methods, trials)
IMAGE_SUITES = {"imagenet_llamagen_b": (4, 4), "imagenet_llamagen_b_t9_dmax2d": (3, 3),
                "imagenet_llamagen_b_t15_ntp500k": (1, 1)}
TEXT_SUITES = [p for p in PAPER_SUITES if p.stem not in IMAGE_SUITES]


@pytest.mark.parametrize("path", PAPER_SUITES, ids=[p.stem for p in PAPER_SUITES])
def test_paper_suite_validates_offline(path: Path, monkeypatch, capsys, tmp_path) -> None:
    import datasets

    def no_hub(*args, **kwargs):
        raise AssertionError("validate must not reach the hub")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    if path.stem in IMAGE_SUITES:  # reads a folder of VQ codes (written here in LlamaGen's layout)
        write_codes(tmp_path, side=16, codebook=16384, classes=1000, n=1002, size=256)
        monkeypatch.setenv("MTP_BENCH_IMAGENET_CODES", str(tmp_path))
    assert cli.main(["validate", str(path)]) == 0
    methods, trials = {**ABLATIONS, **IMAGE_SUITES}.get(path.stem, (3, 3 if path.stem.startswith("llama3") else 9))
    assert f"{methods} methods, {trials} trials" in capsys.readouterr().out


# the override in docs/paper.md that moves an ablation from GSM8K to the paper's 1M-GSM data (its second column)
TO_1M_GSM = ["reference=null", "data={task: openmathinstruct2, validation_size: 0, params: {source: hub, split: train_1M, "
             "problem_sources: [gsm8k, augmented_gsm8k], test: gsm8k, test_params: {source: hub}}}",
             "evaluation.scorers=[{name: math}]"]


@pytest.mark.parametrize("stem", ["gemma2b_t4_dmax", "gemma2b_t5_lora", "gemma2b_t6_registers", "gemma2b_t12_epochs10",
                                  "gemma2b_t16_deepseek", "gemma2b_t17_loss_weight"])
def test_an_ablation_moves_to_1m_gsm_with_the_documented_override(stem: str, capsys) -> None:
    path = REPO / "suites" / "paper" / f"{stem}.yaml"
    assert cli.main(["validate", str(path), f"name=paper_{stem}_1m", *TO_1M_GSM]) == 0
    methods, trials = ABLATIONS[stem]
    assert f"'paper_{stem}_1m', {methods} methods, {trials} trials" in capsys.readouterr().out
    page = " ".join((REPO / "docs" / "paper.md").read_text().split())
    assert "name=paper_gemma2b_t4_dmax_1m reference=null" in page and "'evaluation.scorers=[{name: math}]'" in page


def paper_suite(stem: str) -> dict:
    return yaml.safe_load((REPO / "suites" / "paper" / f"{stem}.yaml").read_text())


def test_every_ablation_suite_ships_and_carries_the_paper_protocol() -> None:
    """The ablation list above is the set of files (a new or renamed one is counted), and each keeps the protocol
    knobs of the rows it varies: sequence-weighted loss, the paper's checkpoint choice (best epoch on test for maths,
    validation ROUGE-L for summarisation), the paper's seeds (3 for Gemma, 1 for Llama), a reference."""
    stems = {p.stem for p in PAPER_SUITES}
    assert set(ABLATIONS) <= stems
    for stem in ABLATIONS:
        suite = paper_suite(stem)
        summarisation = suite["data"]["task"] in ("samsum", "dialogsum")
        assert suite["train"]["loss_normalisation"] == "sequence", stem
        assert suite["evaluation"].get("select_on", "validation") == ("validation" if summarisation else "test"), stem
        assert suite["grid"]["seeds"] == ([42] if stem.startswith("llama3") else [42, 43, 44]), stem
        assert suite["reference"]["metrics"], stem


def test_table_3_trains_ntp_on_1m_gsm_extra_beside_table_1() -> None:
    """Table 3's NTP trains on 1M-GSM plus 2M-GSM rows (1.4x the samples, "1M-GSM-extra"), not on more epochs of
    1M-GSM: the Table 1 suite's data and training, with extra rows, in the same experiment so one compare holds both."""
    t3, table1 = paper_suite("gemma2b_t3_compute_matched"), paper_suite("gemma2b_gsm8k_1m")
    extra = t3["data"]["params"].pop("extra")
    assert extra == {"split": "train_2M", "size": 0.4, "seed": 0} and t3["data"] == table1["data"]
    assert t3["train"] == table1["train"] and t3["tracking"]["experiment"] == table1["name"]
    assert list(t3["reference"]["metrics"].values()) == [{"ntp_1.4x": 66.69}]


def test_the_paper_suites_use_the_papers_precision_initialisation_data_and_splits() -> None:
    """Pure bf16 in every text suite; heads trained from scratch; 1M-MATH as the paper's code samples it; AQuA,
    SAMSum and DialogSum selected on their own validation splits; the official summarisation prompt; DialogSum's
    reference read the paper's way (every test (dialogue, reference) pair)."""
    for path in TEXT_SUITES:
        suite = yaml.safe_load(path.read_text())
        assert suite["train"]["precision"] == "bf16-pure", path.stem
        for method in suite["methods"]:
            if method["name"] in ("mtp_heads", "deepseek_mtp"):
                assert method["params"]["init"] == "random", path.stem
        params = suite["data"]["params"]
        if params.get("problem_sources") == ["math", "augmented_math"]:
            assert (params["sample_size"], params["sample_seed"]) == (200000, 0), path.stem
        if suite["data"]["task"] in ("aqua_rat", "samsum", "dialogsum"):
            assert params["validation"] == "own" and suite["data"]["validation_size"] == 0, path.stem
        if suite["data"]["task"] in ("samsum", "dialogsum"):
            assert params["prompt"] == "official", path.stem
        if suite["data"]["task"] == "dialogsum":
            assert suite["evaluation"]["scorers"] == [{"name": "rouge", "params": {"per_reference": True}}]
            assert all(key.endswith("_per_reference") for key in suite["reference"]["metrics"]), path.stem
    for path in IMAGE_SUITES:  # LlamaGen trains under mixed precision: the image suites keep it
        assert paper_suite(path)["train"]["precision"] == "auto"


@pytest.mark.slow
def test_aqua_twin_runs_end_to_end(tmp_path: Path, store: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MTP_BENCH_AQUA_DIR", str(shared_data("aqua")))
    monkeypatch.chdir(tmp_path)  # the comparison is written under ./results
    # a micro model and two steps: this checks the pipeline (train, generate, score, compare), not the numbers
    overrides = ["grid.seeds=[0]", "model.preset=micro-llama", "model.tokenizer_vocab_size=300", "train.max_steps=2",
                 "train.batch_size=4", "evaluation.every_steps=2", "data.validation_size=4", "data.eval_limit=4",
                 "evaluation.max_new_tokens=12", "evaluation.lm_eval.limit=4",
                 f"tracking.workdir={tmp_path / 'trials'}"]
    assert cli.main(["run", str(REPO / "suites" / "aqua_tiny.yaml"), "--no-ray", *overrides]) == 0
    client, trials = recorded_trials(store, "aqua_tiny")
    assert set(trials) == {"ntp", "mutor"}
    for run in trials.values():
        assert run.info.status == "FINISHED"
        for name in ("best/test/multiple_choice/accuracy", "val/multiple_choice/accuracy",
                     "last/test/multiple_choice/accuracy_flexible"):
            assert 0.0 <= run.data.metrics[name] <= 1.0, name
    assert "train/loss/reg" in trials["mutor"].data.metrics
    rows = client.download_artifacts(trials["ntp"].info.run_id, "predictions/last/test_multiple_choice.jsonl",
                                     str(tmp_path))
    samples = [json.loads(line) for line in Path(rows).read_text().splitlines()]
    assert len(samples) == 4 and {s["gold"] for s in samples} <= set("ABCDE")
    assert {"completion", "prediction", "prediction_flexible", "correct", "scores"} <= set(samples[0])
    assert (tmp_path / "results" / "aqua_tiny" / "compare.md").is_file()


@pytest.mark.slow
def test_openmathinstruct2_pipeline_runs_end_to_end(tmp_path: Path, store: str, monkeypatch) -> None:
    """The 1M-GSM path on CPU: OpenMathInstruct-2-format training rows (written here from local GSM8K problems, with
    solutions ending in \\boxed{}), GSM8K as the test task, the math scorer reading the box inside a real trial."""
    gsm8k = shared_data("gsm8k")
    rows = [json.loads(line) for line in (gsm8k / "train.jsonl").read_text().splitlines()[:40]]
    omi = tmp_path / "omi"
    omi.mkdir()
    with (omi / "train_1M.jsonl").open("w") as handle:
        for index, row in enumerate(rows):
            work, gold = row["answer"].split("####")
            source = "gsm8k" if index % 2 else "math"  # half are filtered out
            solution = f"{work.strip()} \\boxed{{{gold.strip()}}}"
            handle.write(json.dumps({"problem": row["question"], "generated_solution": solution,
                                     "expected_answer": gold.strip(), "problem_source": source}) + "\n")
    suite = make_suite(tmp_path, name="omi_tiny",
                       data={"task": "openmathinstruct2", "validation_size": 4, "eval_limit": 4,
                             "params": {"source": "local", "path": str(omi), "problem_sources": ["gsm8k"],
                                        "test": "gsm8k", "test_params": {"source": "local", "path": str(gsm8k)}}},
                       train={"max_steps": 2, "lr": 1e-3, "batch_size": 4, "max_length": 1024, "progress": False},
                       evaluation={"scorers": [{"name": "math"}], "every_steps": 2, "max_new_tokens": 12})
    path = write_suite(tmp_path, suite, "omi_tiny.yaml")
    assert cli.main(["run", str(path), "--no-ray", "--no-compare"]) == 0
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("omi_tiny").experiment_id])
    trials = [r for r in runs if r.data.tags.get("mtp_bench.kind") == "trial"]
    assert len(trials) == 1
    for run in trials:
        metrics = run.data.metrics  # 20 rows have problem_source gsm8k; 4 of them are carved out for validation
        assert metrics["data/train_examples"] + metrics["data/dropped_overlength"] == 16
        assert 0.0 <= run.data.metrics["best/test/math/exact_match"] <= 1.0
        assert "last/test/math/boxed_rate" in run.data.metrics
