"""The paired AUC comparison of bench_reference.py runs: ours against the other side, seed by seed.

Reads one or more reference.json files written by scripts/bench_reference.py (one per seed from
parallel lanes, or one holding many seeds), pools each model's seeds, and prints per model: the
seeds, each side's mean ± std, the paired difference (first side − second: ours − reference, or
bf16 on − off) with its 90 % and 95 % t intervals and paired p, and the verdict at --margin:

  better / worse   the 95 % interval excludes 0 on that side
  non-inferior     else, when the 90 % interval's lower bound is above −margin
  inconclusive     otherwise

(the rule the pre-registered comparisons in BENCHMARKS.md section 2b declared before their runs).
A model's seeds are pooled only when they were trained the same way: a file whose protocol
settings for it differ from its first file's (data folder, split, epochs or steps, optimizer,
batch, sizes, dropout, bf16) is refused, and so is a seed that appears twice for one model.

    python scripts/paired_auc.py bench-results/reference14/runs/*.json [--margin 0.01] [--out summary.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.stats import PairedDifference, mean_std, paired_difference, verdict  # noqa: E402

# bench_reference.py settings that do not change what a seed's AUC measures: where the file went,
# which seeds and models one invocation ran, the throughput rounds, and the thread count.
NOT_PROTOCOL = frozenset({"out", "auc_first_seed", "auc_seeds", "models", "rounds", "seconds", "warmup", "threads"})


class InputError(Exception):
    """A file that cannot be read or pooled: one line, naming the file and what to do."""


@dataclass(frozen=True)
class SeedPair:
    seed: int
    first: float
    second: float
    source: str


@dataclass(frozen=True)
class ModelComparison:
    model: str
    sides: tuple[str, str]
    pairs: tuple[SeedPair, ...]
    difference: PairedDifference | None  # None below 2 seeds
    verdict: str

    def row(self) -> dict:
        first, first_std = mean_std([p.first for p in self.pairs])
        second, second_std = mean_std([p.second for p in self.pairs])
        return {"model": self.model, "sides": list(self.sides), "seeds": [p.seed for p in self.pairs],
                "first_mean": first, "first_std": first_std, "second_mean": second, "second_std": second_std,
                "difference": None if self.difference is None else asdict(self.difference), "verdict": self.verdict,
                "per_seed": [asdict(p) for p in self.pairs]}


def protocol(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in NOT_PROTOCOL}


@dataclass
class ModelRuns:
    """One model's seed pairs, all trained under one protocol (that of the file `first_file`)."""

    sides: tuple[str, str]
    protocol: dict
    first_file: str
    pairs: list[SeedPair]


def read_runs(paths: list[Path]) -> dict[str, ModelRuns]:
    """Per model (in the order first met): its two sides, its protocol and its seed pairs in seed order."""
    models: dict[str, ModelRuns] = {}
    for path in paths:
        try:
            data = json.loads(path.read_text())
            settings, rows = protocol(data["settings"]), data["rows"]
        except OSError as exc:
            raise InputError(f"{path}: cannot read it ({exc.strerror}); pass reference.json files of bench_reference.py") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError(f"{path}: not a bench_reference.py result (no settings and rows); pass its reference.json") from None
        for row in rows:
            sides = tuple(row.get("sides", ()))
            first, second = (row.get(f"{side}_aucs") for side in sides) if len(sides) == 2 else (None, None)
            if first is None or second is None:
                raise InputError(f"{path}: model {row.get('model')} has no AUC for both sides; "
                                 "pass runs made with --auc-sides both and --auc-steps >= 0")
            runs = models.setdefault(row["model"], ModelRuns(sides, settings, str(path), []))
            if runs.sides != sides:
                raise InputError(f"{path}: model {row['model']} compares {' vs '.join(sides)}, "
                                 f"{runs.first_file} {' vs '.join(runs.sides)}")
            if runs.protocol != settings:
                names = sorted(k for k in set(settings) | set(runs.protocol) if settings.get(k) != runs.protocol.get(k))
                raise InputError(f"{path}: {row['model']} trained another way than in {runs.first_file} "
                                 f"({', '.join(names)} differ); pool only runs of one protocol")
            seen = {p.seed for p in runs.pairs}
            for seed, a, b in zip(row["auc_seeds"], first, second, strict=True):
                if seed in seen:
                    raise InputError(f"{path}: seed {seed} of {row['model']} is in another file too; "
                                     "pass each seed's run once")
                runs.pairs.append(SeedPair(int(seed), float(a), float(b), str(path)))
                seen.add(seed)
    for runs in models.values():
        runs.pairs.sort(key=lambda p: p.seed)
    return models


def compare(model: str, sides: tuple[str, str], pairs: list[SeedPair], margin: float) -> ModelComparison:
    difference = paired_difference([p.first for p in pairs], [p.second for p in pairs], margin)
    return ModelComparison(model, sides, tuple(pairs), difference,
                           "too few seeds" if difference is None else verdict(difference))


def describe(settings: dict) -> str:
    epochs, steps = settings.get("auc_epochs"), settings.get("auc_steps")
    trained = f"{epochs} full epoch(s)" if epochs else f"{steps} batches" if steps else "one epoch"
    return f"{settings.get('auc_split')} split after {trained}, data {settings.get('mind')}"


def line(c: ModelComparison) -> str:
    row = c.row()
    first, second = c.sides

    def side(mean: float, std: float | None) -> str:
        return f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")

    text = (f"{c.model.upper()}: n {len(c.pairs)}, {first} {side(row['first_mean'], row['first_std'])}, "
            f"{second} {side(row['second_mean'], row['second_std'])}")
    d = c.difference
    if d is None:
        return f"{text}: {c.verdict}"
    lower = sum(p.first < p.second for p in c.pairs)
    return (f"{text}, {first} − {second} {d.mean:+.4f} (90 % CI {d.ci90[0]:+.4f}..{d.ci90[1]:+.4f}, "
            f"95 % CI {d.ci95[0]:+.4f}..{d.ci95[1]:+.4f}, p {d.p_value:.3f}), {first} lower in {lower} of "
            f"{len(c.pairs)}: {c.verdict} at margin {d.margin}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+", help="reference.json files of scripts/bench_reference.py")
    parser.add_argument("--margin", type=float, default=0.01, help="the non-inferiority margin in AUC (declare it first)")
    parser.add_argument("--out", type=Path, default=None, help="also write the comparison as JSON here")
    args = parser.parse_args(argv)
    if not args.margin > 0:
        parser.error(f"--margin must be > 0, got {args.margin}")
    try:
        models = read_runs(args.files)
    except InputError as exc:
        print(f"paired_auc: {exc}", file=sys.stderr)
        return 2
    comparisons = []
    for model, runs in models.items():
        comparisons.append(compare(model, runs.sides, runs.pairs, args.margin))
        print(line(comparisons[-1]) + f"; {describe(runs.protocol)}")
        print("  per seed: " + ", ".join(f"{p.seed} {p.first:.4f}/{p.second:.4f}" for p in runs.pairs))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"margin": args.margin, "models": [
            c.row() | {"protocol": models[c.model].protocol} for c in comparisons]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
