"""The benchmark scripts still run: each with its --smoke sizes, plus their pure summary logic.

The generation smoke run uses the transformers backend only (no vLLM engine start); the
embedded model is prepared once (tests/support_llm.py) and shared by the generation, resume and
DIRE runs.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support_llm import link_prepared_model, prepared_model

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A models folder holding the embedded model, prepared once (tests/support_llm.py)."""
    return link_prepared_model(tmp_path_factory.mktemp("bench-models"))


# -- pure logic --------------------------------------------------------------------------------


def _task(requests, valid, prompt, completion, engine, wall):
    return {"requests": requests, "valid": valid, "prompt_tokens": prompt, "completion_tokens": completion,
            "engine_seconds": engine, "wall_seconds": wall, "outside_seconds": wall - engine, "engine_calls": 1}


def test_generate_summary_ratios_and_goals():
    bench = _load("bench_generate")
    tasks_b = {t: _task(10, 10, 1000, 200, 10.0, 10.2) for t in bench.TASK_ORDER}
    tasks_a = {t: _task(10, 10, 1000, 200, 4.0, 4.1) for t in bench.TASK_ORDER}
    tasks_a["profile"] = _task(10, 9, 1000, 200, 6.0, 7.0)  # 1.67x only, and 14 % outside the engine
    summary = bench.summarize({"a": {"tasks": tasks_a}, "b": {"tasks": tasks_b}}, on_gpu=False)
    rows = summary["rows"]
    assert rows["a"]["summarize"]["req_s_ratio"] == pytest.approx(2.5)
    assert rows["a"]["profile"]["req_s_ratio"] == pytest.approx(10 / 6)
    assert rows["a"]["profile"]["valid_share"] == pytest.approx(0.9)
    assert rows["b"]["news"]["gen_tok_s_ratio"] == pytest.approx(1.0)
    assert rows["a"]["all"]["requests"] == 40
    goals = summary["goals"]
    assert goals["profile_speedup"]["goal"] == 2.0 and not goals["profile_speedup"]["met"]
    assert goals["every_task_speedup"]["met"]
    assert goals["outside_share_max"]["value"] == pytest.approx(1 / 7) and not goals["outside_share_max"]["met"]
    assert bench.summarize({"a": {"tasks": tasks_a}, "b": {"tasks": tasks_b}}, on_gpu=True)["goals"]["profile_speedup"]["goal"] == 3.0


def test_generate_summary_skips_failed_configs_and_missing_baseline():
    bench = _load("bench_generate")
    tasks = {t: _task(4, 4, 400, 40, 2.0, 2.05) for t in bench.TASK_ORDER}
    summary = bench.summarize({"a": {"tasks": tasks}, "c": {"error": "exit 1"}}, on_gpu=False)
    assert set(summary["rows"]) == {"a"}
    assert "req_s_ratio" not in summary["rows"]["a"]["profile"]
    assert set(summary["goals"]) == {"outside_share_max"} and summary["goals"]["outside_share_max"]["met"]


