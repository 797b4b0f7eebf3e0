"""The synthetic MIND generator: determinism, MIND format, realism, learnability, CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from genre_local.data import synth
from genre_local.data.synth import SynthSpec, write_synthetic_mind
from genre_local.data.synth_vocab import CATEGORY_VOCAB, CITY_STATE, STATE_CITIES, STATE_POPULATION, TEAMS
from genre_local.data.taxonomy import CATEGORIES, PROFILE_TOPICS, US_STATES
from recsys.catalog import NEW_USER_MAX_HISTORY
from genre_local.errors import UserError

SPLITS = ("train", "dev", "test")
FILES = [f"{s}/{f}" for s in SPLITS for f in ("news.tsv", "behaviors.tsv")] + ["truth.tsv"]
SMALL = SynthSpec(news=300, users=120, seed=3)

# ---------------------------------------------------------------- pure readers and the baseline


def read_news(path: Path) -> dict[str, list[str]]:
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        rows[fields[0]] = fields
    return rows


def read_behaviors(path: Path) -> list[tuple[int, str, str, list[str], list[tuple[str, int]]]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        impression_id, user, time, history, impressions = line.split("\t")
        candidates = [(token.rsplit("-", 1)[0], int(token.rsplit("-", 1)[1])) for token in impressions.split(" ")]
        rows.append((int(impression_id), user, time, history.split(" ") if history else [], candidates))
    return rows


def impression_auc(scores: list[float], labels: list[int]) -> float | None:
    """ROC AUC of one impression (ties count half); None without both classes."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        return None
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def popularity_category_auc(root: Path, split: str, category_weight: float = 0.3) -> float:
    """Mean per-impression AUC of smoothed train CTR + the user's category share, from the tsv files only.

    The user's categories come from the history plus the user's train clicks; news never seen
    in train get the prior CTR, so fresh news sit mid-list instead of at the bottom.
    """
    category = {nid: fields[1] for s in ("train", split) for nid, fields in read_news(root / s / "news.tsv").items()}
    train = read_behaviors(root / "train" / "behaviors.tsv")
    shows, clicks, liked = Counter(), Counter(), defaultdict(Counter)
    for _, user, _, _, candidates in train:
        for nid, label in candidates:
            shows[nid] += 1
            clicks[nid] += label
            if label:
                liked[user][category[nid]] += 1
    prior, strength = 0.1, 5.0
    aucs = []
    for _, user, _, history, candidates in read_behaviors(root / split / "behaviors.tsv"):
        taste = Counter(category[nid] for nid in history) + liked[user]
        total = max(1, sum(taste.values()))
        scores = [
            (clicks[nid] + prior * strength) / (shows[nid] + strength) + category_weight * taste[category[nid]] / total
            for nid, _ in candidates
        ]
        auc = impression_auc(scores, [label for _, label in candidates])
        if auc is not None:
            aucs.append(auc)
    return float(np.mean(aucs))


