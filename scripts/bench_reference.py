"""Our NRMS and NAML against a plain PyTorch reference, side by side on one MIND-format folder.

Usage: .venv/bin/python scripts/bench_reference.py [--mind FOLDER] [--models nrms,naml] [--rounds 3]
           [--auc-epochs E --auc-seeds S --auc-first-seed N --auc-split auto|dev|test]
           [--versus reference|bf16]
Prints a table and writes bench-results/reference.json (bench-results/bf16.json with --versus bf16).

The reference is written here in the style of the popular public implementations: a word
embedding over the full 30,522-id BERT vocabulary, nn.MultiheadAttention / nn.Conv1d, nn.Dropout,
plain torch.optim.Adam, and a straightforward Dataset + DataLoader that collates per-sample
tensors. Both sides get the same data (the folder's train split; one sample = a click and
--negatives non-clicks of its impression), batch size, title length, history length, embedding
size, heads and dropout, and the same torch thread count. The optimizers differ unless told:
the reference runs plain torch.optim.Adam without decay, ours its [train] default, Adam with L2
weight decay 0.01 on weight matrices (the paper's text); `--weight-decay 0` gives ours none.

Method: throughput rounds alternate ours / reference (which goes first alternates too), each a
fresh model trained for --seconds after --warmup steps; the table shows the medians and the
median ratio. Then each side trains a fresh model for the same number of samples (--auc-steps
batches, default one epoch) and is scored with the same metric code
(recsys.metrics.impression_metrics) on --auc-split: the folder's test split when it has one
(`auto`), else dev; no side selects anything on it (fixed step count, no early stopping). With
--auc-seeds S, seeds N..N+S-1 (--auc-first-seed N, default 1) each train a fresh model and the
table shows the mean ± sample std; `--rounds 0` skips the throughput rounds (an AUC-only run).
`--versus bf16` compares ours with bf16 autocast on against off the same way (speed and AUC). Without --mind a synthetic folder is generated
(`data synth`, --news/--users).

DIN, DCN, PNN and BST have no popular public implementation to mirror; their reference
(`PlainLoop`) is our own architecture on our own batches in the loop a plain PyTorch user would
write: a full-vocabulary word table, nn.Dropout, torch.optim.Adam, float32, DIN's activation unit
over every history slot and BST's transformer as torch's nn.TransformerEncoder over every slot.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

DATASET = "refbench"
RANKING = ("din", "dcn", "pnn", "bst")  # their reference: PlainLoop (our architecture, a plain loop)


# -- the MIND folder as the reference reads it -------------------------------------------------------


@dataclass
class MindFolder:
    news_index: dict[str, int]  # nid -> row (0 = padding)
    titles: torch.Tensor  # [N+1, title_len] BERT ids
    categories: torch.Tensor  # [N+1]
    num_categories: int
    train: list[tuple[list[int], list[int], list[int]]]  # (history rows, candidate rows, labels)
    scored: list[tuple[list[int], list[int], list[int]]]  # the --auc-split's impressions


def scored_split(folder: Path, choice: str) -> str:
    """The split both sides are scored on: `auto` takes test when the folder has one."""
    if choice == "auto":
        return "test" if (folder / "test" / "behaviors.tsv").exists() else "dev"
    if not (folder / choice / "behaviors.tsv").exists():
        raise SystemExit(f"bench_reference: --auc-split {choice}: {folder / choice / 'behaviors.tsv'} does not exist; "
                         "pick a split the folder has (or auto)")
    return choice


def read_mind(folder: Path, title_len: int, split: str = "dev") -> MindFolder:
    from recsys.features import load_tokenizer

    csv.field_size_limit(sys.maxsize)
    nids, titles, cats = [], [], []
    seen = set()
    for news_split in ("train", "dev", "test"):
        path = folder / news_split / "news.tsv"
        if not path.exists():
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                if row and row[0] not in seen:
                    seen.add(row[0])
                    nids.append(row[0])
                    cats.append(row[1])
                    titles.append(row[3])
    index = {nid: i + 1 for i, nid in enumerate(nids)}
    encoded = load_tokenizer()([""] + titles, padding="max_length", truncation=True, max_length=title_len)
    title_ids = torch.tensor(encoded["input_ids"], dtype=torch.long)
    title_ids[0] = 0
    cat_index = {c: i + 1 for i, c in enumerate(sorted(set(cats)))}
    categories = torch.tensor([0] + [cat_index[c] for c in cats], dtype=torch.long)

    def behaviors(split: str) -> list[tuple[list[int], list[int], list[int]]]:
        rows = []
        path = folder / split / "behaviors.tsv"
        if not path.exists():
            return rows
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                parts = line.rstrip("\n").split("\t")
                history = [index[n] for n in parts[3].split() if n in index]
                pairs = [p.rsplit("-", 1) for p in parts[4].split()]
                cands = [index[n] for n, _ in pairs if n in index]
                labels = [int(y) for n, y in pairs if n in index]
                rows.append((history, cands, labels))
        return rows

    return MindFolder(index, title_ids, categories, len(cat_index) + 1, behaviors("train"), behaviors(split))


class ReferenceSamples(torch.utils.data.Dataset):
    """One sample per click: (history [H], candidates [1+K] with the click first)."""

    def __init__(self, mind: MindFolder, history_len: int, negatives: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for history, cands, labels in mind.train:
            clicks = [c for c, y in zip(cands, labels) if y == 1]
            others = [c for c, y in zip(cands, labels) if y == 0]
            if not others:
                continue
            recent = history[-history_len:]
            padded = [0] * (history_len - len(recent)) + recent
            for click in clicks:
                negs = rng.choice(others, size=negatives, replace=len(others) < negatives).tolist()
                self.items.append((padded, [click, *negs]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        history, cands = self.items[i]
        return torch.tensor(history), torch.tensor(cands)


# -- the reference models ---------------------------------------------------------------------------


class RefAdditive(nn.Module):
    def __init__(self, dim: int, query: int = 200) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, query)
        self.query = nn.Parameter(torch.empty(query).uniform_(-0.1, 0.1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        scores = torch.tanh(self.proj(x)) @ self.query
        if mask is not None:
            scores = scores.masked_fill(~mask, -1e9)
        return (torch.softmax(scores, dim=1).unsqueeze(-1) * x).sum(1)


class RefNRMS(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, vocab: int = 30522) -> None:
        super().__init__()
        self.words = nn.Embedding(vocab, dim, padding_idx=0)
        self.news_mha = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.news_pool = RefAdditive(dim)
        self.user_mha = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.user_pool = RefAdditive(dim)
        self.drop = nn.Dropout(dropout)

    def news(self, titles: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        mask = titles != 0
        mask = mask | ~mask.any(1, keepdim=True)  # padding news (empty history slots) stay finite
        x = self.drop(self.words(titles))
        x, _ = self.news_mha(x, x, x, key_padding_mask=~mask)
        return self.news_pool(self.drop(x), mask)

    def user(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        safe = mask | ~mask.any(1, keepdim=True)  # an empty history attends everywhere
        x, _ = self.user_mha(history, history, history, key_padding_mask=~safe)
        return self.user_pool(self.drop(x), safe)


class RefNAML(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, num_categories: int, vocab: int = 30522) -> None:
        super().__init__()
        self.words = nn.Embedding(vocab, dim, padding_idx=0)
        self.cnn = nn.Conv1d(dim, dim, 3, padding=1)
        self.title_pool = RefAdditive(dim)
        self.category = nn.Embedding(num_categories, dim, padding_idx=0)
        self.category_dense = nn.Linear(dim, dim)
        self.views = RefAdditive(dim)
        self.user_pool = RefAdditive(dim)
        self.drop = nn.Dropout(dropout)

    def news(self, titles: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        mask = titles != 0
        x = self.drop(self.words(titles))
        x = self.drop(torch.relu(self.cnn(x.transpose(1, 2)).transpose(1, 2)))
        title = self.title_pool(x, mask)
        category = torch.relu(self.category_dense(self.category(categories)))
        return self.views(torch.stack([title, category], dim=1))

    def user(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.user_pool(history, mask | ~mask.any(1, keepdim=True))


def ref_loss(model, mind: MindFolder, history: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
    rows = torch.cat([history, cands], dim=1)
    vectors = model.news(mind.titles[rows.flatten()], mind.categories[rows.flatten()]).view(*rows.shape, -1)
    user = model.user(vectors[:, : history.shape[1]], history != 0)
    logits = torch.einsum("bd,bcd->bc", user, vectors[:, history.shape[1]:])
    return nn.functional.cross_entropy(logits, torch.zeros(len(cands), dtype=torch.long))


@torch.no_grad()
def ref_auc(model, mind: MindFolder, history_len: int) -> float:
    from recsys.metrics import impression_metrics

    model.eval()
    vectors = torch.cat([model.news(mind.titles[i:i + 1024], mind.categories[i:i + 1024])
                         for i in range(0, len(mind.titles), 1024)])
    labels, scores = [], []
    for history, cands, y in mind.scored:
        recent = history[-history_len:]
        h = torch.tensor([0] * (history_len - len(recent)) + recent)
        user = model.user(vectors[h].unsqueeze(0), (h != 0).unsqueeze(0))[0]
        scores.append((vectors[torch.tensor(cands)] @ user).numpy())
        labels.append(np.asarray(y))
    model.train()
    return impression_metrics(labels, scores)["auc"]


# -- both sides' loops ----------------------------------------------------------------------------


class Side:
    """One trainable side: fresh(model name) then step() / samples_per_step / auc()."""

    def fresh(self, seed: int) -> None: ...
    def step(self) -> int: ...
    def auc(self) -> float: ...


class Reference(Side):
    def __init__(self, name: str, mind: MindFolder, args) -> None:
        self.name, self.mind, self.args = name, mind, args

    def fresh(self, seed: int) -> None:
        torch.manual_seed(seed)
        a = self.args
        self.model = (RefNRMS(a.embed_dim, a.heads, a.dropout) if self.name == "nrms"
                      else RefNAML(a.embed_dim, a.heads, a.dropout, self.mind.num_categories))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=a.lr)
        samples = ReferenceSamples(self.mind, a.history_len, a.negatives, seed)
        self.loader = torch.utils.data.DataLoader(samples, batch_size=a.batch_size, shuffle=True)
        self.batches = iter(self.loader)
        self.model.train()

    def step(self) -> int:
        try:
            history, cands = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            history, cands = next(self.batches)
        loss = ref_loss(self.model, self.mind, history, cands)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return len(cands)

    def auc(self) -> float:
        return ref_auc(self.model, self.mind, self.args.history_len)


class Ours(Side):
    def __init__(self, name: str, data, args, bf16: str | None = None) -> None:
        self.name, self.data, self.args = name, data, args
        self.bf16_choice = args.bf16 if bf16 is None else bf16

    def config(self):
        from recsys.config import TrainConfig

        a = self.args
        features = "title" if self.name == "nrms" else "title,category"  # NAML and the ranking models
        decay = {} if a.weight_decay is None else {"weight_decay": a.weight_decay}  # None: [train]'s default
        return TrainConfig(embed_dim=a.embed_dim, num_heads=a.heads, dropout=a.dropout, lr=a.lr,
                           batch_size=a.batch_size, negatives=a.negatives, history_len=a.history_len,
                           title_len=a.title_len, features=features, bf16=self.bf16_choice, **decay)

    def fresh(self, seed: int) -> None:
        from recsys.cpu import use_bf16
        from recsys.experiment import model_config, run_settings
        from recsys.models import build_model
        from recsys.train import TrainStep, feature_sizes, make_accelerator, make_optimizer

        config = self.config()
        torch.manual_seed(seed)
        self.settings = run_settings(self.name, self.data, config, seed)
        self.accelerator = make_accelerator()
        self.model = build_model(self.name, model_config(config, False), feature_sizes(self.data))
        optimizer = make_optimizer(self.model, config.lr, config.weight_decay, config.optimizer, config.decay_scope)
        self.step_module, self.optimizer = self.accelerator.prepare(TrainStep(self.model), optimizer)
        self.bf16 = use_bf16(config.bf16, self.accelerator.device.type, model=self.name)
        self._start_batches(config, seed)

    def step(self) -> int:
        batch = self._next_batch()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.step_module(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self.optimizer.step()
        return len(batch)

    def _start_batches(self, config, seed: int) -> None:
        """Our training batches of `seed`, epoch after epoch, as `train` draws them."""
        from recsys.data import BatchStream, TrainSamples, epoch_batches

        samples = TrainSamples(self.data, self.data.split("train"), self.model.kind, config.negatives, config.history_len)
        self.stream = lambda epoch: iter(BatchStream(samples, epoch_batches(len(samples), config.batch_size, seed, epoch),
                                                     seed, epoch))
        self.epoch, self.batches = 0, self.stream(0)
        self.step_module.train()

    def _next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.epoch += 1
            self.batches = self.stream(self.epoch)
            return next(self.batches)

    def auc(self) -> float:
        from recsys.train import evaluate

        self.model.eval()
        metrics, _ = evaluate(self.accelerator, self.model, self.data, self.args.auc_split, self.settings)
        return metrics["all"]["auc"]


class PlainDINActivation(nn.Module):
    """DIN's local activation unit as the paper and the public code write it: the MLP over
    [h, c, h - c, h * c] of every history slot, padding included, then masked. The same
    parameters (`mlp`) as ours, which computes the same function only on the real items."""

    def __init__(self, mlp: nn.Sequential) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, history: torch.Tensor, candidate: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        c = candidate.unsqueeze(1).expand_as(history)
        weights = self.mlp(torch.cat([history, c, history - c, history * c], dim=-1)).squeeze(-1)
        if mask is not None:
            weights = weights * mask.to(weights.dtype)
        return torch.einsum("bh,bhd->bd", weights, history)


def plain_encoder(encoder: nn.TransformerEncoder) -> nn.TransformerEncoder:
    """BST's transformer as torch's own nn.TransformerEncoder (every slot, padding included, and
    torch's dropout masks), the same layers and weights."""
    import copy

    plain = nn.TransformerEncoder(copy.deepcopy(encoder.layers[0]), len(encoder.layers), enable_nested_tensor=False)
    plain.load_state_dict(encoder.state_dict())
    return plain


class PlainLoop(Ours):
    """The ranking models' plain PyTorch loop: the same architecture and batches, but what a plain
    loop does by default: a full-vocabulary word table, nn.Dropout, torch.optim.Adam, float32,
    DIN's activation unit over every history slot (PlainDINActivation) and BST's transformer as
    torch's nn.TransformerEncoder over every slot (plain_encoder)."""

    def fresh(self, seed: int) -> None:
        import dataclasses

        from recsys.experiment import model_config, run_settings
        from recsys.layers import DINActivationUnit
        from recsys.layers.dropout import Dropout
        from recsys.layers.transformer import PackedTransformerEncoder
        from recsys.models import build_model
        from recsys.train import TrainStep, feature_sizes, make_accelerator

        config = self.config()
        torch.manual_seed(seed)
        self.settings = run_settings(self.name, self.data, config, seed)
        self.accelerator = make_accelerator()
        sizes = dataclasses.replace(feature_sizes(self.data), word_ids=())
        self.model = build_model(self.name, model_config(config, False), sizes)
        for module in list(self.model.modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, Dropout):
                    setattr(module, child_name, nn.Dropout(child.p))
                elif isinstance(child, DINActivationUnit):
                    setattr(module, child_name, PlainDINActivation(child.mlp))
                elif isinstance(child, PackedTransformerEncoder):
                    setattr(module, child_name, plain_encoder(child))
        self.step_module = TrainStep(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.bf16 = False
        self._start_batches(config, seed)

    def step(self) -> int:
        batch = self._next_batch()
        loss = self.step_module(batch)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return len(batch)


def timed(side: Side, seed: int, warmup: int, seconds: float) -> float:
    side.fresh(seed)
    for _ in range(warmup):
        side.step()
    seen, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        seen += side.step()
    return seen / (time.perf_counter() - started)


# -- main -------------------------------------------------------------------------------------------


def prepare(args) -> tuple[Path, object]:
    """The MIND folder (generated when not given) and our encoded `original` variant of it."""
    from genre_local.data.mind_import import import_mind
    from genre_local.store import open_store
    from genre_local.store.variants import fetch_encoded
    from recsys.variants import VariantSpec

    folder = args.mind
    if folder is None:
        from genre_local.data.synth import SynthSpec, write_synthetic_mind

        folder = args.out / f"synth-{args.news}n-{args.users}u-s7"
        if not (folder / "train" / "behaviors.tsv").exists():
            write_synthetic_mind(folder, SynthSpec(news=args.news, users=args.users, seed=7), force=True)
    work = args.out / "reference"
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"store-{Path(folder).resolve().name}.duckdb"
    with open_store(db) as store:
        if DATASET not in store.dataset_names():
            import_mind(store, Path(folder), DATASET)
        data, _ = fetch_encoded(store.conn, DATASET, VariantSpec(), ("title", "category"),
                                args.title_len, 50, None, work / "cache")
    return Path(folder), data


def pair_sides(name: str, data, mind: MindFolder, args) -> dict[str, Side]:
    """The two sides one row compares, first ÷ second: ours vs its reference, or ours with
    bf16 autocast on vs off (--versus bf16)."""
    if args.versus == "bf16":
        return {"bf16_on": Ours(name, data, args, bf16="on"), "bf16_off": Ours(name, data, args, bf16="off")}
    reference = PlainLoop(name, data, args) if name in RANKING else Reference(name, mind, args)
    return {"ours": Ours(name, data, args), "reference": reference}


def auc_steps(name: str, data, mind: MindFolder, args) -> int:
    """Batches each side trains before it is scored: --auc-epochs whole epochs, else --auc-steps
    (0: one epoch). An epoch is the side's own sample count: (user, candidate) pairs for the
    ranking models, clicks for NRMS/NAML (the same on both sides)."""
    if name in RANKING:
        epoch = -(-int((data.split("train").labels >= 0).sum()) // args.batch_size)
    else:
        epoch = -(-len(ReferenceSamples(mind, args.history_len, args.negatives, 1)) // args.batch_size)
    if args.auc_epochs:
        return args.auc_epochs * epoch
    return args.auc_steps or epoch


def compare(name: str, sides: dict[str, Side], steps: int, args) -> dict:
    """Throughput rounds (alternating which side goes first), then each side's dev AUC over
    --auc-seeds fresh models trained for `steps` batches (no AUC when --auc-steps is -1)."""
    from recsys.stats import mean_std

    first, second = sides
    rates: dict[str, list[float]] = {key: [] for key in sides}
    for r in range(args.rounds):
        for key in (first, second) if r % 2 == 0 else (second, first):
            rates[key].append(timed(sides[key], 100 + r, args.warmup, args.seconds))
        print(f"[{name}] round {r + 1}: " + ", ".join(f"{k} {rates[k][-1]:,.0f}" for k in sides) + " samples/s",
              file=sys.stderr, flush=True)
    ratios = [a / b for a, b in zip(rates[first], rates[second], strict=True)]
    row = {"model": name, "sides": [first, second], "ratios": ratios,
           "ratio_median": statistics.median(ratios) if ratios else None}
    for key in sides:
        row[key] = rates[key]
        row[f"{key}_median"] = statistics.median(rates[key]) if rates[key] else None
    if args.auc_steps < 0:
        return row
    row["auc_steps"], row["auc_split"] = steps, args.auc_split
    row["auc_seeds"] = list(range(args.auc_first_seed, args.auc_first_seed + args.auc_seeds))
    for key in sides:
        if args.auc_sides != "both" and key != args.auc_sides:
            continue
        aucs, seconds = [], []
        for seed in row["auc_seeds"]:
            side = sides[key]
            side.fresh(seed)
            started = time.perf_counter()
            for _ in range(steps):
                side.step()
            seconds.append(round(time.perf_counter() - started, 1))
            aucs.append(side.auc())
            print(f"[{name}] {key} seed {seed}: {args.auc_split} AUC {aucs[-1]:.4f} after {steps} batches ({seconds[-1]} s)",
                  file=sys.stderr, flush=True)
        row[f"{key}_aucs"], row[f"{key}_auc_seconds"] = aucs, seconds
        row[f"{key}_auc"], row[f"{key}_auc_std"] = mean_std(aucs)
    return row


def auc_cell(row: dict, key: str) -> str:
    if f"{key}_auc" not in row:
        return "–"
    std = row[f"{key}_auc_std"]
    return f"{row[f'{key}_auc']:.4f}" + ("" if std is None else f" ± {std:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mind", type=Path, help="a MIND-format folder (train/ and dev/); default: a synthetic one")
    parser.add_argument("--news", type=int, default=3000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--models", default="nrms,naml")
    parser.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds per side (0: none)")
    parser.add_argument("--seconds", type=float, default=15.0, help="timed training per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--auc-steps", type=int, default=0, help="batches trained before the AUC (0: one epoch; -1: skip)")
    parser.add_argument("--auc-epochs", type=int, default=0, help="whole epochs trained before the AUC (overrides --auc-steps)")
    parser.add_argument("--auc-seeds", type=int, default=1, help="how many seeds, a fresh model each, for the AUC mean ± std")
    parser.add_argument("--auc-first-seed", type=int, default=1, help="the first of the --auc-seeds consecutive seeds")
    parser.add_argument("--auc-sides", default="both",
                        help="score both sides, or only the one named (ours, reference, bf16_on, bf16_off)")
    parser.add_argument("--auc-split", default="auto", choices=("auto", "dev", "test"),
                        help="the split both sides are scored on (auto: test when the folder has one, else dev)")
    parser.add_argument("--versus", default="reference", choices=("reference", "bf16"),
                        help="compare ours with the reference, or ours with bf16 autocast on vs off")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--negatives", type=int, default=4)
    parser.add_argument("--title-len", type=int, default=30)
    parser.add_argument("--history-len", type=int, default=50)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="ours only: [train] weight_decay (default: its default, L2 0.01 on weight matrices; "
                             "the reference uses none)")
    parser.add_argument("--bf16", default="auto", choices=("auto", "on", "off"), help="ours only ([train] bf16)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0: recsys's auto choice)")
    parser.add_argument("--smoke", action="store_true", help="tiny run: small data, short rounds")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    if args.smoke:
        args.news, args.users, args.seconds, args.warmup, args.auc_steps = 300, 120, 1.0, 1, 5
        args.rounds = min(args.rounds, 1)  # an explicit --rounds 0 stays AUC-only
        args.auc_epochs = 0
    if args.auc_seeds < 1 or args.auc_epochs < 0 or args.rounds < 0:
        parser.error("--auc-seeds must be >= 1, --auc-epochs and --rounds >= 0")
    if args.rounds == 0 and args.auc_steps < 0:
        parser.error("--rounds 0 with --auc-steps -1 leaves nothing to measure")

    side_names = ("bf16_on", "bf16_off") if args.versus == "bf16" else ("ours", "reference")
    if args.auc_sides not in ("both", *side_names):
        parser.error(f"--auc-sides {args.auc_sides!r}: choose both, {side_names[0]} or {side_names[1]}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in ("nrms", "naml", *RANKING)]
    if unknown:  # before any data or training, not after the models before it have run
        parser.error(f"--models: {unknown[0]!r} has no reference; choose from nrms, naml, {', '.join(RANKING)}")

    from recsys.cpu import auto_threads, cpu_has_native_bf16, machine_load, use_bf16

    threads = args.threads or auto_threads(os.cpu_count() or 1, machine_load())
    torch.set_num_threads(threads)
    if args.mind is not None:  # a split the folder lacks is refused before the import
        args.auc_split = scored_split(args.mind, args.auc_split)
    folder, data = prepare(args)
    args.auc_split = scored_split(folder, args.auc_split)
    mind = read_mind(folder, args.title_len, args.auc_split)
    load_start = machine_load()
    rows = []
    for name in models:
        steps = auc_steps(name, data, mind, args) if args.auc_steps >= 0 else 0
        rows.append(compare(name, pair_sides(name, data, mind, args), steps, args))
    result = {
        "versus": args.versus, "cpu_native_bf16": cpu_has_native_bf16(),
        "threads": threads, "bf16_ours": use_bf16(args.bf16, "cpu"), "load_start": load_start, "load_end": machine_load(),
        "train_impressions": len(mind.train), "auc_split": args.auc_split, "scored_impressions": len(mind.scored),
        "news": len(mind.titles) - 1,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ("reference.json" if args.versus == "reference" else "bf16.json")).write_text(json.dumps(result, indent=2))
    print(f"threads {threads}, bf16 (ours) {result['bf16_ours']}, load {load_start:.1f} -> {result['load_end']:.1f}")
    for row in rows:
        first, second = row["sides"]
        if row is rows[0]:
            print(f"| model | {first} samples/s | {second} samples/s | {first} ÷ {second} (median of rounds) | rounds "
                  f"| {first} {args.auc_split} AUC | {second} {args.auc_split} AUC | AUC seeds × batches |")
            print("|---|--:|--:|--:|--:|--:|--:|--:|")
        runs = f"{len(row['auc_seeds'])} × {row['auc_steps']}" if "auc_seeds" in row else "–"
        rates = ([f"{row[f'{first}_median']:,.0f}", f"{row[f'{second}_median']:,.0f}", f"**{row['ratio_median']:.2f}×**"]
                 if row["ratios"] else ["–", "–", "–"])
        print(f"| {row['model'].upper()} | {' | '.join(rates)} | {len(row['ratios'])} | {auc_cell(row, first)} | "
              f"{auc_cell(row, second)} | {runs} |")


if __name__ == "__main__":
    main()