def test_generate_share_of_peak_from_the_prefill_replay():
    bench = _load("bench_generate")
    log = "INFO ... OpenMP thread binding info:\n\tlocal_rank=0, core ids=[0, 1]\n\treserved_cpus=[]"
    assert bench.engine_cpus(log) == [0, 1]
    assert bench.engine_cpus("no such line") is None
    rates = [
        {"dtype": "float32", "threads": 1, "rows": 32, "gflops": 20.0},
        {"dtype": "float32", "threads": 1, "rows": 1024, "gflops": 40.0},
        {"dtype": "float32", "threads": 2, "rows": 1024, "gflops": 80.0},
        {"dtype": "bfloat16", "threads": 1, "rows": 1024, "gflops": 100.0},
    ]
    roofline = [{"requests": 2, "prompt_tokens": 100, "cached_tokens": 25, "completion_tokens": 10,
                 "call_seconds": 3.0, "prefill_seconds": 1.0, "decode_seconds": 2.0,
                 "prefill_flops": 30e9, "decode_flops": 20e9}]
    results = {
        "e": {"dtype": "float32", "engine_cpus": [1], "roofline": roofline},
        "f": {"dtype": "bfloat16", "engine_cpus": None, "roofline": roofline},
        "b": {"dtype": "float32", "roofline": None},
        "x": {"error": "exit 1"},
    }
    shares = bench.share_of_peak(results, rates)
    assert set(shares) == {"e", "f"}
    e = shares["e"]
    assert e["gflops"] == {"prefill": 30.0, "decode": 10.0, "all": pytest.approx(50 / 3)}
    assert e["share_of_peak"]["prefill"] == pytest.approx(30 / 80)  # the best float32 rate, any threads
    assert e["share_same_threads"]["prefill"] == pytest.approx(30 / 40)  # one thread, prefill rows
    assert e["share_same_threads"]["decode"] == pytest.approx(10 / 20)  # one thread, decode rows
    assert e["prefill_time_share"] == pytest.approx(1 / 3) and e["cached_prompt_share"] == pytest.approx(0.25)
    assert e["noisy_calls"] == 0
    noisy = [{**roofline[0], "prefill_seconds": 3.5, "decode_seconds": 0.0}]
    assert bench.share_of_peak({"e": {"dtype": "float32", "roofline": noisy}}, rates)["e"]["noisy_calls"] == 1
    f = shares["f"]
    assert f["share_of_peak"]["prefill"] == pytest.approx(30 / 100)
    assert f["share_of_fp32_peak"]["prefill"] == pytest.approx(30 / 80)
    assert f["engine_threads"] is None and f["share_same_threads"]["prefill"] == pytest.approx(30 / 100)
    assert bench.share_of_peak(results, []) == {}


def test_stub_backend_outputs_parse_as_valid():
    from genre_local.llm import tasks
    from genre_local.llm.backend import GenRequest

    bench = _load("bench_resume")
    stub = bench.StubBackend()
    for name, task in tasks.TASKS.items():
        request = GenRequest(messages=({"role": "user", "content": name},), max_tokens=8, schema=task.schema(2))
        (result,) = stub.generate([request])
        assert task.parse(result.text, 2).valid, (name, result.text)


# -- the scripts themselves, tiny ------------------------------------------------------------------


