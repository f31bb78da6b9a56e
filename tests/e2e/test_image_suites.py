"""The image suites: each validates (fast: no torch, scikit-learn, scipy or matplotlib imported), a missing codes
folder stops the paper suite before any trial, and one short end-to-end run of a tiny image suite trains NTP and
MuToR-2D, samples with guidance and logs the metrics, the per-sample rows and the PNG grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import REPO, heavy_imports, recorded_trials, write_codes
from mtp_bench import cli

IMAGE_SUITES = ["suites/image_digits.yaml", "suites/image_patterns.yaml"]


@pytest.mark.parametrize("path", IMAGE_SUITES)
def test_image_suite_validates_without_heavy_imports(path: str) -> None:
    heavy = ("torch", "sklearn", "scipy", "matplotlib", "mlflow", "transformers")
    code = ("import contextlib, io\nfrom mtp_bench import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert cli.main(['validate', {path!r}]) == 0")
    assert heavy_imports(code, heavy) == []


def test_paper_image_suite_needs_its_codes_folder(tmp_path, monkeypatch, capsys) -> None:
    suite = str(REPO / "suites" / "paper" / "imagenet_llamagen_b.yaml")
    monkeypatch.setenv("MTP_BENCH_IMAGENET_CODES", str(tmp_path / "missing"))
    assert cli.main(["validate", suite]) == 2
    assert "imagenet256_codes/ and imagenet256_labels/" in capsys.readouterr().err
    write_codes(tmp_path / "codes", side=16, codebook=16384, classes=1000, n=1003, size=256)
    monkeypatch.setenv("MTP_BENCH_IMAGENET_CODES", str(tmp_path / "codes"))
    assert cli.main(["validate", suite]) == 0
    assert "4 methods, 4 trials" in capsys.readouterr().out


@pytest.mark.slow
def test_tiny_image_suite_runs_end_to_end(tmp_path: Path, store: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the comparison is written under ./results
    methods = ("[{name: ntp}, {label: mutor_2d, name: mutor, params: {a: 0.3, layout: 2d, grid: [4, 4]}}]")
    overrides = ["grid.seeds=[0]", "model.preset=micro-llama", "train.max_steps=4", "train.batch_size=8",
                 "evaluation.every_steps=2", "data.validation_size=12", f"methods={methods}",
                 "data.params={size: 4, colours: 4, rules: [repeat_rows, mirror_columns], train_size: 60, "
                 "test_size: 12}",
                 "evaluation.scorers=[{name: image, params: {samples_per_class: 3, grids_per_class: 2}}]",
                 f"tracking.workdir={tmp_path / 'trials'}"]
    assert cli.main(["run", str(REPO / "suites" / "image_patterns.yaml"), "--no-ray", *overrides]) == 0
    client, trials = recorded_trials(store, "image_patterns")
    assert set(trials) == {"ntp", "mutor_2d"}
    for run in trials.values():
        assert run.info.status == "FINISHED"
        metrics = run.data.metrics
        for name in ("validity_rate", "class_consistency", "classifier_score", "distinct_rate"):
            assert 0.0 <= metrics[f"last/test/image/{name}"] <= 6.0, name
        assert metrics["last/test/image/classifier_frechet_distance"] >= 0.0
        assert "best/test/image/validity_rate" in metrics  # selected on the exact check, as the suite says
        png = client.download_artifacts(run.info.run_id, "predictions/last/test_image/samples.png", str(tmp_path))
        assert Path(png).read_bytes().startswith(b"\x89PNG")
        assert client.list_artifacts(run.info.run_id, "predictions/step2/val_image")  # per evaluation too
    assert "train/loss/reg" in trials["mutor_2d"].data.metrics
    rows = client.download_artifacts(trials["ntp"].info.run_id, "predictions/last/test_image.jsonl", str(tmp_path))
    samples = [json.loads(line) for line in Path(rows).read_text().splitlines()]
    assert [s["class"] for s in samples] == [0, 0, 0, 1, 1, 1] and all(len(s["codes"]) == 16 for s in samples)
    assert (tmp_path / "results" / "image_patterns" / "compare.md").is_file()
