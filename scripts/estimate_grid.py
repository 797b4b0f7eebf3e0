"""How long the paper's training grid takes: 8 models x V variants x 5 seeds on MIND-small and
MIND-large, in CPU hours from this project's measured rates and in GPU-hours from those rates
scaled by a GPU speed-up: measured by scripts/gpu_check.sh (`--gpu-check FILE`) where a GPU
ran it, otherwise the assumed factors below. Every input is a named constant or an option, and
BENCHMARKS.md ("At scale") states where each comes from. Pure arithmetic: no data, no torch.

    python scripts/estimate_grid.py [--variants 6] [--seeds 5] [--epochs 3] [--plmnr-history exact|states]
                                    [--gpu-check gpu_check.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.catalog import model_kind  # noqa: E402  (torch-free)


@dataclass(frozen=True)
class GridData:
    """One dataset's sizes as the trainer counts samples (recsys.data.TrainSamples)."""

    name: str
    train_impressions: int
    clicks_per_impression: float  # matching models: one sample per click
    candidates_per_impression: float  # ranking models: one sample per labelled candidate
    dev_impressions: int


@dataclass(frozen=True)
class ModelRate:
    """A model's measured rates on the CPU of BENCHMARKS.md section 2."""

    train_samples_per_s: float
    eval_impressions_per_s: float


# MIND-small-sized synthetic set of BENCHMARKS.md section 2 (data synth --news 65000 --users
# 50000): 170,129 train and 32,884 dev impressions, 221,422 train clicks; the generator shows
# 5-20 candidates per impression (genre_local/data/synth.py shown_min/shown_max, mean 12.5).
MIND_SMALL = GridData("MIND-small", 170_129, 221_422 / 170_129, 12.5, 32_884)
# MIND-large: about 2.2 M train impressions (issue 10); the same per-impression means and the
# same dev:train ratio as the synthetic MIND-small set.
MIND_LARGE = GridData("MIND-large", 2_200_000, 221_422 / 170_129, 12.5, round(2_200_000 * 32_884 / 170_129))

# BENCHMARKS.md section 2, session 8's run (bench_train.py, 2-core Intel Xeon, 2 torch threads,
# float32, batch 64, 4 negatives, title 30, history 50; PLMNR with its default exact history).
# BST: session 8's 777 samples/s and 415 impressions/s times the packed transformer's gain
# (session 13, section 5b: bench_train.py at this size, old and new code alternately, 4 rounds,
# 1 thread): median ratio 1.71 in training, 1.66 in evaluation.
BST_PACKED_GAIN = ModelRate(1.71, 1.66)
# NRMS: session 8's 385 samples/s and 13,251 impressions/s times the gain of its packed attention
# and pooling (session 14, section 2b: bench_train.py at this size, old and new code alternately,
# 4 rounds, 1 thread, load ~3): median ratio 1.56 in training, 1.29 in evaluation.
NRMS_PACKED_GAIN = ModelRate(1.56, 1.29)
CPU_RATES = {
    "naml": ModelRate(602, 19_204), "lstur": ModelRate(524, 17_891),
    "nrms": ModelRate(385 * NRMS_PACKED_GAIN.train_samples_per_s, 13_251 * NRMS_PACKED_GAIN.eval_impressions_per_s),
    "plmnr": ModelRate(71, 1_855),
    "bst": ModelRate(777 * BST_PACKED_GAIN.train_samples_per_s, 415 * BST_PACKED_GAIN.eval_impressions_per_s),
    "dcn": ModelRate(9_210, 16_071), "pnn": ModelRate(8_603, 10_967), "din": ModelRate(7_460, 6_848),
}
# ASSUMED GPU / 2-core-CPU speed-ups where no gpu_check measurement exists: the light models
# (about 2 M parameters, batch 64) are kernel-launch bound on a GPU, so their gain is modest;
# PLMNR runs MiniLM's dense matrix multiplies, where a GPU's gain is largest.
ASSUMED_SPEEDUP = {"light": 20.0, "plmnr": 200.0}
# PLMNR with `plmnr_history = "states"` (BENCHMARKS.md section 2c', session 10): bench_train.py at
# MIND-small size, one thread, float32: 91.3 train samples/s (two runs) against exact's 26.6, with
# the token-state table's build at each epoch start timed apart (47-49 s, about 2 % of that epoch).
# Evaluation encodes every news afresh in every mode, so its rate does not change.
STATES_TRAIN_SPEEDUP = 91.3 / 26.6
STATES_TABLE_BUILD_SHARE = 0.02
PLMNR_HISTORIES = ("exact", "states")


