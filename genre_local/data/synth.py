"""Synthetic MIND-format dataset with known user interests: `genre-local data synth`.

The generative story, chosen so that each GENRE stage has something real to find:
- News: one of GENRE's 18 categories and a subcategory, a publish day, a latent Zipf-like
  popularity, and for a good share a US state named in the text (a city or the state itself).
  Each subcategory maps to GENRE profile topics (synth_vocab), which drive who clicks it.
- Users: 1-4 true topics with weights (plus a little noise over all topics), a home state,
  an activity level. truth.tsv records the topics (strongest first) and the state, so a
  profiler's output can be scored.
- History: clicks before the log window (days -13..0), fixed per user like MIND; each click
  picks a topic from the user's mixture and then a popular news of that topic, or a news about
  the home state. 36 % of users are cold (1-5 clicks) or empty.
- Impressions: days 1-5 train, 6 dev, 7 test. Each shows 5-20 recent news (sampled by
  popularity) and the user clicks 1-2 of them by a softmax over popularity, topic affinity and
  a home-state bonus, so popularity and category affinity beat chance on dev and test.

Output is byte-identical for a seed: all randomness comes from generators seeded by it and
all orderings are stable.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from genre_local.data.synth_vocab import (
    CATEGORY_TEMPLATES,
    CATEGORY_VOCAB,
    COMPANIES,
    FIRST_NAMES,
    GENERIC,
    LAST_NAMES,
    NUMBERS,
    QUOTES,
    STATE_CITIES,
    STATE_POPULATION,
    TEAM,
    TEAMS,
    Subcategory,
)
from genre_local.data.taxonomy import CATEGORIES, PROFILE_TOPICS, US_STATES
from genre_local.config import SYNTH_NEWS_RANGE, SYNTH_USERS_RANGE, ConfigValueError, SynthConfig
from genre_local.files import failures_name
from genre_local.errors import UserError

MIN_NEWS, MAX_NEWS = SYNTH_NEWS_RANGE
MIN_USERS, MAX_USERS = SYNTH_USERS_RANGE

SPLIT_DAYS: dict[str, tuple[int, ...]] = {"train": (1, 2, 3, 4, 5), "dev": (6,), "test": (7,)}
HISTORY_DAYS = 14  # news published on days -13..0 feed the histories
LOG_DAYS = 7
DAY_ZERO = date(2019, 11, 8)  # day 1 is 11/9/2019, MIND's first logged day


@dataclass(frozen=True)
class SynthSpec:
    news: int = 1500
    users: int = 600
    seed: int = 7

    def __post_init__(self) -> None:
        # The same bounds as genre.toml [synth]: one definition, in SynthConfig.
        try:
            SynthConfig(news=self.news, users=self.users, seed=self.seed)
        except ConfigValueError as exc:
            raise exc.as_flag() from None


@dataclass(frozen=True)
class SynthSummary:
    news: int
    users: int
    impressions: dict[str, int] = field(default_factory=dict)  # split -> count


@dataclass(frozen=True)
class SynthParams:
    """Knobs of the generative story (defaults tuned for MIND-like statistics)."""

    zipf_exponent: float = 1.0  # popularity of the news of rank r is r ** -exponent
    show_popularity: float = 0.6  # impressions show news with probability ~ popularity ** this
    click_popularity: float = 0.6  # weight of log popularity in the click softmax
    click_affinity: float = 5.0  # weight of topic affinity (normalized to the user's top topic)
    click_home: float = 1.2  # logit bonus for news about the user's home state
    history_popularity: float = 0.8  # history clicks pick news of a topic ~ popularity ** this
    history_home_rate: float = 0.2  # share of history clicks on home-state news
    topic_counts_p: tuple[float, ...] = (0.3, 0.35, 0.22, 0.13)  # P(1..4 true topics)
    topic_noise: float = 0.1  # interest mass spread over all topics, below any true topic
    empty_history_rate: float = 0.04
    cold_history_rate: float = 0.32  # 1-5 history clicks
    warm_history_median: float = 15.0
    two_clicks_rate: float = 0.3
    shown_min: int = 5
    shown_max: int = 20
    abstract_missing_rate: float = 0.04
    secondary_topic_weight: float = 0.6  # a subcategory's later topics count this much


DEFAULT_PARAMS = SynthParams()


def write_synthetic_mind(out: Path, spec: SynthSpec, force: bool = False) -> SynthSummary:
    """Write OUT/{train,dev,test}/{news,behaviors}.tsv and OUT/truth.tsv; refuse a non-empty OUT."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"{out}: folder is not empty; pass --force to overwrite or choose another folder")
    files, summary = generate_synthetic_mind(spec)
    _write_atomically(out, files)
    return summary