def places_in(text: str) -> list[str]:
    """States named in a text, through the state or one of its cities (longest name wins)."""
    names = sorted(CITY_STATE, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b")
    return [CITY_STATE[m.group(1)] for m in pattern.finditer(text)]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "small"
    write_synthetic_mind(out, SMALL)
    return out


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "default"
    write_synthetic_mind(out, SynthSpec())
    return out


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes(small: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    summary = write_synthetic_mind(again, SMALL)
    assert sorted(str(p.relative_to(again)) for p in again.rglob("*") if p.is_file()) == sorted(FILES)
    for rel in FILES:
        assert (again / rel).read_bytes() == (small / rel).read_bytes(), rel
    written = {nid for s in SPLITS for nid in read_news(small / s / "news.tsv")}
    assert summary.news == len(written) > 0.8 * 300 and summary.users == 120
    assert summary.impressions == {s: len(read_behaviors(small / s / "behaviors.tsv")) for s in SPLITS}


def test_other_seed_gives_other_data(small: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_synthetic_mind(other, SynthSpec(news=300, users=120, seed=4))
    for rel in FILES:
        assert (other / rel).read_bytes() != (small / rel).read_bytes(), rel


def test_bytes_do_not_depend_on_the_process_hash_seed(tmp_path: Path) -> None:
    # Set or str-hash ordering would differ between processes, not within one.
    code = (
        "import sys, hashlib; from pathlib import Path; from genre_local.data.synth import SynthSpec, generate_synthetic_mind; "
        "files, _ = generate_synthetic_mind(SynthSpec(news=200, users=40, seed=5)); "
        "print(hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest())"
    )
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1


# ---------------------------------------------------------------- format


def test_news_files_have_mind_columns_and_entities(small: Path) -> None:
    subcategories = {c: {s.name for s in CATEGORY_VOCAB[c].subcategories} for c in CATEGORIES}
    for split in SPLITS:
        for line in (small / split / "news.tsv").read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            assert len(fields) == 8, line
            nid, category, subcategory, title, abstract, url, title_entities, abstract_entities = fields
            assert re.fullmatch(r"N[1-9]\d*", nid)
            assert subcategory in subcategories[category]
            assert title and title == title.strip()
            assert re.fullmatch(r"https://assets\.msn\.com/labs/mind/AA[0-9A-Z]{5}\.html", url)
            for text, column in ((title, title_entities), (abstract, abstract_entities)):
                entities = json.loads(column)
                for entity in entities:
                    assert set(entity) == {"Label", "Type", "WikidataId", "Confidence", "OccurrenceOffsets", "SurfaceForms"}
                    assert entity["Type"] in {"G", "P", "O"} and re.fullmatch(r"Q\d+", entity["WikidataId"])
                    surface = entity["SurfaceForms"][0]
                    assert all(text[o: o + len(surface)] == surface for o in entity["OccurrenceOffsets"])
                if not text:
                    assert entities == []


def test_shared_news_are_identical_across_splits(small: Path) -> None:
    news = {s: read_news(small / s / "news.tsv") for s in SPLITS}
    shared = set(news["train"]) & set(news["dev"])
    assert shared, "histories make some news appear in several splits, as in MIND"
    assert all(news["train"][nid] == news["dev"][nid] for nid in shared)
    urls = [fields[5] for split in news.values() for fields in split.values()]
    assert len(set(urls)) == len({nid for split in news.values() for nid in split})


def test_behaviors_have_mind_columns_times_and_labels(small: Path) -> None:
    days = {"train": {9, 10, 11, 12, 13}, "dev": {14}, "test": {15}}
    for split in SPLITS:
        lines = (small / split / "behaviors.tsv").read_text(encoding="utf-8").splitlines()
        assert all(len(line.split("\t")) == 5 for line in lines)
        news = read_news(small / split / "news.tsv")
        rows = read_behaviors(small / split / "behaviors.tsv")
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
        times = []
        for _, user, time, history, candidates in rows:
            assert re.fullmatch(r"U[1-9]\d*", user)
            # MIND writes no zero padding for month, day and hour.
            assert re.fullmatch(r"[1-9]\d?/[1-9]\d?/2019 [1-9]\d?:\d\d:\d\d [AP]M", time), time
            when = datetime.strptime(time, "%m/%d/%Y %I:%M:%S %p")
            assert when.month == 11 and when.day in days[split]
            times.append(when)
            assert 5 <= len(candidates) <= 20
            assert len({nid for nid, _ in candidates}) == len(candidates)
            assert {label for _, label in candidates} <= {0, 1}
            assert 1 <= sum(label for _, label in candidates) <= 2
            assert len(set(history)) == len(history)
            assert set(history) <= set(news) and {nid for nid, _ in candidates} <= set(news)
        assert times == sorted(times)
    two_clicks = [sum(label for _, label in c) == 2 for s in SPLITS for *_, c in read_behaviors(small / s / "behaviors.tsv")]
    assert 0.1 < np.mean(two_clicks) < 0.5


def test_history_is_fixed_per_user(small: Path) -> None:
    history_of: dict[str, list[str]] = {}
    for split in SPLITS:
        for _, user, _, history, _ in read_behaviors(small / split / "behaviors.tsv"):
            assert history_of.setdefault(user, history) == history


# ---------------------------------------------------------------- users and truth


def test_cold_and_empty_users_and_every_truth_user_in_train(default: Path) -> None:
    histories = {user: len(history) for s in SPLITS for _, user, _, history, _ in read_behaviors(default / s / "behaviors.tsv")}
    train_users = {user for _, user, *_ in read_behaviors(default / "train" / "behaviors.tsv")}
    assert len(histories) == len(train_users) == 600
    cold = sum(1 <= n <= NEW_USER_MAX_HISTORY for n in histories.values())
    empty = sum(n == 0 for n in histories.values())
    assert cold / len(histories) >= 0.25
    assert 0 < empty < 0.1 * len(histories)
    assert max(histories.values()) > 30
    per_user = {s: len(read_behaviors(default / s / "behaviors.tsv")) / 600 for s in SPLITS}
    assert 2 <= sum(per_user.values()) / 3 <= 4, per_user


def test_truth_file_lists_valid_topics_and_states(small: Path) -> None:
    lines = (small / "truth.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "user_id\ttopics\tregion"
    assert [line.split("\t")[0] for line in lines[1:]] == [f"U{u}" for u in range(1, 121)]
    counts = Counter()
    for line in lines[1:]:
        _, topics, region = line.split("\t")
        names = topics.split("|")
        assert 1 <= len(names) <= 4 and len(set(names)) == len(names)
        assert set(names) <= set(PROFILE_TOPICS)
        assert region in US_STATES
        counts[len(names)] += 1
    assert len(counts) >= 3, "users have 1-4 topics, not a fixed number"


def truth_of(root: Path) -> dict[str, tuple[list[str], str]]:
    lines = (root / "truth.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return {u: (t.split("|"), r) for u, t, r in (line.split("\t") for line in lines)}


def test_true_topics_drive_clicks(default: Path) -> None:
    topics_of = {s.name: set(s.topics) for c in CATEGORIES for s in CATEGORY_VOCAB[c].subcategories}
    truth = truth_of(default)
    news = read_news(default / "dev" / "news.tsv")
    hit = {1: [], 0: []}
    for _, user, _, _, candidates in read_behaviors(default / "dev" / "behaviors.tsv"):
        for nid, label in candidates:
            hit[label].append(bool(topics_of[news[nid][2]] & set(truth[user][0])))
    assert np.mean(hit[1]) > 1.5 * np.mean(hit[0])


# ---------------------------------------------------------------- text realism


def test_some_titles_contain_double_quotes(default: Path) -> None:
    titles = [fields[3] for fields in read_news(default / "train" / "news.tsv").values()]
    quoted = sum('"' in title for title in titles)
    assert 0.01 * len(titles) < quoted < 0.3 * len(titles)


def test_regions_are_named_in_text_and_match_home_states(default: Path) -> None:
    news = {nid: fields for s in SPLITS for nid, fields in read_news(default / s / "news.tsv").items()}
    regions = {nid: places_in(fields[3] + " " + fields[4]) for nid, fields in news.items()}
    assert 0.4 < np.mean([bool(r) for r in regions.values()]) < 0.9
    assert all(len(set(r)) == 1 for r in regions.values() if r), "one state per news"
    # Users read about their home state far more than its share of regional news.
    truth = truth_of(default)
    share = Counter(r[0] for r in regions.values() if r)
    total = sum(share.values())
    home, expected = 0, 0.0
    for _, user, _, history, _ in read_behaviors(default / "train" / "behaviors.tsv"):
        state = truth[user][1]
        regional = [regions[nid][0] for nid in history if regions[nid]]
        home += sum(r == state for r in regional)
        expected += len(regional) * share[state] / total
    assert home > 3 * expected


def test_vocabulary_is_consistent() -> None:
    assert tuple(CATEGORY_VOCAB) == CATEGORIES
    assert set(STATE_CITIES) == set(US_STATES) == set(STATE_POPULATION)
    assert len(CITY_STATE) == len(US_STATES) + sum(len(c) for c in STATE_CITIES.values()), "a place name repeats"
    covered = {t for v in CATEGORY_VOCAB.values() for s in v.subcategories for t in s.topics}
    assert covered == set(PROFILE_TOPICS)
    for league, teams in TEAMS.items():
        for team, state in teams:
            assert set(places_in(team)) == {state}, (league, team)
    for vocab in CATEGORY_VOCAB.values():
        for sub in vocab.subcategories:
            assert sub.topics and set(sub.topics) <= set(PROFILE_TOPICS) and len(sub.things) >= 3
            assert sub.league is None or sub.league in TEAMS
            assert not any(places_in(thing) for thing in sub.things), sub.name  # places come from regions only


# ---------------------------------------------------------------- learnability


def test_popularity_and_category_baseline_beats_random(default: Path) -> None:
    assert popularity_category_auc(default, "dev") > 0.6
    assert popularity_category_auc(default, "test") > 0.55


# ---------------------------------------------------------------- output folder


def test_refuses_non_empty_folder_unless_forced(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty.*--force"):
        write_synthetic_mind(out, SMALL)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (out / "train").mkdir()
    (out / "train" / "stale.tsv").write_text("old")
    write_synthetic_mind(out, SMALL, force=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "train" / "stale.tsv").exists()
    assert all((out / rel).read_bytes() == (small / rel).read_bytes() for rel in FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no temp folder left behind"


def test_empty_folder_is_fine_and_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_synthetic_mind(tmp_path / "empty", SMALL)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        write_synthetic_mind(tmp_path / "file", SMALL)


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_open(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise OSError("disk full")
        return open(*args, **kwargs)

    monkeypatch.setattr(synth, "open", failing_open, raising=False)
    with pytest.raises(OSError, match="disk full"):
        write_synthetic_mind(tmp_path / "out", SMALL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"news": 10}, "--news 10"), ({"users": 2}, "--users 2"), ({"seed": -1}, "--seed -1"),
])
def test_spec_rejects_tiny_or_negative_values(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(UserError, match=message):
        SynthSpec(**kwargs)


# ---------------------------------------------------------------- CLI


def test_cli_writes_refuses_and_forces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genre_local.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENRE_CONFIG", raising=False)
    out = tmp_path / "data"
    args = ["data", "synth", str(out), "--news", "300", "--users", "120"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"\d+ news, 120 users, \d+ train impressions", result.stdout), result.stdout
    assert (out / "truth.tsv").read_text(encoding="utf-8").count("\n") == 121

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2
    assert again.stderr.count("\n") == 1 and "--force" in again.stderr and "Traceback" not in again.output

    forced = CliRunner().invoke(app, [*args, "--seed", "3", "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / "truth.tsv").read_bytes() == write_and_read_truth(tmp_path / "direct")


def write_and_read_truth(out: Path) -> bytes:
    write_synthetic_mind(out, SMALL)
    return (out / "truth.tsv").read_bytes()


def test_cli_rejects_bad_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genre_local.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "d"), "--news", "5"])
    assert result.exit_code == 2
    assert "--news 5" in result.stderr
    assert not (tmp_path / "d").exists()
