"""Config layering: defaults < genre.toml < flags, with one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.config import GenreConfig, load_config, with_overrides
from genre_local.errors import UserError

runner = CliRunner()


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENRE_CONFIG", raising=False)
    assert load_config() == GenreConfig()


def test_file_over_defaults_and_flags_over_file(tmp_path: Path) -> None:
    path = tmp_path / "genre.toml"
    path.write_text('[train]\nepochs = 7\nlr = 1\n[synth]\nusers = 50\n[models]\nbig = "/m/llama8b"\n')
    cfg = load_config(path)
    assert cfg.train.epochs == 7 and cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.synth.users == 50 and cfg.synth.news == GenreConfig().synth.news
    assert cfg.models == {"big": "/m/llama8b"}
    assert with_overrides(cfg.train, epochs=2, lr=None).epochs == 2
    assert with_overrides(cfg.train, epochs=None).epochs == 7


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("[train]\nepoch = 3\n", "unknown key 'epoch'"),
        ("[train]\nepochs = 'three'\n", "[train].epochs: expected int, got 'three'; fix the file"),
        ("[models]\nbig = 3\n", "[models].big: expected a folder path in quotes"),
        ("[trian]\n", "unknown section [trian]"),
        ("[train\n", "not valid TOML"),
        ("[synth]\nseed = true\n", "expected int"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, phrase: str) -> None:
    path = tmp_path / "genre.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=phrase.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_bad_config_through_cli_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "genre.toml"
    path.write_text("[train]\nepoch = 3\n")
    result = runner.invoke(app, ["--config", str(path), "data", "stats", "--name", "x"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown key 'epoch'" in result.stderr
    missing = runner.invoke(app, ["--config", str(tmp_path / "none.toml"), "data", "stats", "--name", "x"])
    assert missing.exit_code == 2 and missing.stderr.endswith("does not exist; create it or drop --config\n")
    from_env = runner.invoke(app, ["data", "stats", "--name", "x"], env={"GENRE_CONFIG": str(tmp_path / "none.toml")})
    assert from_env.exit_code == 2 and from_env.stderr.endswith("does not exist; create it or drop GENRE_CONFIG\n")


def test_optional_bool_keys_default_to_automatic_and_accept_bools(tmp_path: Path) -> None:
    assert GenreConfig().generate.enforce_eager is None
    path = tmp_path / "genre.toml"
    path.write_text("[generate]\nenforce_eager = false\n")
    assert load_config(path).generate.enforce_eager is False
    path.write_text("[generate]\nenforce_eager = 'yes'\n")
    with pytest.raises(UserError, match="expected bool"):
        load_config(path)


# ---------------------------------------------------------------- issue 8: checks live in the sections

from genre_local.config import (  # noqa: E402
    ConfigValueError,
    GenerateConfig,
    PathsConfig,
    SynthConfig,
    check_generate_limit,
)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("[generate]\nbackend = 'tpu'\n", "[generate] backend = 'tpu' is not known; use one of auto, vllm, transformers"),
        ("[generate]\ndtype = 'int4'\n", "[generate] dtype = 'int4' is not known; use one of float32"),
        ("[generate]\nper_user = 0\n", "[generate] per_user = 0: must be between 1 and 10"),
        ("[generate]\nrounds = 0\n", "[generate] rounds = 0: must be between 1 and"),
        ("[generate]\nretries = -1\n", "[generate] retries = -1: must be between 0 and"),
        ("[generate]\nbatch_size = 0\n", "[generate] batch_size = 0: must be between 1 and"),
        ("[generate]\nhistory_items = 0\n", "[generate] history_items = 0: must be between 1 and"),
        ("[generate]\nhf_micro_batch = 0\n", "[generate] hf_micro_batch = 0: must be between 1 and"),
        ("[generate]\ntemperature = -0.5\n", "[generate] temperature = -0.5: must be a number at least 0"),
        ("[generate]\ntemperature = nan\n", "[generate] temperature = nan: must be a number at least 0"),
        ("[generate]\ntop_p = 0\n", "[generate] top_p = 0.0: must be a number above 0 and at most 1"),
        ("[generate]\ntop_p = 1.5\n", "[generate] top_p = 1.5: must be a number above 0 and at most 1"),
        ("[generate]\nprice_per_hour = -1\n", "[generate] price_per_hour = -1.0: must be a number at least 0"),
        ("[generate]\nprice_per_hour = inf\n", "[generate] price_per_hour = inf: must be a number at least 0"),
        ("[generate]\ngpu_memory_utilization = 0\n", "[generate] gpu_memory_utilization = 0.0: must be a number above 0"),
        ("[generate]\ngpu_memory_utilization = 1.5\n", "gpu_memory_utilization = 1.5: must be a number above 0 and at most 1"),
        ("[generate]\nmax_model_len = 0\n", "[generate] max_model_len = 0: must be between"),
        ("[generate]\nseed = -1\n", "[generate] seed = -1: must be between 0 and 4294967295"),
        ("[generate]\nmodel = ''\n", "[generate] model = '': must name an alias or a model folder"),
        ("[generate]\ngpus = 0\n", "[generate] gpus = 0: must be between 1 and 1024"),
        ("[generate]\nengine = 'spark'\n", "[generate] engine = 'spark' is not known; use one of local, ray"),
        ("[generate]\nengine = 'ray'\nray_address = ' '\n", "[generate] ray_address = ' ': must be HOST:PORT"),
        ("[generate]\nengine = 'ray'\nray_address = 'a b:1'\n", "[generate] ray_address = 'a b:1': must be HOST:PORT"),
        ("[generate]\nray_address = '10.0.0.1:6379'\n", "[generate] ray_address = '10.0.0.1:6379': applies to engine = 'ray' only"),
        ("[synth]\nnews = 10\n", "[synth] news = 10: must be between 150 and 200000"),
        ("[synth]\nusers = 2\n", "[synth] users = 2: must be between 10 and 1000000"),
        ("[synth]\nseed = -1\n", "[synth] seed = -1: must be between 0 and"),
        ("[paths]\nreports_dir = ''\n", "[paths] reports_dir = '': must be a folder name or path"),
        ("[paths]\ncache_dir = '  '\n", "[paths] cache_dir = '  ': must be a folder name or path"),
        ("[models]\nllama = '/m/x'\n", "[models] llama = '/m/x': 'llama' is the embedded model; choose another alias"),
        ("[models]\nbig = ''\n", "[models] big = '': must be a folder name or path"),
    ],
)
def test_bad_values_in_file_name_file_key_and_allowed_values(tmp_path: Path, text: str, phrase: str) -> None:
    path = tmp_path / "genre.toml"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path} [") and phrase in message and "\n" not in message
    # The same file through the CLI: one line, exit 2.
    result = runner.invoke(app, ["--config", str(path), "data", "stats", "--name", "x"])
    assert result.exit_code == 2 and phrase in result.stderr and result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize(
    ("section", "flags", "message"),
    [
        (GenerateConfig(), {"per_user": 11}, "--per-user 11: must be between 1 and 10"),
        (GenerateConfig(), {"rounds": 0}, "--rounds 0: must be between 1 and"),
        (GenerateConfig(), {"backend": "tpu"}, "--backend 'tpu' is not known; use one of auto, vllm, transformers"),
        (GenerateConfig(), {"temperature": -1.0}, "--temperature -1.0: must be a number at least 0"),
        (GenerateConfig(), {"retries": -1}, "--retries -1: must be between 0 and"),
        (GenerateConfig(), {"batch_size": 0}, "--batch-size 0: must be between 1 and"),
        (GenerateConfig(), {"price_per_hour": -2.0}, "--price-per-hour -2.0: must be a number at least 0"),
        (SynthConfig(), {"news": 10}, "--news 10: must be between 150 and"),
        (SynthConfig(), {"seed": -3}, "--seed -3: must be between 0 and"),
    ],
)
def test_with_overrides_checks_flags_and_names_the_flag(section: object, flags: dict, message: str) -> None:
    with pytest.raises(UserError) as caught:
        with_overrides(section, **flags)
    assert str(caught.value) == message or str(caught.value).startswith(message)


def test_sections_built_directly_are_checked_too() -> None:
    # Library and benchmark callers get the same checks as the CLI.
    with pytest.raises(ConfigValueError, match=r"\[generate\] per_user = 0: must be between 1 and 10"):
        GenerateConfig(per_user=0)
    with pytest.raises(ConfigValueError, match=r"\[synth\] news = 149"):
        SynthConfig(news=149)
    with pytest.raises(ConfigValueError, match=r"\[paths\] models_dir"):
        PathsConfig(models_dir="")
    with pytest.raises(ConfigValueError, match=r"\[models\] llama"):
        GenreConfig(models={"llama": "/x"})
    # Edges that are allowed stay allowed.
    assert GenerateConfig(per_user=10, retries=0, top_p=1.0, temperature=0.0).per_user == 10
    assert SynthConfig(news=150, users=10, seed=0).news == 150


def test_generate_limit_is_bounded() -> None:
    check_generate_limit(None)
    check_generate_limit(1)
    with pytest.raises(UserError, match="^--limit 0: must be between 1 and"):
        check_generate_limit(0)
    with pytest.raises(UserError, match="^--limit 10000000000: must be between 1 and"):
        check_generate_limit(10_000_000_000)


def test_generate_flag_mistakes_exit_2_before_opening_any_store(tmp_path: Path) -> None:
    db = tmp_path / "g.duckdb"
    for flags, phrase in [
        (["--per-user", "11"], "--per-user 11: must be between 1 and 10"),
        (["--temperature", "-1"], "--temperature -1.0: must be a number at least 0"),
        (["--rounds", "1000000"], "--rounds 1000000: must be between 1 and"),
        (["--limit", "99999999999999"], "--limit 99999999999999: must be between"),
    ]:
        result = runner.invoke(app, ["--db", str(db), "generate", "--dataset", "d", "--dry-run", *flags])
        assert result.exit_code == 2, result.output
        assert phrase in result.stderr and result.stderr.strip().count("\n") == 0
    assert not db.exists()


# ---------------------------------------------------------------- issue 12: bounded counts, config paths


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("[train]\nseeds = 99999999999999999999\n", "[train].seeds = 99999999999999999999: out of range (TOML integers are 64-bit)"),
        ("[synth]\nnews = -99999999999999999999\n", "[synth].news = -99999999999999999999: out of range"),
        ("[synth]\nnews = 1000000000000\n", "[synth] news = 1000000000000: must be between 150 and 200000"),
        ("[synth]\nusers = 9223372036854775807\n", "[synth] users = 9223372036854775807: must be between 10 and 1000000"),
        ("[generate]\nper_user = 1000000\n", "[generate] per_user = 1000000: must be between 1 and 10"),
        ("[generate]\nbatch_size = 10000000000\n", "[generate] batch_size = 10000000000: must be between 1 and 65536"),
        ("[generate]\nhistory_items = 100000\n", "[generate] history_items = 100000: must be between 1 and 500"),
        ("[generate]\nretries = 1000\n", "[generate] retries = 1000: must be between 0 and 20"),
        ("[generate]\nrounds = 1000\n", "[generate] rounds = 1000: must be between 1 and 100"),
    ],
)
def test_counts_in_the_file_are_bounded(tmp_path: Path, text: str, phrase: str) -> None:
    path = tmp_path / "genre.toml"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        load_config(path)
    assert phrase in str(caught.value) and str(caught.value).startswith(str(path))


def test_synth_news_typo_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "d"
    for flags, phrase in [
        (["--news", "1000000000000"], "--news 1000000000000: must be between 150 and 200000"),
        (["--users", "99999999999"], "--users 99999999999: must be between 10 and 1000000"),
        (["--seed", "99999999999999999999"], "--seed 99999999999999999999: must be between 0 and"),
    ]:
        result = runner.invoke(app, ["data", "synth", str(out), *flags])
        assert result.exit_code == 2, result.output
        assert phrase in result.stderr and result.stderr.strip().count("\n") == 0
    assert not out.exists()


def test_config_path_that_is_a_folder_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="is a folder; pass the genre.toml file itself"):
        load_config(tmp_path)
    result = runner.invoke(app, ["--config", str(tmp_path), "data", "stats", "--name", "x"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"config file {tmp_path} is a folder" in result.stderr and result.stderr.strip().count("\n") == 0
    monkeypatch.setenv("GENRE_CONFIG", str(tmp_path))
    result = runner.invoke(app, ["--db", str(tmp_path / "g.duckdb"), "data", "stats", "--name", "x"])
    assert result.exit_code == 2 and "is a folder" in result.stderr and result.stderr.strip().count("\n") == 0
    assert not (tmp_path / "g.duckdb").exists()


def test_unreadable_or_non_utf8_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "genre.toml"
    path.write_bytes(b"[synth]\nnews = 300 # caf\xe9\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(path)
    import os

    if os.geteuid() != 0:  # root reads anything
        path.write_text("[synth]\n")
        path.chmod(0)
        try:
            with pytest.raises(UserError, match="cannot be read"):
                load_config(path)
        finally:
            path.chmod(0o644)


def test_a_section_raising_its_own_value_error_is_still_a_user_error(tmp_path: Path) -> None:
    # A section class from a library (recsys's TrainConfig) may check with plain ValueError.
    from dataclasses import dataclass

    from genre_local.config import _build_section

    @dataclass(frozen=True)
    class Checked:
        count: int = 1

        def __post_init__(self) -> None:
            if self.count < 1:
                raise ValueError("count must be 1 or more")

    with pytest.raises(UserError, match=r"^count must be 1 or more$"):
        with_overrides(Checked(), count=0)
    with pytest.raises(UserError, match=r"genre.toml \[x\]: count must be 1 or more; fix the file"):
        _build_section(Checked, {"count": 0}, f"{tmp_path / 'genre.toml'} [x]", tmp_path / "genre.toml")
