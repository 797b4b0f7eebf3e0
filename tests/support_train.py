"""A tiny learnable dataset written straight into the core tables, plus hand-written generations.

Each user likes one category; clicked candidates are from that category, histories too. Titles
carry category words, so any model that reads titles or categories can learn it.
"""

from __future__ import annotations

import contextlib
import json
import random
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from genre_local.store import open_store

TOPIC_WORDS = {
    "sports": ["football", "coach", "league", "goal", "match", "team"],
    "finance": ["stocks", "market", "bank", "rates", "investors", "earnings"],
    "health": ["doctors", "diet", "vaccine", "hospital", "fitness", "sleep"],
    "weather": ["storm", "rain", "snow", "forecast", "heat", "winds"],
}
CATEGORIES = list(TOPIC_WORDS)


def build_rows(news_per_cat: int = 12, users: int = 40, seed: int = 3, cold_every: int = 3,
               test_labeled: bool = True):
    rng = random.Random(seed)
    news = []
    by_cat: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    n = 0
    for cat in CATEGORIES:
        for i in range(news_per_cat):
            n += 1
            nid = f"N{n}"
            words = rng.sample(TOPIC_WORDS[cat], 3)
            news.append((nid, cat, f"{cat}_sub{i % 2}", f"{' '.join(words)} today {i}", f"about {words[0]}"))
            by_cat[cat].append(nid)
    impressions = []
    iid = {"train": 0, "dev": 0, "test": 0}
    for u in range(users):
        fav = CATEGORIES[u % len(CATEGORIES)]
        others = [c for c in CATEGORIES if c != fav]
        hist_len = 2 if u % cold_every == 0 else min(8, news_per_cat) # every third user is cold (history <= 5)
        history = rng.sample(by_cat[fav], hist_len)
        for split, count in (("train", 6), ("dev", 2), ("test", 2)):
            for _ in range(count):
                iid[split] += 1
                pos = rng.sample(by_cat[fav], 1 + (iid[split] % 2))
                neg = [rng.choice(by_cat[rng.choice(others)]) for _ in range(4 if iid[split] % 3 else 2)]
                cands = pos + neg
                labels = [1] * len(pos) + [0] * len(neg)
                order = list(range(len(cands)))
                rng.shuffle(order)
                cands = [cands[i] for i in order]
                labels = [labels[i] for i in order]
                if split == "test" and not test_labeled:
                    labels = [None] * len(cands)
                impressions.append((split, iid[split], f"U{u}", history, cands, labels))
    return news, impressions


def make_store(path: Path, dataset: str = "tiny", **kwargs) -> Path:
    news, impressions = build_rows(**kwargs)
    with open_store(path) as store:
        store.insert_arrow("news", pa.Table.from_pylist([
            {"dataset": dataset, "nid": nid, "category": c, "subcategory": s, "title": t, "abstract": a,
             "url": "", "title_entities": "[]", "abstract_entities": "[]"} for nid, c, s, t, a in news
        ]))
        store.insert_arrow("impressions", pa.Table.from_pylist([
            {"dataset": dataset, "split": sp, "impression_id": i, "user_id": u, "time": datetime(2019, 11, 15),
             "history": h, "candidates": c, "labels": l} for sp, i, u, h, c, l in impressions
        ], schema=pa.schema([
            ("dataset", pa.string()), ("split", pa.string()), ("impression_id", pa.int64()),
            ("user_id", pa.string()), ("time", pa.timestamp("us")), ("history", pa.list_(pa.string())),
            ("candidates", pa.list_(pa.string())), ("labels", pa.list_(pa.int8())),
        ])))
        splits = sorted({r[0] for r in impressions})
        store.conn.execute(
            "INSERT INTO datasets VALUES (?, 'test', now(), ?, ?, ?, false)",
            [dataset, splits, len(news), len(impressions)],
        )
    return path


_counter = [0]


def add_generation(store, dataset: str, task: str, input_id: str, parsed: dict | None, valid: bool = True,
                   round_: int = 1, created: datetime | None = None, model: str = "m",
                   prompt_set: str = "compact", sampling: dict | None = None, run_id: str = "run") -> None:
    """One `generations` row, its columns by name (later migrations add columns at the end).
    `sampling`: its sampling key (e.g. {"method": "score"} for a scored profile)."""
    _counter[0] += 1
    store.conn.execute(
        "INSERT INTO generations BY NAME SELECT ? AS fingerprint, ? AS dataset, ? AS task, ? AS input_id, "
        "? AS model, 'v1' AS prompt_version, ? AS round, 1 AS attempt, ? AS run_id, 'test' AS backend, "
        "? AS sampling, '[]' AS prompt, '' AS raw_output, ? AS parsed, ? AS valid, ? AS error, "
        "0 AS prompt_tokens, 0 AS completion_tokens, 0.0 AS latency_s, ? AS created_at, ? AS prompt_set",
        [f"fp{_counter[0]}-{task}-{input_id}", dataset, task, input_id, model, round_, run_id,
         json.dumps(sampling or {}),
         None if parsed is None else json.dumps(parsed), valid, None if valid else "bad",
         created or datetime(2026, 1, 1, 0, 0, _counter[0] % 60), prompt_set],
    )


def add_all_generations(path: Path, dataset: str = "tiny", users: int = 40) -> None:
    """Enhanced titles for half the news, profiles for every user, 3 news + 3 chain items per cold user."""
    with open_store(path) as store:
        nids = [r[0] for r in store.conn.execute("SELECT nid FROM news WHERE dataset = ? ORDER BY nid", [dataset]).fetchall()]
        cats = dict(store.conn.execute("SELECT nid, category FROM news WHERE dataset = ?", [dataset]).fetchall())
        for nid in nids[::2]:
            add_generation(store, dataset, "summarize", nid, {"title": f"enhanced {cats[nid]} story {nid}"})
        topic_of = {"sports": "culture", "finance": "finance", "health": "health", "weather": "weather"}
        for u in range(users):
            fav = CATEGORIES[u % len(CATEGORIES)]
            add_generation(store, dataset, "profile", f"U{u}", {"topics": [topic_of[fav], "history"], "regions": ["Ohio"]})
            if u % 3 == 0:
                for task in ("news", "chain"):
                    items = [{"title": f"{task} {fav} item {k} for U{u}", "abstract": "x", "category": fav} for k in range(3)]
                    add_generation(store, dataset, task, f"U{u}", {"items": items})


@contextlib.contextmanager
def one_thread():
    """Tests share two busy cores: one torch thread is ~30x faster than two contended ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def small_train_toml(**changes: object) -> str:
    """A genre.toml [train] section for CLI tests: tiny models, two epochs, one thread.
    Keyword arguments replace or add keys (strings are quoted)."""
    keys: dict[str, object] = {"embed_dim": 16, "num_heads": 2, "transformer_layers": 1, "history_len": 10,
                               "title_len": 12, "batch_size": 32, "lr": 0.01, "epochs": 2, "threads": 1}
    keys.update(changes)
    lines = [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in keys.items()]
    return "[train]\n" + "\n".join(lines) + "\n"
