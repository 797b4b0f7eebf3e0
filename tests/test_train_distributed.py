"""The same `train` command under `accelerate launch` with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from genre_local.store import open_store
from tests.support_train import make_store

CONFIG = """
[train]
embed_dim = 16
num_heads = 2
transformer_layers = 1
history_len = 10
title_len = 12
batch_size = 16
lr = 0.01
epochs = 2
threads = 1
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_run_writes_once_and_the_ranks_share_one_layer_cache(tmp_path: Path) -> None:
    """PLMNR under 2 processes (one launch covers both): rank 0 alone writes the run and prints
    the JSON; rank 0 writes the frozen-layer cache while rank 1 waits (main_process_first), then
    both read it: one 'caching' announcement, one cache folder."""
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    assert launcher, "accelerate's launcher is part of the dependencies"
    db = make_store(tmp_path / "s.duckdb", users=16, news_per_cat=6)
    (tmp_path / "genre.toml").write_text(CONFIG)
    command = [
        launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "-m", "genre_local", "--db", str(db), "--config", str(tmp_path / "genre.toml"),
        "train", "--model", "plmnr", "--dataset", "tiny", "--json",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stderr
    json_lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(json_lines) == 1  # rank 1 prints nothing
    payload = json.loads(json_lines[0])
    assert payload["model"] == "plmnr" and 0.0 <= payload["metrics"]["auc"] <= 1.0
    with open_store(db) as store:
        rows = store.conn.execute("SELECT processes, epochs_run FROM runs").fetchall()
        assert rows == [(2, 2)]  # one run stored, by rank 0 only
        assert store.conn.execute("SELECT count(*) FROM run_metrics").fetchall()[0][0] > 0
    assert done.stderr.count("caching layer-") == 1, done.stderr[-3000:]
    assert len(list((tmp_path / ".genre-cache" / "layers").glob("plmnr-*/manifest.json"))) == 1
