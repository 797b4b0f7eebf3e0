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
        ("[train]\nepochs = 'three'\n", "expected int"),
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
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_optional_bool_keys_default_to_automatic_and_accept_bools(tmp_path: Path) -> None:
    assert GenreConfig().generate.enforce_eager is None
    path = tmp_path / "genre.toml"
    path.write_text("[generate]\nenforce_eager = false\n")
    assert load_config(path).generate.enforce_eager is False
    path.write_text("[generate]\nenforce_eager = 'yes'\n")
    with pytest.raises(UserError, match="expected bool"):
        load_config(path)