def cpu_rates(plmnr_history: str) -> dict[str, ModelRate]:
    """CPU_RATES with PLMNR's training rate for its history mode: the measured exact rate, or
    that rate times the measured states/exact ratio, less the per-epoch table build."""
    if plmnr_history not in PLMNR_HISTORIES:
        raise ValueError(f"plmnr_history must be one of {', '.join(PLMNR_HISTORIES)}, got {plmnr_history!r}")
    if plmnr_history == "exact":
        return dict(CPU_RATES)
    exact = CPU_RATES["plmnr"]
    train = exact.train_samples_per_s * STATES_TRAIN_SPEEDUP / (1 + STATES_TABLE_BUILD_SHARE)
    return {**CPU_RATES, "plmnr": ModelRate(train, exact.eval_impressions_per_s)}


def samples_per_epoch(data: GridData, model: str, holdout_fraction: float) -> float:
    """Training samples of one epoch: clicks (matching) or labelled candidates (ranking), with
    the early-stopping hold-out left out (MIND has no labelled test: dev is reported)."""
    per_impression = data.clicks_per_impression if model_kind(model) == "matching" else data.candidates_per_impression
    return data.train_impressions * (1 - holdout_fraction) * per_impression


def eval_impressions_per_run(data: GridData, epochs: int, holdout_fraction: float) -> float:
    """The hold-out scored after every epoch, then dev once with the best weights."""
    return epochs * data.train_impressions * holdout_fraction + data.dev_impressions


def run_hours(data: GridData, model: str, rate: ModelRate, speedup: float, epochs: int, holdout_fraction: float) -> float:
    """Hours of one (model, variant, seed) run at `rate` x `speedup`."""
    train_s = epochs * samples_per_epoch(data, model, holdout_fraction) / (rate.train_samples_per_s * speedup)
    eval_s = eval_impressions_per_run(data, epochs, holdout_fraction) / (rate.eval_impressions_per_s * speedup)
    return (train_s + eval_s) / 3600


def speedups(gpu_check: dict | None, plmnr_history: str = "exact") -> tuple[dict[str, float], dict[str, str]]:
    """Per model: the GPU / CPU factor and where it comes from (measured train samples/s in a
    gpu_check.json on CUDA, else the assumption). Evaluation is scaled by the same factor.
    gpu_check names each PLMNR mode (plmnr-exact, plmnr-states, ...): the grid's mode is PLMNR's."""
    factors, sources = {}, {}
    measured = {}
    if gpu_check and gpu_check.get("environment", {}).get("device") == "cuda":
        measured = {("plmnr" if f["model"] == f"plmnr-{plmnr_history}" else f["model"]): f["train_samples_per_s"]
                    for f in gpu_check.get("train", []) if f.get("train_samples_per_s")}
    for model, rate in cpu_rates(plmnr_history).items():
        if model in measured:
            factors[model] = measured[model] / rate.train_samples_per_s
            sources[model] = "measured (gpu_check)"
        else:
            factors[model] = ASSUMED_SPEEDUP["plmnr" if model == "plmnr" else "light"]
            sources[model] = "assumed"
    return factors, sources


