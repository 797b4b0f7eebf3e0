"""The rules of genre_local/run_match.py: which stored settings make two runs the same run, and
which must agree for two runs to be compared."""

from __future__ import annotations

import dataclasses

from genre_local.run_match import compared_settings, differing_settings, seed_span, settings_of
from recsys.config import TrainConfig


def _config(**changes) -> dict:
    return dataclasses.asdict(TrainConfig()) | changes


def test_settings_that_change_neither_learning_nor_metrics_do_not_count():
    base = settings_of(_config(), "nrms", profile=False)
    # Regression: a run evaluated in batches of 512 counted as another run than one of 256, and
    # report flagged the two as trained with other settings; evaluation batching changes neither.
    for changed in (_config(eval_batch_size=512), _config(threads=2), _config(checkpoint_every=0), _config(seed=9)):
        assert settings_of(changed, "nrms", profile=False) == base
    assert settings_of(_config(lr=1e-4), "nrms", profile=False) != base
    assert settings_of(_config(epochs=5), "nrms", profile=False) != base


def test_interest_fusion_is_the_variants_own_when_comparing():
    with_profile = _config(interest_fusion="concat")
    assert settings_of(with_profile, "nrms", profile=True) != settings_of(_config(), "nrms", profile=True)
    assert compared_settings(with_profile, "nrms") == compared_settings(_config(), "nrms")


def test_differing_settings_name_the_settings_and_count_an_unrecorded_one():
    a, b = compared_settings(_config(), "nrms"), compared_settings(_config(lr=1e-4, dropout=0.1), "nrms")
    assert differing_settings([a, b]) == ["dropout", "lr"]
    assert differing_settings([a, dict(a)]) == []
    old = {k: v for k, v in a.items() if k != "holdout_fraction"}  # stored before the setting existed
    assert differing_settings([a, old]) == ["holdout_fraction"]


def test_seed_span_names_runs_of_seeds():
    assert seed_span([5]) == "seed 5"
    assert seed_span([4, 1, 2, 3]) == "seeds 1-4"
    assert seed_span([1, 3, 4, 4]) == "seeds 1, 3-4"
