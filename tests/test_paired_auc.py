"""scripts/paired_auc.py: pooling bench_reference.py runs seed by seed, and refusing what must not be pooled."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = {"mind": "/data/synth", "auc_epochs": 1, "auc_steps": 0, "auc_split": "test", "lr": 0.001,
            "weight_decay": 0.0, "bf16": "off", "batch_size": 64, "out": "lane-A", "auc_first_seed": 1,
            "auc_seeds": 1, "models": "bst", "threads": 1, "rounds": 0, "seconds": 15.0, "warmup": 3}


def _load():
    spec = importlib.util.spec_from_file_location("_paired_auc", ROOT / "scripts" / "paired_auc.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _write(path: Path, seeds: list[int], ours: list[float], reference: list[float], model: str = "bst",
           **settings) -> Path:
    row = {"model": model, "sides": ["ours", "reference"], "auc_seeds": seeds, "ours_aucs": ours,
           "reference_aucs": reference}
    path.write_text(json.dumps({"settings": SETTINGS | settings, "rows": [row]}))
    return path


def test_seeds_from_lanes_pool_in_seed_order_into_the_declared_verdict(tmp_path, capsys):
    check = _load()
    # differences +0.002, -0.001, +0.001, 0.000: mean +0.0005, tight: non-inferior at 0.01, 0 inside the 95 % CI
    a = _write(tmp_path / "a.json", [3, 1], [0.553, 0.552], [0.552, 0.550], out="lane-A", auc_first_seed=3)
    b = _write(tmp_path / "b.json", [2, 4], [0.549, 0.560], [0.550, 0.560], out="lane-B", threads=2)
    out = tmp_path / "paired.json"
    assert check.main([str(a), str(b), "--out", str(out)]) == 0
    (model,) = json.loads(out.read_text())["models"]
    assert model["seeds"] == [1, 2, 3, 4]
    assert [p["first"] - p["second"] for p in model["per_seed"]] == pytest.approx([0.002, -0.001, 0.001, 0.0])
    assert model["difference"]["mean"] == pytest.approx(0.0005) and model["difference"]["n"] == 4
    assert model["verdict"] == "non-inferior"
    assert model["protocol"]["auc_epochs"] == 1 and "out" not in model["protocol"]
    printed = capsys.readouterr().out
    assert "BST: n 4, ours " in printed and "ours lower in 1 of 4: non-inferior at margin 0.01" in printed
    assert "test split after 1 full epoch(s), data /data/synth" in printed


def test_a_declared_margin_changes_the_verdict_not_the_interval(tmp_path):
    check = _load()
    a = _write(tmp_path / "a.json", [1, 2, 3, 4], [0.55, 0.56, 0.54, 0.55], [0.55, 0.54, 0.56, 0.545])
    loose, tight = (check.read_runs([a])["bst"] for _ in range(2))
    wide = check.compare("bst", loose.sides, loose.pairs, 0.05)
    narrow = check.compare("bst", tight.sides, tight.pairs, 0.001)
    assert wide.difference.ci90 == narrow.difference.ci90
    assert (wide.verdict, narrow.verdict) == ("non-inferior", "inconclusive")


@pytest.mark.parametrize(("second", "message"), [
    ({"seeds": [1], "lr": 0.01}, "b.json: bst trained another way than in "),
    ({"seeds": [1], "auc_epochs": 3}, "(auc_epochs differ); pool only runs of one protocol"),
    ({"seeds": [2]}, "b.json: seed 2 of bst is in another file too; pass each seed's run once"),
])
def test_runs_of_another_protocol_or_a_repeated_seed_are_refused_in_one_line(tmp_path, capsys, second, message):
    check = _load()
    a = _write(tmp_path / "a.json", [2, 3], [0.55, 0.56], [0.55, 0.55])
    seeds = second.pop("seeds")
    b = _write(tmp_path / "b.json", seeds, [0.5] * len(seeds), [0.5] * len(seeds), **second)
    assert check.main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("paired_auc: ") and err.count("\n") == 1


def test_another_models_protocol_does_not_matter(tmp_path):
    """Each model is pooled on its own: DIN after 3 epochs beside BST after 1 is two comparisons."""
    check = _load()
    bst = _write(tmp_path / "bst.json", [1, 2], [0.55, 0.56], [0.55, 0.55])
    din = _write(tmp_path / "din.json", [1, 2], [0.62, 0.63], [0.62, 0.61], model="din", auc_epochs=3)
    runs = check.read_runs([bst, din])
    assert list(runs) == ["bst", "din"] and runs["din"].protocol["auc_epochs"] == 3


def test_files_that_are_not_auc_runs_are_refused_in_one_line(tmp_path, capsys):
    check = _load()
    missing = tmp_path / "missing.json"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    throughput_only = tmp_path / "rounds.json"
    throughput_only.write_text(json.dumps({"settings": SETTINGS, "rows": [
        {"model": "nrms", "sides": ["ours", "reference"], "ratios": [6.5]}]}))
    for path, message in ((missing, "cannot read it"), (broken, "not a bench_reference.py result"),
                          (throughput_only, "model nrms has no AUC for both sides")):
        assert check.main([str(path)]) == 2
        err = capsys.readouterr().err
        assert f"paired_auc: {path}: {message}" in err and err.count("\n") == 1


def test_one_seed_is_reported_without_a_verdict(tmp_path, capsys):
    check = _load()
    assert check.main([str(_write(tmp_path / "a.json", [1], [0.55], [0.54]))]) == 0
    assert "BST: n 1, ours 0.5500, reference 0.5400: too few seeds" in capsys.readouterr().out