@pytest.mark.slow
def test_bench_generate_smoke(tmp_path: Path, models_dir: Path):
    proc = _run("bench_generate.py", "--smoke", "--out", str(tmp_path), "--models-dir", str(models_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads((tmp_path / "generate-smoke.json").read_text())
    rows = payload["summary"]["rows"]["b"]
    assert set(rows) == {"summarize", "news", "chain", "profile", "all"}
    assert rows["all"]["requests"] == 4 and rows["all"]["completion_tokens"] > 0
    # The smoke run caps every answer at 8 tokens so it stays short on a loaded core.
    assert payload["settings"]["max_tokens_cap"] == 8 and rows["all"]["completion_tokens"] <= 4 * 8
    assert 0 <= rows["all"]["outside_share"] < 1
    assert "gen tok/s" in proc.stdout


def test_bench_generate_refuses_unknown_config(tmp_path: Path):
    proc = _run("bench_generate.py", "--configs", "a,x", "--dtype", "float32", "--gpu-memory-utilization", "0.2",
                "--out", str(tmp_path), timeout=60)
    assert proc.returncode != 0 and "--configs: unknown ['x']" in proc.stderr


@pytest.mark.slow
def test_bench_train_smoke(tmp_path: Path):
    proc = _run("bench_train.py", "--smoke", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads((tmp_path / "train-smoke.json").read_text())
    by_model = {r["model"]: r for r in payload["results"]}
    assert set(by_model) == {"nrms", "din"}
    for result in by_model.values():
        assert result["train"]["steps"] >= 1 and result["train"]["samples_per_s"] > 0
        shares = result["train"]["data_share"] + result["train"]["forward_share"] + result["train"]["backward_share"]
        assert shares == pytest.approx(1.0)
        assert result["eval"]["max_abs_diff"] < 1e-4  # fast and naive paths score alike
        assert result["memory"]["peak_rss_mb"] > 0
    assert "nrms_fast_eval_speedup" in payload["goals"] and "din_fast_eval_speedup" not in payload["goals"]


@pytest.mark.slow
def test_bench_train_runs_the_language_model_encoders_on_their_layer_cache(tmp_path: Path):
    """--models all includes DIRE: the embedded SmolLM2 is its encoder, and PLMNR/DIRE build their
    frozen-layer cache before the timed steps, as the trainer does."""
    # The script's default encoder folder, already prepared (so it converts nothing): building two
    # layer caches takes minutes on a busy 2-core machine.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "smollm2").symlink_to(prepared_model(), target_is_directory=True)
    proc = _run("bench_train.py", "--smoke", "--models", "plmnr,dire", "--out", str(tmp_path), timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads((tmp_path / "train-smoke.json").read_text())
    by_model = {r["model"]: r for r in payload["results"]}
    assert set(by_model) == {"plmnr", "dire"}
    for name, result in by_model.items():
        assert result["train"]["samples_per_s"] > 0 and result["train"]["prepare_news_seconds"] > 0
        assert len(list(tmp_path.rglob(f"layers/{name}-*/manifest.json"))) == 1


def test_bench_train_times_plmnr_with_a_history_table(tmp_path: Path):
    """--plmnr-history states: the epoch-start table is built (and timed) before the steps."""
    proc = _run("bench_train.py", "--smoke", "--models", "plmnr", "--plmnr-history", "states", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (result,) = json.loads((tmp_path / "train-smoke.json").read_text())["results"]
    assert result["plmnr_history"] == "states" and result["train"]["epoch_table_seconds"] > 0
    assert result["train"]["samples_per_s"] > 0 and "(states)" in proc.stdout


def test_bench_train_refuses_unknown_model(tmp_path: Path):
    proc = _run("bench_train.py", "--models", "nrms,gpt", "--out", str(tmp_path), timeout=60)
    assert proc.returncode != 0 and "--models: unknown ['gpt']" in proc.stderr


def test_bench_resume_smoke(tmp_path: Path, models_dir: Path):
    proc = _run("bench_resume.py", "--smoke", "--out", str(tmp_path), "--models-dir", str(models_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads((tmp_path / "resume-smoke.json").read_text())
    (row,) = payload["rows"]
    assert row["passed"] and row["rerun_new"] == 0 and not row["engine_started"]
    assert row["stored_requests"] == row["rerun_skipped"] > 0


def test_bench_reference_smoke(tmp_path: Path):
    proc = _run("bench_reference.py", "--smoke", "--models", "nrms,dcn", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads((tmp_path / "reference.json").read_text())
    assert [r["model"] for r in payload["rows"]] == ["nrms", "dcn"]
    for row in payload["rows"]:
        assert row["sides"] == ["ours", "reference"]
        assert row["ours_median"] > 0 and row["reference_median"] > 0
        assert row["ratio_median"] == pytest.approx(row["ours_median"] / row["reference_median"])  # one round
        assert row["auc_seeds"] == [1] and row["auc_steps"] == 5
        for side in ("ours_auc", "reference_auc"):
            assert 0.0 <= row[side] <= 1.0  # finite: no NaN from all-padding news
    assert "| NRMS |" in proc.stdout and "| DCN |" in proc.stdout


def test_bench_reference_plain_loop_gives_bst_torchs_own_transformer():
    """The plain loop must not inherit our packed transformer: BST's encoder goes back to
    nn.TransformerEncoder itself, torch's own layers, the same weights and the same real outputs."""
    import torch

    from recsys.layers.transformer import PackedTransformerEncoder

    bench = _load("bench_reference")
    layer = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.2, batch_first=True)
    packed = PackedTransformerEncoder(layer, 2, enable_nested_tensor=False)
    plain = bench.plain_encoder(packed)
    assert type(plain) is torch.nn.TransformerEncoder and len(plain.layers) == 2
    assert all(type(block) is torch.nn.TransformerEncoderLayer for block in plain.layers)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), packed.state_dict().values()))
    x, padding = torch.randn(3, 5, 8), torch.tensor([[True, True, False, False, False]] * 3)
    packed.eval(), plain.eval()
    assert torch.allclose(plain(x, src_key_padding_mask=padding)[:, 2:], packed(x, src_key_padding_mask=padding)[:, 2:],
                          atol=1e-6)


def test_bench_reference_compares_bf16_on_with_off(tmp_path: Path):
    proc = _run("bench_reference.py", "--smoke", "--versus", "bf16", "--models", "dcn", "--auc-seeds", "2",
                "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads((tmp_path / "bf16.json").read_text())
    assert payload["versus"] == "bf16" and isinstance(payload["cpu_native_bf16"], bool)
    (row,) = payload["rows"]
    assert row["sides"] == ["bf16_on", "bf16_off"]
    assert row["ratio_median"] == pytest.approx(row["bf16_on_median"] / row["bf16_off_median"])
    assert row["auc_seeds"] == [1, 2]
    for side in ("bf16_on", "bf16_off"):
        aucs = row[f"{side}_aucs"]
        assert len(aucs) == 2 and all(0.0 <= a <= 1.0 for a in aucs)
        assert row[f"{side}_auc"] == pytest.approx(sum(aucs) / 2)
        assert row[f"{side}_auc_std"] == pytest.approx(abs(aucs[0] - aucs[1]) / 2**0.5)
    assert "bf16_on ÷ bf16_off" in proc.stdout and " ± " in proc.stdout


def test_bench_reference_refuses_bad_seed_and_epoch_counts(tmp_path: Path):
    proc = _run("bench_reference.py", "--smoke", "--auc-seeds", "0", "--out", str(tmp_path), timeout=200)
    assert proc.returncode == 2 and "--auc-seeds must be >= 1" in proc.stderr


def test_bench_reference_refuses_an_unknown_model_before_any_work(tmp_path: Path):
    """A model without a reference, listed after good ones, is refused before data or training."""
    proc = _run("bench_reference.py", "--smoke", "--models", "nrms,lstur", "--out", str(tmp_path), timeout=200)
    assert proc.returncode == 2 and "'lstur' has no reference" in proc.stderr
    assert "round 1" not in proc.stdout + proc.stderr and not list(tmp_path.iterdir())


def test_bench_reference_auc_only_on_chosen_seeds_and_the_test_split(tmp_path: Path):
    """--rounds 0 skips the throughput rounds; --auc-first-seed picks new seeds; `auto` scores
    on the folder's test split when it has one, the same impressions on both sides."""
    proc = _run("bench_reference.py", "--smoke", "--models", "nrms", "--rounds", "0", "--auc-seeds", "2",
                "--auc-first-seed", "41", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads((tmp_path / "reference.json").read_text())
    (row,) = payload["rows"]
    assert payload["auc_split"] == "test" and row["auc_split"] == "test"
    test_lines = (tmp_path / "synth-300n-120u-s7" / "test" / "behaviors.tsv").read_text().splitlines()
    assert payload["scored_impressions"] == len(test_lines)
    assert row["ratios"] == [] and row["ratio_median"] is None
    assert row["auc_seeds"] == [41, 42] and len(row["ours_aucs"]) == len(row["reference_aucs"]) == 2
    assert "test AUC" in proc.stdout and "seed 41: test AUC" in proc.stderr
    # the paired comparison reads the file as written: both seeds, each side's AUCs, a verdict
    paired = _run("paired_auc.py", str(tmp_path / "reference.json"), "--out", str(tmp_path / "paired.json"), timeout=60)
    assert paired.returncode == 0, paired.stderr
    (model,) = json.loads((tmp_path / "paired.json").read_text())["models"]
    assert model["model"] == "nrms" and model["seeds"] == [41, 42] and model["sides"] == ["ours", "reference"]
    assert [(p["first"], p["second"]) for p in model["per_seed"]] == list(zip(row["ours_aucs"], row["reference_aucs"]))
    assert model["verdict"] in ("better", "worse", "non-inferior", "inconclusive")
    assert "NRMS: n 2, ours " in paired.stdout and "test split after 5 batches" in paired.stdout


def test_bench_reference_scores_one_side_with_our_decay_off(tmp_path: Path):
    proc = _run("bench_reference.py", "--smoke", "--models", "naml", "--rounds", "0", "--auc-sides", "ours",
                "--weight-decay", "0", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads((tmp_path / "reference.json").read_text())
    (row,) = payload["rows"]
    assert len(row["ours_aucs"]) == 1 and "reference_aucs" not in row
    assert payload["settings"]["weight_decay"] == 0.0 and "reference seed" not in proc.stderr
    bad = _run("bench_reference.py", "--smoke", "--auc-sides", "bf16_on", "--out", str(tmp_path / "bad"), timeout=200)
    assert bad.returncode == 2 and "--auc-sides 'bf16_on'" in bad.stderr


def test_bench_reference_passes_its_weight_decay_to_ours_only():
    import argparse

    bench = _load("bench_reference")
    base = dict(embed_dim=16, heads=2, dropout=0.1, lr=1e-3, batch_size=8, negatives=2, history_len=5, title_len=6,
                bf16="off")
    default = bench.Ours("nrms", None, argparse.Namespace(**base, weight_decay=None)).config()
    off = bench.Ours("nrms", None, argparse.Namespace(**base, weight_decay=0.0)).config()
    assert default.weight_decay == 0.01 and off.weight_decay == 0.0


def test_bench_reference_refuses_a_split_the_folder_lacks(tmp_path: Path):
    folder = tmp_path / "mind"
    for split in ("train", "dev"):
        (folder / split).mkdir(parents=True)
        (folder / split / "behaviors.tsv").write_text("")
    proc = _run("bench_reference.py", "--mind", str(folder), "--auc-split", "test", "--out", str(tmp_path / "out"),
                timeout=200)
    assert proc.returncode != 0 and "--auc-split test" in proc.stderr and "does not exist" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_plain_din_activation_is_ours_in_value():
    """The DIN reference's activation unit (every slot, then masked) computes ours (real items only)."""
    import torch

    from recsys.layers import DINActivationUnit

    bench = _load("bench_reference")
    torch.manual_seed(0)
    ours = DINActivationUnit(8).double()
    plain = bench.PlainDINActivation(ours.mlp)
    history, candidate = torch.randn(3, 5, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.allclose(plain(history, candidate, mask), ours(history, candidate, mask), atol=1e-12)


def test_bench_reference_refuses_a_model_without_reference(tmp_path: Path):
    proc = _run("bench_reference.py", "--smoke", "--models", "lstur", "--out", str(tmp_path), timeout=200)
    assert proc.returncode != 0 and "'lstur' has no reference" in proc.stderr


def test_reference_models_stay_finite_on_padding_news_and_samples_put_the_click_first():
    import torch

    bench = _load("bench_reference")
    titles = torch.tensor([[0, 0, 0], [101, 7, 102], [101, 9, 102]])
    mind = bench.MindFolder({"N1": 1, "N2": 2}, titles, torch.tensor([0, 1, 1]), 2,
                            train=[([1], [1, 2], [1, 0]), ([], [2, 1], [1, 1])], scored=[])
    torch.manual_seed(0)
    for model in (bench.RefNRMS(8, 2, 0.0, vocab=200), bench.RefNAML(8, 2, 0.0, 2, vocab=200)):
        model.eval()
        assert torch.isfinite(model.news(titles, mind.categories)).all()
        empty = model.user(torch.zeros(1, 3, 8), torch.zeros(1, 3, dtype=torch.bool))
        assert torch.isfinite(empty).all()
    samples = bench.ReferenceSamples(mind, history_len=2, negatives=2, seed=0)
    assert len(samples) == 1  # the second impression has no non-click to sample
    history, cands = samples[0]
    assert history.tolist() == [0, 1] and cands.tolist() == [1, 2, 2]


# -- scripts/bench_scale.py --------------------------------------------------------------------


def test_scale_sizes_and_stage_prefixes():
    bench = _load("bench_scale")
    assert bench.parse_size("large") == ("large", 161_013, 1_000_000)
    assert bench.parse_size("16100x100000") == ("16100x100000", 16_100, 100_000)
    for bad in ("huge", "16100x", "x5", "1e5x10"):
        with pytest.raises(SystemExit, match="--sizes"):
            bench.parse_size(bad)


def test_scale_stage_peak_rss_is_the_childs_own(tmp_path: Path):
    """A child that holds 300 MiB reports at least that; the next child, holding little, is not
    charged with it nor with this (large) test process (each stage's peak is its own process's)."""
    bench = _load("bench_scale")
    env = dict(__import__("os").environ)
    big = bench.run_stage("big", [sys.executable, "-c", "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"],
                          tmp_path / "big.log", env)
    ballast = bytearray(400 * 2**20)  # this process is big when it starts the small child
    ballast[::4096] = b"x" * len(ballast[::4096])
    small = bench.run_stage("small", [sys.executable, "-c", "pass"], tmp_path / "small.log", env)
    del ballast
    failed = bench.run_stage("failed", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "failed.log", env)
    assert big.returncode == small.returncode == 0 and failed.returncode == 3
    assert big.peak_rss_gib >= 300 / 1024
    assert small.peak_rss_gib < 100 / 1024


@pytest.mark.slow
def test_scale_smoke_runs_every_stage(tmp_path: Path):
    """The data stages kept, then training and prediction continuing that work folder (how the
    MIND-large-sized run is done in two sittings)."""
    out, work = tmp_path / "out", str(tmp_path / "work")
    stages = {"synth,import,encode": ["synth", "import", "encode"], "train,predict": ["train", "predict"]}
    for option, names in stages.items():
        keep = ["--keep"] if option.startswith("synth") else []
        proc = _run("bench_scale.py", "--sizes", "150x40", "--steps", "2", "--work", work, "--out", str(out),
                    "--stages", option, *keep, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        (size,) = json.loads((out / "scale.json").read_text())["sizes"]
        assert [s["stage"] for s in size["stages"]] == names
        assert all(s["returncode"] == 0 and s["seconds"] > 0 and 0 < s["peak_rss_gib"] < 4 for s in size["stages"])
    assert size["train"]["steps_per_s"] > 0 and 0 <= size["train"]["dev"]["auc"] <= 1
    # the synthetic test is labelled, yet the bounded run reports dev and never scores test
    assert size["train"]["eval_split"] == "dev" and size["train"]["scored_splits"] == ["dev"]
    assert not (tmp_path / "work").exists()  # removed without --keep
    proc = _run("bench_scale.py", "--sizes", "150x40", "--work", work, "--stages", "train", timeout=60)
    assert proc.returncode != 0 and "has no store" in proc.stderr


def test_engine_knobs_phases_name_threads_seqs_and_an_optional_dtype():
    bench = _load("bench_engine_knobs")
    assert bench.parse_phases("1x32,2x128:bfloat16, 1x32:float32") == [
        (1, 32, "auto"), (2, 128, "bfloat16"), (1, 32, "float32")]
    with pytest.raises(ValueError):
        bench.parse_phases("1x")