def generate_synthetic_mind(spec: SynthSpec, params: SynthParams = DEFAULT_PARAMS) -> tuple[dict[str, str], SynthSummary]:
    """The dataset as {relative path: file text}, plus its summary. Pure given the spec."""
    seeds = np.random.SeedSequence(spec.seed).spawn(4)
    news = _sample_news(spec.news, np.random.default_rng(seeds[0]), params)
    text_rng = random.Random(int(seeds[1].generate_state(1)[0]))
    news_lines = _render_news_lines(news, text_rng, spec.seed, params)
    users = _sample_users(spec.users, news, np.random.default_rng(seeds[2]), params)
    log_rng = np.random.default_rng(seeds[3])
    histories = _sample_histories(users, news, log_rng, params)
    impressions = _sample_impressions(users, news, log_rng, params)

    nids = [f"N{i + 1}" for i in range(spec.news)]
    history_text = [" ".join(nids[i] for i in items) for items in histories]
    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    written: set[int] = set()
    for split, days in SPLIT_DAYS.items():
        rows = np.flatnonzero(np.isin(impressions.day, days))
        rows = rows[np.lexsort((impressions.user[rows], impressions.second[rows], impressions.day[rows]))]
        files[f"{split}/behaviors.tsv"] = _behaviors_text(impressions, rows, nids, history_text)
        split_users = np.unique(impressions.user[rows])
        referenced = np.unique(np.concatenate(
            [impressions.shown[rows][impressions.shown[rows] >= 0]]
            + [np.asarray(histories[u], dtype=np.int64) for u in split_users]
        ))
        files[f"{split}/news.tsv"] = "".join(news_lines[i] for i in referenced)
        written.update(referenced.tolist())
        counts[split] = int(rows.size)
    files["truth.tsv"] = _truth_text(users)
    # Unpopular old news nobody clicked or was shown are never written, as in MIND.
    return files, SynthSummary(news=len(written), users=spec.users, impressions=counts)


# ---------------------------------------------------------------- news


@dataclass(frozen=True)
class _News:
    category: np.ndarray  # index into CATEGORIES
    subcategory: np.ndarray  # index into _SUBCATEGORIES
    team: np.ndarray  # index into the subcategory league's TEAMS, -1 when not team news
    region: np.ndarray  # index into US_STATES, -1 when no place is named
    day: np.ndarray  # publish day, -13..7
    log_pop: np.ndarray
    topic_index: np.ndarray  # (n, 3) indices into PROFILE_TOPICS, padded with len(PROFILE_TOPICS)
    topic_weight: np.ndarray  # (n, 3) weights, 0 where padded


# Flattened subcategories: (category index, Subcategory), in vocabulary order.
_SUBCATEGORIES: tuple[tuple[int, Subcategory], ...] = tuple(
    (c, sub) for c, name in enumerate(CATEGORIES) for sub in CATEGORY_VOCAB[name].subcategories
)
_TOPIC_INDEX = {t: i for i, t in enumerate(PROFILE_TOPICS)}
_NO_TOPIC = len(PROFILE_TOPICS)
_MAX_TOPICS = 3


def _state_weights() -> np.ndarray:
    # Flattened population: big states dominate, small ones still show up at default size.
    w = np.array([STATE_POPULATION[s] for s in US_STATES]) ** 0.7
    return w / w.sum()


