"""Chance levels of profile fidelity: exact expectations of random profiles, checked by hand and
against an enumeration of every random profile on a tiny label set."""

from __future__ import annotations

import itertools

import pytest

from genre_local.pipeline.fidelity import ChanceLevels, chance_levels, format_fidelity, profile_fidelity


def test_chance_levels_by_hand_on_the_real_label_sets():
    profiles = {"U1": (["health", "food", "travel"], ["Ohio"]), "U2": (["finance"], [])}
    truth = {"U1": (["health", "education"], "Texas"), "U2": (["weather", "food", "history"], "")}
    chance = chance_levels(profiles, truth)
    # U1: 3 topics drawn of 19, 2 true: P@3 = 3 * 2/19 / 3, recall = 3/19; 1 state of 50: 1/50.
    # U2: 1 topic: P@3 = 1 * 3/19 / 3, recall = 1/19; no true region and none drawn: certain hit.
    assert chance.precision_at_3 == pytest.approx((2 / 19 + 1 / 19) / 2)
    assert chance.recall == pytest.approx((3 / 19 + 1 / 19) / 2)
    assert chance.region_accuracy == pytest.approx((1 / 50 + 1.0) / 2)


def test_chance_levels_equal_the_mean_over_every_random_profile_of_the_same_size():
    topics, regions = ("a", "b", "c", "d", "e"), ("X", "Y", "Z")
    profiles = {"U1": (["a", "b", "c", "d"], ["X", "Y"]), "U2": (["e"], ["Z"])}
    truth = {"U1": (["b", "e"], "Z"), "U2": (["a", "b", "c"], "")}
    expected = {"p": 0.0, "r": 0.0, "g": 0.0}
    for user, (predicted_topics, predicted_regions) in profiles.items():
        draws = [
            (list(t), list(g))
            for t in itertools.permutations(topics, len(predicted_topics))
            for g in itertools.combinations(regions, len(predicted_regions))
        ]
        for t, g in draws:
            f = profile_fidelity({user: (t, g)}, {user: truth[user]})
            expected["p"] += f.precision_at_3 / len(draws) / len(profiles)
            expected["r"] += f.recall / len(draws) / len(profiles)
            expected["g"] += f.region_accuracy / len(draws) / len(profiles)
    chance = chance_levels(profiles, truth, topics, regions)
    assert chance == ChanceLevels(pytest.approx(expected["p"]), pytest.approx(expected["r"]), pytest.approx(expected["g"]))


def test_chance_levels_edge_cases():
    assert chance_levels({"U1": (["health"], [])}, {"U2": (["health"], "Ohio")}) is None
    # A region predicted where the truth has none is always wrong; a true topic outside the list
    # can never be drawn; an empty truth counts as recalled (profile_fidelity's convention).
    chance = chance_levels(
        {"U1": (["health"], ["Ohio"]), "U2": ([], [])},
        {"U1": (["not a topic"], ""), "U2": ([], "Ohio")},
    )
    assert chance == ChanceLevels(0.0, pytest.approx(0.5), 0.0)
    # Duplicates in a profile do not count twice.
    assert chance_levels({"U1": (["health", "health"], [])}, {"U1": (["health"], "")}).recall == pytest.approx(1 / 19)


def test_fidelity_carries_its_chance_and_ratio():
    profiles = {"U1": (["health", "food", "travel"], ["Texas"])}
    truth = {"U1": (["health", "education"], "Texas")}
    f = profile_fidelity(profiles, truth)
    assert f.chance == chance_levels(profiles, truth)
    assert f.ratio_to_chance().precision_at_3 == pytest.approx((1 / 3) / (2 / 19))
    assert f.ratio_to_chance().region_accuracy == pytest.approx(50.0)
    line = format_fidelity(f)
    assert "precision@3 0.333 (chance 0.105, 3.2x)" in line and "region accuracy 1.000 (chance 0.020, 50.0x)" in line
