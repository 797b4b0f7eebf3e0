"""MIND-large-sized data on one machine: wall time and peak RSS of every stage, each stage in its own process.

    synth -> import -> encode -> train (NRMS, 1 epoch of at most --steps steps, then dev metrics) -> predict dev

Each stage runs as a fresh subprocess (the genre-local CLI, or this script's `--stage encode`,
which builds the encoded-data cache exactly as `train` does first), so the peak RSS recorded
is that stage's own (os.wait4's rusage of the child). steps/s and the dev evaluation rate come
from the run stored by `train`. The sizes default to MIND-small (65,238 news, 50,000 users) and
MIND-large (161,013 news, 1,000,000 users); `--sizes 16100x100000` runs others.

Usage: .venv/bin/python scripts/bench_scale.py [--sizes small,large] [--steps 100] [--stages synth,import,encode] [--work /tmp/scale-bench]
       [--out bench-results] [--keep]
`--stages train,predict --keep` continues a work folder an earlier `--stages synth,import,encode --keep` left.
Writes <out>/scale.json and prints a table. The work folder (data, store, cache) is deleted at
the end unless --keep; large sizes need ~10 GiB of disk while they run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"small": (65_238, 50_000), "large": (161_013, 1_000_000)}  # MIND's published news and users
DATASET = "scale"
STAGES = ("synth", "import", "encode", "train", "predict")


@dataclass(frozen=True)
class StageResult:
    stage: str
    seconds: float
    peak_rss_gib: float
    returncode: int


def parse_size(text: str) -> tuple[str, int, int]:
    """'small' | 'large' | '<news>x<users>' -> (label, news, users)."""
    if text in SIZES:
        return (text, *SIZES[text])
    news, sep, users = text.partition("x")
    if not sep or not news.isdigit() or not users.isdigit():
        raise SystemExit(f"--sizes: '{text}' is not small, large or <news>x<users> (e.g. 16100x100000)")
    return text, int(news), int(users)


# The stage is started by a bare interpreter (about 10 MiB), never straight from this process: a
# child's ru_maxrss starts at the RSS of the process it was forked from (Linux carries the
# parent's high-water mark through fork and exec), so a big parent would be charged to every stage.
_MEASURE = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}')\n"
)


def run_stage(stage: str, argv: list[str], log: Path, env: dict[str, str]) -> StageResult:
    """Run `argv` as a child; its wall time and peak RSS (KiB on Linux, from wait4's rusage)."""
    started = time.perf_counter()
    measured = log.with_name(log.name + ".rusage")
    with open(log, "w") as handle:
        subprocess.run([sys.executable, "-c", _MEASURE, str(measured), *argv], stdout=handle,
                       stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=True)
    maxrss_kib, returncode = (int(v) for v in measured.read_text().split())
    measured.unlink()
    return StageResult(stage, round(time.perf_counter() - started, 2), round(maxrss_kib / 2**20, 3), returncode)


def write_config(path: Path, cache_dir: Path, steps: int) -> None:
    # One epoch of at most `steps` steps, reported on dev as on MIND (the synthetic test split is
    # labelled, but report_split = "dev" never scores it), no hold-out (so dev is scored once, at
    # the end), no mid-epoch checkpoints and no tracker: the stages measured are the data's.
    path.write_text(
        f'[paths]\ncache_dir = "{cache_dir}"\n\n'
        f'[train]\nepochs = 1\nmax_steps = {steps}\nholdout_fraction = 0.0\nreport_split = "dev"\n'
        'checkpoint_every = 0\ntrack = "none"\n'
    )


def encode_stage(db: Path, config: Path) -> None:
    """What `train` does before training: fingerprint the rows, read and encode them into the cache."""
    from genre_local.config import load_config, resolve_relative
    from genre_local.store import open_store
    from genre_local.store.variants import plan_encoded
    from recsys.data import EncodingOptions
    from recsys.variants import VariantSpec

    cfg = load_config(config)
    options = EncodingOptions(cfg.train.feature_names, cfg.train.title_len, cfg.train.abstract_len)
    cache_dir = resolve_relative(db, cfg.paths.cache_dir)
    with open_store(db) as store:
        plan = plan_encoded(store.conn, DATASET, VariantSpec(), options, cache_dir)
    data, path = plan.build()
    print(f"encoded {len(data.news_ids)} news, " + ", ".join(f"{len(s)} {n}" for n, s in data.splits.items()) + f" into {path}")


def stored_run(db: Path) -> dict:
    from genre_local.store import open_store

    with open_store(db, read_only=True) as store:
        row = store.conn.execute(
            "SELECT run_id, train_samples_per_s, epoch_seconds, eval_impressions_per_s, config, eval_split FROM runs "
            "WHERE dataset = ? ORDER BY created_at DESC LIMIT 1", [DATASET]).fetchone()
        scored = [r[0] for r in store.conn.execute(
            "SELECT DISTINCT split FROM run_metrics WHERE run_id = ? ORDER BY split", [row[0]]).fetchall()]
        metrics = dict(store.conn.execute(
            "SELECT metric, value FROM run_metrics WHERE run_id = ? AND split = 'dev' AND user_group = 'all'",
            [row[0]]).fetchall())
    config = json.loads(row[4])
    batch = int(config.get("batch_size", 64))
    return {"samples_per_s": round(row[1][0], 1), "steps_per_s": round(row[1][0] / batch, 2),
            "train_seconds": round(row[2][0], 1), "eval_impressions_per_s": round(row[3], 1),
            "batch_size": batch, "eval_split": row[5], "scored_splits": scored,
            "dev": {k: round(v, 4) for k, v in metrics.items()}}


def bench_size(label: str, news: int, users: int, steps: int, work: Path, seed: int,
               stages: tuple[str, ...] = STAGES) -> dict:
    folder = work / label
    if stages[0] == STAGES[0]:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    elif not (folder / "store.duckdb").exists():
        raise SystemExit(f"--stages {','.join(stages)}: {folder} has no store; run the stages before "
                         f"{stages[0]} first (with --keep)")
    db, config, data = folder / "store.duckdb", folder / "genre.toml", folder / "mind"
    write_config(config, folder / "cache", steps)
    env = dict(os.environ, PYTHONPATH=str(ROOT), GENRE_CONFIG=str(config))
    cli = [sys.executable, "-m", "genre_local", "--db", str(db)]
    commands = {
        "synth": cli + ["data", "synth", str(data), "--news", str(news), "--users", str(users), "--seed", str(seed)],
        "import": cli + ["data", "import", str(data), "--name", DATASET],
        "encode": [sys.executable, str(Path(__file__).resolve()), "--stage", "encode", "--db", str(db), "--config", str(config)],
        "train": cli + ["train", "--model", "nrms", "--dataset", DATASET, "--json"],
        "predict": cli + ["predict", "--model", "nrms", "--dataset", DATASET, "--split", "dev", "--out", str(folder / "dev-prediction.txt")],
    }
    done = []
    for stage in stages:
        result = run_stage(stage, commands[stage], folder / f"{stage}.log", env)
        done.append(asdict(result))
        print(f"  {label} {stage}: {result.seconds:.1f} s, peak RSS {result.peak_rss_gib:.2f} GiB (exit {result.returncode})", flush=True)
        if result.returncode != 0:
            print((folder / f"{stage}.log").read_text()[-3000:], file=sys.stderr)
            return {"label": label, "news": news, "users": users, "stages": done, "failed": stage}
    files = [p for p in [db, *sorted((folder / "cache").glob("*.pt"))] if p.exists()]
    sizes = {p.name: round(p.stat().st_size / 2**30, 3) for p in files}
    mind_gib = round(sum(p.stat().st_size for p in data.rglob("*.tsv")) / 2**30, 3)
    out = {"label": label, "news": news, "users": users, "stages": done,
           "files_gib": {"mind_tsv": mind_gib, **sizes}, "max_steps": steps}
    if "train" in stages:
        out["train"] = stored_run(db)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,large", help="comma list of small, large or <news>x<users>")
    parser.add_argument("--steps", type=int, default=100, help="training steps (batch 64) of the bounded NRMS run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/scale-bench"))
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma list, in order, from " + ",".join(STAGES) + " (a later one needs the earlier)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--stage", choices=["encode"], help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "encode":
        encode_stage(args.db, args.config)
        return

    from genre_local.machine import machine_info

    sizes = [parse_size(s.strip()) for s in args.sizes.split(",") if s.strip()]
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    first = STAGES.index(stages[0]) if stages and stages[0] in STAGES else -1
    if first < 0 or stages != STAGES[first : first + len(stages)]:
        raise SystemExit(f"--stages: consecutive stages of {','.join(STAGES)} (each stage needs the ones before "
                         "it; a list that does not start at synth continues a --keep work folder)")
    results = []
    try:
        for label, news, users in sizes:
            print(f"{label}: {news} news, {users} users", flush=True)
            results.append(bench_size(label, news, users, args.steps, args.work, args.seed, stages))
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    payload = {"benchmark": "scale", "stages": list(stages), "max_steps": args.steps, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "machine": machine_info(), "sizes": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out / 'scale.json'}")
    if any("failed" in r for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