def _sample_news(n: int, rng: np.random.Generator, params: SynthParams) -> _News:
    cat_weight = np.array([CATEGORY_VOCAB[c].weight for c in CATEGORIES])
    category = rng.choice(len(CATEGORIES), size=n, p=cat_weight / cat_weight.sum())
    sub_start = np.zeros(len(CATEGORIES), dtype=np.int64)
    sub_count = np.array([len(CATEGORY_VOCAB[c].subcategories) for c in CATEGORIES])
    sub_start[1:] = np.cumsum(sub_count)[:-1]
    subcategory = sub_start[category] + (rng.random(n) * sub_count[category]).astype(np.int64)

    # Equal news per day, so every day's candidate pool has the same size.
    day = rng.permutation(np.arange(n) % (HISTORY_DAYS + LOG_DAYS)) - (HISTORY_DAYS - 1)

    state_index = {s: i for i, s in enumerate(US_STATES)}
    region = np.full(n, -1, dtype=np.int64)
    team = np.full(n, -1, dtype=np.int64)
    named = rng.random(n) < np.array([CATEGORY_VOCAB[c].region_rate for c in CATEGORIES])[category]
    home = rng.choice(len(US_STATES), size=n, p=_state_weights())
    region[named] = home[named]
    team_pick = rng.random(n)
    for s, (_, sub) in enumerate(_SUBCATEGORIES):
        if sub.league is None:
            continue
        rows = np.flatnonzero(subcategory == s)
        teams = TEAMS[sub.league]
        team[rows] = (team_pick[rows] * len(teams)).astype(np.int64)
        region[rows] = [state_index[teams[t][1]] for t in team[rows]]

    ranks = rng.permutation(n) + 1
    log_pop = -params.zipf_exponent * np.log(ranks)

    sub_topic_index = np.full((len(_SUBCATEGORIES), _MAX_TOPICS), _NO_TOPIC, dtype=np.int64)
    sub_topic_weight = np.zeros((len(_SUBCATEGORIES), _MAX_TOPICS))
    for s, (_, sub) in enumerate(_SUBCATEGORIES):
        for k, topic in enumerate(sub.topics[:_MAX_TOPICS]):
            sub_topic_index[s, k] = _TOPIC_INDEX[topic]
            sub_topic_weight[s, k] = 1.0 if k == 0 else params.secondary_topic_weight
    return _News(category, subcategory, team, region, day, log_pop,
                 sub_topic_index[subcategory], sub_topic_weight[subcategory])


def _render_news_lines(news: _News, rnd: random.Random, seed: int, params: SynthParams) -> list[str]:
    """One news.tsv line (with newline) per news; text drawn from the subcategory vocabulary."""
    lines = []
    for i in range(news.category.size):
        category = CATEGORIES[int(news.category[i])]
        sub = _SUBCATEGORIES[int(news.subcategory[i])][1]
        region = int(news.region[i])
        team = TEAMS[sub.league][int(news.team[i])][0] if sub.league else None
        title, title_entities, abstract, abstract_entities = _render_text(
            category, sub, US_STATES[region] if region >= 0 else None, team, rnd, params.abstract_missing_rate
        )
        lines.append("\t".join((
            f"N{i + 1}", category, sub.name, title, abstract, _url(i, seed),
            _entities_json(title, title_entities, rnd), _entities_json(abstract, abstract_entities, rnd),
        )) + "\n")
    return lines


def _render_text(
    category: str, sub: Subcategory, state: str | None, team: str | None, rnd: random.Random, missing_rate: float
) -> tuple[str, list[tuple[str, str, str]], str, list[tuple[str, str, str]]]:
    places = (state, *STATE_CITIES[state]) if state else ()
    slots = {
        "thing": rnd.choice(sub.things),
        "place": rnd.choice(places) if places else "",
        "person": f"{rnd.choice(FIRST_NAMES)} {rnd.choice(LAST_NAMES)}",
        "company": rnd.choice(COMPANIES.get(category, COMPANIES["default"])),
        "team": team or "",
        "num": rnd.choice(NUMBERS),
        "quote": rnd.choice(QUOTES),
    }
    kind = "team" if team else ("place" if state else "plain")
    title = _sentence(_pick(rnd, _TITLE_POOLS[category, kind]).format(**slots))
    title_entities = _slot_entities(slots, state)
    if rnd.random() < missing_rate:
        return title, title_entities, "", []
    # The abstract may name another place of the same state (city in the title, state here).
    slots["place"] = rnd.choice(places) if places else ""
    slots["person"] = f"{rnd.choice(FIRST_NAMES)} {rnd.choice(LAST_NAMES)}"
    abstract = _sentence(_pick(rnd, _ABSTRACT_POOLS[category, kind]).format(**slots))
    return title, title_entities, abstract, _slot_entities(slots, state)


