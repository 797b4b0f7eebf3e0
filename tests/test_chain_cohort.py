"""`train` scores Table 7's variants (original, ng, chain) on the Chain cohort as well: the users
whose profile from the generation source names at least one valid topic (GENRE Table 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.store import open_store
from tests.support_train import add_all_generations, add_generation, make_store, one_thread, small_train_toml

runner = CliRunner()
COHORT = "chain-cohort:m/compact"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cohort")
    db = make_store(folder / "s.duckdb", users=12, news_per_cat=8)
    add_all_generations(db, users=12)
    with open_store(db) as store:  # a newer round leaves U1 and U2 without a valid topic
        for user in ("U1", "U2"):
            add_generation(store, "tiny", "profile", user, {"topics": ["not-a-topic"], "regions": ["Ohio"]}, round_=2)
    config = folder / "genre.toml"
    config.write_text(small_train_toml(epochs=1))
    with one_thread():
        for variant in ("original", "chain", "ns"):
            result = runner.invoke(app, ["--db", str(db), "--config", str(config), "train", "--model", "din",
                                         "--dataset", "tiny", "--variant", variant])
            assert result.exit_code == 0, result.output
    return db


@pytest.mark.slow  # three trainings (about 30 s each on a shared 2-core machine)
def test_original_and_chain_runs_store_the_cohort_and_others_do_not(trained: Path) -> None:
    with open_store(trained) as store:
        groups = dict(store.conn.execute(
            "SELECT r.variant, list(DISTINCT m.user_group ORDER BY m.user_group) FROM runs r "
            "JOIN run_metrics m USING (run_id) WHERE m.split = 'test' GROUP BY r.variant").fetchall())
    assert groups["original"] == groups["chain"] == ["all", COHORT, "new", "warm"]
    assert groups["ns"] == ["all", "new", "warm"]


@pytest.mark.slow
def test_cohort_impressions_are_those_of_users_with_a_valid_topic(trained: Path) -> None:
    with open_store(trained) as store:
        expected = store.conn.execute(
            "SELECT count(*) FROM impressions WHERE dataset = 'tiny' AND split = 'test' "
            "AND user_id NOT IN ('U1', 'U2') AND list_contains(labels, 1)").fetchone()[0]
        everyone = store.conn.execute(
            "SELECT count(*) FROM impressions WHERE dataset = 'tiny' AND split = 'test' AND list_contains(labels, 1)"
        ).fetchone()[0]
        stored = dict(store.conn.execute(
            "SELECT r.variant, m.value FROM runs r JOIN run_metrics m USING (run_id) WHERE m.split = 'test' "
            "AND m.user_group = ? AND m.metric = 'impressions'", [COHORT]).fetchall())
    assert expected < everyone
    assert stored == {"original": expected, "chain": expected}
