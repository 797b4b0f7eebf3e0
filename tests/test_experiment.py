"""recsys as a library: no genre_local import, the experiment API without Typer, TrainConfig's checks."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from genre_local.config import load_config, with_overrides
from genre_local.errors import UserError
from recsys.config import MAX_SEEDS, TrainConfig
from recsys.errors import ConfigError, RecsysError

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                                          "PATH": "/usr/bin:/bin"})


def test_recsys_imports_nothing_from_genre_local() -> None:
    done = _python("""
        import sys
        import recsys, recsys.experiment, recsys.train, recsys.data, recsys.features, recsys.models
        import recsys.variants, recsys.evaluate, recsys.config, recsys.errors, recsys.layers, recsys.pretrained
        from recsys.models import build_model  # the lazy registry too
        import recsys.models.plmnr, recsys.models.naml
        print(sorted(m for m in sys.modules if m.split('.')[0] in ('genre_local', 'typer')))
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_config_module_stays_cheap() -> None:
    done = _python("""
        import sys
        import recsys.config, recsys.errors, recsys.catalog, recsys.stats, recsys.variants
        print(sorted(m for m in ('torch', 'numpy', 'pyarrow', 'duckdb', 'genre_local') if m in sys.modules))
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_library_api_trains_resumes_and_predicts_without_typer(tmp_path: Path) -> None:
    from genre_local.store import open_store
    from genre_local.store.variants import fetch_encoded
    from recsys.data import save_encoded
    from recsys.variants import parse_variant
    from tests.support_train import make_store

    db = make_store(tmp_path / "s.duckdb", users=12, news_per_cat=5)
    with open_store(db) as store:
        data, _ = fetch_encoded(store.conn, "tiny", parse_variant("original"), ("title", "category"), 12, 8, None, None)
    save_encoded(data, tmp_path / "encoded.pt")
    done = _python(f"""
        import json, sys
        sys.modules["typer"] = None  # any `import typer` now fails
        from pathlib import Path
        from recsys import experiment
        from recsys.config import TrainConfig
        from recsys.data import load_encoded

        data = load_encoded(Path({str(tmp_path / "encoded.pt")!r}))
        cfg = TrainConfig(embed_dim=16, num_heads=2, transformer_layers=1, history_len=10, title_len=12,
                          batch_size=32, lr=0.01, epochs=1, seeds=2, threads=1)
        root = Path({str(tmp_path / "ck")!r})
        first = experiment.run("din", data, cfg, checkpoint_root=root)
        again = experiment.run("din", data, cfg, checkpoint_root=root, resume=True)  # finished: same results
        written = experiment.predict("din", data, cfg, root.parent / "prediction.txt", checkpoint_root=root)
        print(json.dumps({{
            "seeds": [r.seed for r in first.runs], "auc": first.summary["all"]["auc"][0],
            "same": again.auc_by_seed() == first.auc_by_seed(), "lines": written.impressions,
            "genre_local": sorted(m for m in sys.modules if m.startswith("genre_local")),
        }}))
    """, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    assert payload["seeds"] == [1, 2] and 0.0 <= payload["auc"] <= 1.0 and payload["same"]
    assert payload["lines"] == len(data.split("test")) and payload["genre_local"] == []
    assert len((tmp_path / "prediction.txt").read_text().splitlines()) == payload["lines"]


# -- TrainConfig: every entry point gets the same checks ------------------------------------------


@pytest.mark.parametrize("changes,key,phrase", [
    ({"seeds": 0}, "seeds", f"between 1 and {MAX_SEEDS}"),
    ({"seeds": 10**12}, "seeds", f"between 1 and {MAX_SEEDS}, got 1000000000000"),
    ({"epochs": 0}, "epochs", "between 1 and"),
    ({"batch_size": 0}, "batch_size", "between 1 and"),
    ({"eval_batch_size": 0}, "eval_batch_size", "between 1 and"),
    ({"history_len": 0}, "history_len", "between 1 and"),
    ({"title_len": 2}, "title_len", "between 3 and"),
    ({"abstract_len": 0}, "abstract_len", "between 3 and"),
    ({"negatives": 0}, "negatives", "between 1 and"),
    ({"patience": 0}, "patience", "between 1 and"),
    ({"checkpoint_every": -1}, "checkpoint_every", "between 0 and"),
    ({"max_steps": -1}, "max_steps", "between 0 and"),
    ({"threads": -1}, "threads", "between 0 and"),
    ({"num_workers": -2}, "num_workers", "between 0 and"),
    ({"ng_k": -1}, "ng_k", "between 0 and"),
    ({"lr": 0.0}, "lr", "above 0"),
    ({"lr": float("nan")}, "lr", "finite"),
    ({"lr": float("inf")}, "lr", "finite"),
    ({"weight_decay": -0.1}, "weight_decay", "0 or more"),
    ({"dropout": 1.0}, "dropout", "[0, 1)"),
    ({"dropout": float("nan")}, "dropout", "[0, 1)"),
    ({"embed_dim": 30, "num_heads": 4}, "embed_dim", "multiple of num_heads"),
    ({"features": "title,smell"}, "features", "unknown feature 'smell'"),
    ({"features": "category"}, "features", "must include 'title'"),
    ({"epochs": True}, "epochs", "of type int"),
    ({"lr": "fast"}, "lr", "of type float"),
])
def test_train_config_refuses_bad_values_naming_the_key(changes: dict, key: str, phrase: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(**changes)
    assert err.value.key == key and phrase in str(err.value) and str(err.value).startswith(key)
    assert isinstance(err.value, RecsysError) and "\n" not in str(err.value)
    # flags go through dataclasses.replace, which runs the same checks
    with pytest.raises(ConfigError):
        with_overrides(TrainConfig(), **changes)


def test_train_config_accepts_the_defaults_and_bounds() -> None:
    cfg = TrainConfig(seeds=MAX_SEEDS, lr=1, checkpoint_every=0, ng_k=0, dropout=0.0)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)  # an int from TOML is a float setting
    assert cfg.seed_list == list(range(1, MAX_SEEDS + 1)) and cfg.feature_names == ("title", "category")
    assert dataclasses.replace(cfg, seeds=2).seed_list == [1, 2]


def test_bad_train_value_in_genre_toml_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "genre.toml"
    path.write_text("[train]\nseeds = 99999999999\n")
    with pytest.raises(UserError) as err:
        load_config(path)
    assert f"{path} [train].seeds: must be between 1 and {MAX_SEEDS}" in str(err.value)


def test_bad_train_value_in_genre_toml_is_one_line_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genre_local.cli import app

    path = tmp_path / "genre.toml"
    path.write_text("[train]\nlr = -1.0\n")
    result = CliRunner().invoke(app, ["--config", str(path), "data", "stats", "--name", "x"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "[train].lr: must be a finite number above 0" in lines[0]