def _template_pools(
    which: str,
) -> dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]]:
    """(category, news kind) -> (category templates, generic templates) that fit that kind."""
    fits = {
        "team": lambda t: "{place}" not in t,
        "place": (lambda t: "{place}" in t) if which == "titles" else (lambda t: True),
        "plain": lambda t: "{place}" not in t and "{team}" not in t,
    }
    pools = {}
    for category in CATEGORIES:
        for kind, fit in fits.items():
            own = TEAM if kind == "team" else CATEGORY_TEMPLATES[category]
            generic = TEAM if kind == "team" else GENERIC
            pools[category, kind] = (
                tuple(t for t in getattr(own, which) if fit(t)),
                tuple(t for t in getattr(generic, which) if fit(t)),
            )
    return pools


# Region news name their place in the title (the abstract may too); plain news never do.
_TITLE_POOLS = _template_pools("titles")
_ABSTRACT_POOLS = _template_pools("abstracts")
_OWN_TEMPLATE_RATE = 0.75  # category templates over generic ones: more varied, more topical text


def _pick(rnd: random.Random, pools: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    own, generic = pools
    return rnd.choice(own if own and (not generic or rnd.random() < _OWN_TEMPLATE_RATE) else generic)


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _slot_entities(slots: dict[str, str], state: str | None) -> list[tuple[str, str, str]]:
    """(surface form, MIND entity type, label) of the named entities the slots may put in a text."""
    entities = [(slots["person"], "P", slots["person"]), (slots["company"], "O", slots["company"])]
    if slots["place"]:
        entities.append((slots["place"], "G", slots["place"]))
        if slots["place"] != state and state is not None:
            entities.append((state, "G", state))  # only if the text names the state too
    if slots["team"]:
        entities.append((slots["team"], "O", slots["team"]))
    return entities


def _entities_json(text: str, candidates: list[tuple[str, str, str]], rnd: random.Random) -> str:
    found = []
    for surface, kind, label in candidates:
        offsets = _occurrences(text, surface)
        if offsets:
            found.append((offsets[0], surface, kind, label, offsets))
    found.sort()
    return json.dumps([
        {
            "Label": label,
            "Type": kind,
            "WikidataId": f"Q{zlib.crc32(label.encode()) % 90_000_000 + 10_000_000}",
            "Confidence": round(0.9 + 0.1 * rnd.random(), 3),
            "OccurrenceOffsets": offsets,
            "SurfaceForms": [surface],
        }
        for _, surface, kind, label, offsets in found
    ])


def _occurrences(text: str, surface: str) -> list[int]:
    offsets, start = [], text.find(surface)
    while start >= 0:
        offsets.append(start)
        start = text.find(surface, start + len(surface))
    return offsets


def _url(i: int, seed: int) -> str:
    # A bijection of the index modulo 36**5 (104729 is prime to 36), so ids never collide.
    code = (i * 104729 + seed * 7919 + 1_000_003) % 36**5
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    chars = "".join(digits[(code // 36**k) % 36] for k in range(4, -1, -1))
    return f"https://assets.msn.com/labs/mind/AA{chars}.html"


# ---------------------------------------------------------------- users


@dataclass(frozen=True)
class _Users:
    topics: list[list[int]]  # true topics per user, strongest first
    weight: np.ndarray  # (users, topics + 1) interest mixture; last column is the padding topic, 0
    home: np.ndarray  # index into US_STATES
    activity: np.ndarray  # mean 1
    history_length: np.ndarray


def _sample_users(n: int, news: _News, rng: np.random.Generator, params: SynthParams) -> _Users:
    n_topics = len(PROFILE_TOPICS)
    # Users favour topics that have news, but every topic has takers.
    mass = np.bincount(news.topic_index.ravel(), weights=news.topic_weight.ravel(), minlength=n_topics + 1)
    preference = np.sqrt(mass[:n_topics] / mass[:n_topics].sum()) + 0.05
    preference /= preference.sum()

    p = np.array(params.topic_counts_p)
    k = rng.choice(np.arange(1, p.size + 1), size=n, p=p / p.sum())
    keys = np.log(preference)[None, :] + rng.gumbel(size=(n, n_topics))
    order = np.argsort(-keys, axis=1, kind="stable")[:, : p.size]  # topics without replacement
    raw = rng.gamma(1.5, size=(n, p.size)) * (np.arange(p.size)[None, :] < k[:, None])
    main = raw / raw.sum(axis=1, keepdims=True)
    # A floor keeps every true topic above the noise, so truth.tsv is recoverable from clicks.
    main = np.where(main > 0, 0.6 * main + 0.4 / k[:, None], 0.0)
    main = -np.sort(-main, axis=1)
    noise = rng.gamma(1.0, size=(n, n_topics))
    weight = np.zeros((n, n_topics + 1))
    weight[:, :n_topics] = params.topic_noise * noise / noise.sum(axis=1, keepdims=True)
    np.add.at(weight, (np.repeat(np.arange(n), p.size), order.ravel()), (1 - params.topic_noise) * main.ravel())
    topics = [[int(t) for t in order[u, : k[u]]] for u in range(n)]

    home = rng.choice(len(US_STATES), size=n, p=_state_weights())
    activity = rng.lognormal(0.0, 0.6, size=n)
    activity /= activity.mean()

    kind = rng.random(n)
    cold = rng.integers(1, 6, size=n)
    warm = np.minimum(6 + np.floor(rng.lognormal(np.log(params.warm_history_median), 0.8, size=n)), 150)
    history_length = np.where(
        kind < params.empty_history_rate, 0,
        np.where(kind < params.empty_history_rate + params.cold_history_rate, cold, warm),
    ).astype(np.int64)
    return _Users(topics, weight, home, activity, history_length)


def _truth_text(users: _Users) -> str:
    lines = ["user_id\ttopics\tregion\n"]
    for u, topics in enumerate(users.topics):
        lines.append(f"U{u + 1}\t{'|'.join(PROFILE_TOPICS[t] for t in topics)}\t{US_STATES[int(users.home[u])]}\n")
    return "".join(lines)


# ---------------------------------------------------------------- histories


def _sample_histories(users: _Users, news: _News, rng: np.random.Generator, params: SynthParams) -> list[list[int]]:
    """Each user's clicks before the log window, oldest first, no repeats."""
    n_users = users.home.size
    owner = np.repeat(np.arange(n_users), users.history_length)
    # Topic of each click from the owner's mixture (inverse CDF over the topic columns).
    cdf = np.cumsum(users.weight[:, : len(PROFILE_TOPICS)], axis=1)
    cdf /= cdf[:, -1:]
    topic = (cdf[owner] < rng.random(owner.size)[:, None]).sum(axis=1)
    topic = np.minimum(topic, len(PROFILE_TOPICS) - 1)
    picked = np.full(owner.size, -1, dtype=np.int64)

    early = news.day <= 0
    popularity = np.exp(params.history_popularity * news.log_pop)
    for t in range(len(PROFILE_TOPICS)):
        clicks = np.flatnonzero(topic == t)
        weight = (news.topic_weight * (news.topic_index == t)).sum(axis=1) * popularity * early
        picked[clicks] = _draw(rng, weight, clicks.size)
    home_click = rng.random(owner.size) < params.history_home_rate
    for s in range(len(US_STATES)):
        clicks = np.flatnonzero(home_click & (users.home[owner] == s))
        drawn = _draw(rng, popularity * early * (news.region == s), clicks.size)
        picked[clicks] = np.where(drawn >= 0, drawn, picked[clicks])
    fallback = np.flatnonzero(picked < 0)  # a topic with no early news (tiny datasets)
    picked[fallback] = _draw(rng, popularity * early, fallback.size)

    # Clicks happen after publishing and before day 1; keep a user's first click of each news.
    when = news.day[picked] + rng.random(owner.size) * (1 - news.day[picked])
    _, first = np.unique(owner * news.day.size + picked, return_index=True)
    keep = np.sort(first)
    keep = keep[np.lexsort((when[keep], owner[keep]))]
    bounds = np.searchsorted(owner[keep], np.arange(n_users + 1))
    items = picked[keep]
    return [items[bounds[u]: bounds[u + 1]].tolist() for u in range(n_users)]


def _draw(rng: np.random.Generator, weight: np.ndarray, size: int) -> np.ndarray:
    """`size` indices drawn with replacement proportionally to weight; -1s when all weights are 0."""
    total = weight.sum()
    if total <= 0:
        return np.full(size, -1, dtype=np.int64)
    cdf = np.cumsum(weight) / total
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), weight.size - 1)


# ---------------------------------------------------------------- impressions


@dataclass(frozen=True)
class _Impressions:
    user: np.ndarray
    day: np.ndarray
    second: np.ndarray  # seconds after midnight
    shown: np.ndarray  # (rows, shown_max) news indices, -1 padded
    label: np.ndarray  # (rows, shown_max) 0/1


def _daily_rate(users: int) -> float:
    # Small datasets get denser logs (about 1.2 impressions per user per day at the default
    # 600 users) so dev metrics are stable; MIND-small size gets MIND's ~4.6 per user in a week.
    return float(np.interp(np.log(users), [np.log(600), np.log(50_000)], [1.2, 0.66]))


def _sample_impressions(users: _Users, news: _News, rng: np.random.Generator, params: SynthParams) -> _Impressions:
    n_users = users.home.size
    counts = rng.poisson(_daily_rate(n_users) * users.activity[:, None], size=(n_users, LOG_DAYS))
    # Everyone appears in train at least once, so every truth.tsv user is in the log.
    train_days = len(SPLIT_DAYS["train"])
    idle = counts[:, :train_days].sum(axis=1) == 0
    counts[np.flatnonzero(idle), rng.integers(0, train_days, size=int(idle.sum()))] += 1
    cell_user, cell_day = np.divmod(np.arange(n_users * LOG_DAYS), LOG_DAYS)
    user = np.repeat(cell_user, counts.ravel())
    day = np.repeat(cell_day + 1, counts.ravel())
    # Busier in the day and evening than at night.
    hour_weight = np.array([1, 1, 1, 1, 1, 2, 4, 6, 7, 7, 6, 6, 7, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4, 2], dtype=float)
    second = (rng.choice(24, size=user.size, p=hour_weight / hour_weight.sum()) * 3600
              + rng.integers(0, 3600, size=user.size))

    shown = np.full((user.size, params.shown_max), -1, dtype=np.int64)
    label = np.zeros((user.size, params.shown_max), dtype=np.int8)
    for d in range(1, LOG_DAYS + 1):
        rows = np.flatnonzero(day == d)
        pool = np.flatnonzero((news.day >= d - 2) & (news.day <= d))  # news of the last three days
        shown[rows] = _show(rng, pool, np.exp(params.show_popularity * news.log_pop[pool]), rows.size, params)
        label[rows] = _click(rng, users, news, user[rows], shown[rows], params)
    return _Impressions(user, day, second, shown, label)


def _show(rng: np.random.Generator, pool: np.ndarray, weight: np.ndarray, rows: int, params: SynthParams) -> np.ndarray:
    """Per row, 5-20 distinct pool news sampled by popularity, in random order, -1 padded."""
    want = np.minimum(rng.integers(params.shown_min, params.shown_max + 1, size=rows), pool.size)
    draws = _draw(rng, weight, rows * 3 * params.shown_max)
    draws = draws.reshape(rows, 3 * params.shown_max)
    # Keep first occurrences in draw order: mark them through a stable sort of each row.
    order = np.argsort(draws, axis=1, kind="stable")
    ordered = np.take_along_axis(draws, order, axis=1)
    first_sorted = np.ones_like(ordered, dtype=bool)
    first_sorted[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = np.zeros_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    rank = np.cumsum(first, axis=1)
    keep = first & (rank <= want[:, None])
    out = np.full((rows, params.shown_max), -1, dtype=np.int64)
    r, c = np.nonzero(keep)
    out[r, rank[r, c] - 1] = pool[draws[r, c]]
    # Rare with real pools: too few distinct draws; top up with unseen pool news.
    for row in np.flatnonzero(rank[:, -1] < np.minimum(want, params.shown_min)):
        have = out[row][out[row] >= 0]
        extra = rng.permutation(np.setdiff1d(pool, have))[: min(want[row], pool.size) - have.size]
        out[row, have.size: have.size + extra.size] = extra
    return out


def _click(
    rng: np.random.Generator, users: _Users, news: _News, user: np.ndarray, shown: np.ndarray, params: SynthParams
) -> np.ndarray:
    """1-2 clicks per row by a softmax over popularity, topic affinity and home state (Gumbel top-k)."""
    valid = shown >= 0
    item = np.where(valid, shown, 0)
    top = users.weight[:, : len(PROFILE_TOPICS)].max(axis=1)
    affinity = (users.weight[user[:, None, None], news.topic_index[item]] * news.topic_weight[item]).sum(axis=2)
    affinity /= top[user][:, None]
    home = news.region[item] == users.home[user][:, None]
    logit = params.click_popularity * news.log_pop[item] + params.click_affinity * affinity + params.click_home * home
    keys = np.where(valid, logit + rng.gumbel(size=logit.shape), -np.inf)
    order = np.argsort(-keys, axis=1, kind="stable")
    clicks = 1 + (rng.random(user.size) < params.two_clicks_rate)
    label = np.zeros(shown.shape, dtype=np.int8)
    rows = np.arange(user.size)
    label[rows, order[:, 0]] = 1
    label[rows[clicks == 2], order[clicks == 2, 1]] = 1
    return label


def _behaviors_text(imp: _Impressions, rows: np.ndarray, nids: list[str], history_text: list[str]) -> str:
    lines = []
    for number, row in enumerate(rows, start=1):
        u, d, s = int(imp.user[row]), int(imp.day[row]), int(imp.second[row])
        items = imp.shown[row]
        labels = imp.label[row]
        tokens = " ".join(f"{nids[i]}-{labels[k]}" for k, i in enumerate(items.tolist()) if i >= 0)
        lines.append(f"{number}\tU{u + 1}\t{_mind_time(d, s)}\t{history_text[u]}\t{tokens}\n")
    return "".join(lines)


def _mind_time(day: int, second: int) -> str:
    """MIND's `11/15/2019 8:55:22 AM`: no zero padding of month, day and hour."""
    when = DAY_ZERO + timedelta(days=day)
    hour, rest = divmod(second, 3600)
    minute, sec = divmod(rest, 60)
    return f"{when.month}/{when.day}/{when.year} {(hour % 12) or 12}:{minute:02d}:{sec:02d} {'AM' if hour < 12 else 'PM'}"


# ---------------------------------------------------------------- files


def _write_atomically(out: Path, files: dict[str, str]) -> None:
    """Write into a sibling temp folder, then move the entries into OUT (others in OUT stay)."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    # A sibling, so the final moves are renames on one file system.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".synth-tmp", dir=out.parent))
    try:
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with failures_name(out / rel, path), open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        out.mkdir(exist_ok=True)
        trash = tmp / ".replaced"
        trash.mkdir()
        for entry in sorted({rel.split("/")[0] for rel in files}):
            target = out / entry
            if target.exists() or target.is_symlink():
                target.rename(trash / entry)
            (tmp / entry).rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