def gpu_check_notes(gpu_check: dict | None) -> list[str]:
    """What a gpu_check.json leaves out, one line each: a run not on CUDA (nothing of it is used),
    one stopped before its end, parts that failed. The models it lacks keep the assumed speed-up."""
    if gpu_check is None:
        return []
    device = gpu_check.get("environment", {}).get("device")
    if device != "cuda":
        return [f"gpu_check.json ran on {device or 'an unknown device'}, not CUDA: none of its rates is used"]
    notes = []
    if gpu_check.get("complete") is False:
        notes.append("gpu_check.json is from a check stopped before its end: the models it did not reach keep "
                     "the assumed speed-up")
    for failure in gpu_check.get("failures", []):
        notes.append(f"gpu_check.json: {failure.get('part')} failed ({failure.get('error')}): "
                     "that model keeps the assumed speed-up")
    return notes


def grid_rows(datasets: tuple[GridData, ...], variants: int, seeds: int, epochs: int, holdout_fraction: float,
              factors: dict[str, float], sources: dict[str, str], plmnr_history: str = "exact") -> list[dict]:
    rows = []
    for data in datasets:
        for model, rate in cpu_rates(plmnr_history).items():
            runs = variants * seeds
            cpu = run_hours(data, model, rate, 1.0, epochs, holdout_fraction)
            gpu = run_hours(data, model, rate, factors[model], epochs, holdout_fraction)
            rows.append({
                "dataset": data.name, "model": model, "runs": runs,
                "samples_per_epoch": samples_per_epoch(data, model, holdout_fraction),
                "cpu_hours_per_run": cpu, "speedup": factors[model], "speedup_source": sources[model],
                "gpu_hours_per_run": gpu, "gpu_hours": gpu * runs,
            })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=6, help="original, ns, up, ng, chain and one combination")
    parser.add_argument("--seeds", type=int, default=5, help="the paper: five runs per model")
    parser.add_argument("--epochs", type=int, default=3, help="[train] epochs default")
    parser.add_argument("--holdout-fraction", type=float, default=0.1, help="[train] holdout_fraction default")
    parser.add_argument("--plmnr-history", default="exact", choices=PLMNR_HISTORIES,
                        help="PLMNR's [model] plmnr_history for the grid (states: its measured CPU speed-up)")
    parser.add_argument("--gpu-check", type=Path, default=None, help="a gpu_check.json measured on CUDA")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    args = parser.parse_args(argv)
    gpu_check = None
    if args.gpu_check is not None:
        try:
            gpu_check = json.loads(args.gpu_check.read_text())
        except (OSError, ValueError) as exc:
            print(f"estimate_grid: --gpu-check {args.gpu_check}: cannot read it ({exc}); pass the gpu_check.json that "
                  "scripts/gpu_check.sh wrote", file=sys.stderr)
            return 2
    factors, sources = speedups(gpu_check, args.plmnr_history)
    for note in gpu_check_notes(gpu_check):
        print(f"note: {note}")
    rows = grid_rows((MIND_SMALL, MIND_LARGE), args.variants, args.seeds, args.epochs, args.holdout_fraction, factors, sources,
                     args.plmnr_history)
    print(f"{'dataset':<11}{'model':<7}{'runs':>5}{'samples/epoch':>15}{'CPU h/run':>11}{'speed-up':>10}{'GPU h/run':>11}{'GPU h':>9}")
    for r in rows:
        print(f"{r['dataset']:<11}{r['model']:<7}{r['runs']:>5}{r['samples_per_epoch']:>15,.0f}{r['cpu_hours_per_run']:>11.2f}"
              f"{r['speedup']:>9.0f}x{r['gpu_hours_per_run']:>11.3f}{r['gpu_hours']:>9.1f}  {r['speedup_source']}")
    for name in (MIND_SMALL.name, MIND_LARGE.name):
        total = sum(r["gpu_hours"] for r in rows if r["dataset"] == name)
        print(f"{name}: {total:,.1f} GPU-hours for {len(CPU_RATES)} models x {args.variants} variants x {args.seeds} seeds"
              f" (PLMNR history {args.plmnr_history})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "datasets": [asdict(MIND_SMALL), asdict(MIND_LARGE)],
                                        "assumed_speedup": ASSUMED_SPEEDUP, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
