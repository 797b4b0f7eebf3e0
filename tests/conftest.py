"""Suite-wide test set-up: only what makes the suite cheaper without changing what any test sees."""

from __future__ import annotations

import gc

import pytest


@pytest.fixture(autouse=True, scope="module")
def _freeze_long_lived_objects():
    """Every training ends with accelerate's free_memory(), a full gc.collect(), which scans every
    object in this process: torch, transformers, vLLM's and the suite's modules (~0.2-0.3 CPU s a
    call, ~0.8 s wall on a loaded machine; test_train.py alone calls it 96 times). At each module's
    start, collect once and freeze the survivors (imported modules, session fixtures): later
    collections skip them. Nothing that is garbage now is frozen (collected first), and a frozen
    object still goes when its last reference does (reference counting); only a cycle among
    objects alive now would outlive the session, and those live for the session anyway."""
    gc.collect()
    gc.freeze()
    yield


@pytest.fixture(autouse=True, scope="session")
def _unfreeze_at_the_end():
    yield
    # Back to normal before the interpreter exits: its shutdown frees objects the usual way (with
    # them frozen, nanobind-based modules such as triton report "leaked instances").
    gc.unfreeze()


@pytest.fixture(scope="session")
def engine_host(tmp_path_factory: pytest.TempPathFactory):
    """One process for the vLLM tests' commands, one engine start for all of them
    (tests/support_engine_host.py); started by the first test that asks for it."""
    from tests.support_engine_host import EngineHost

    host = EngineHost(tmp_path_factory.mktemp("engine-host") / "host.log")
    yield host
    host.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The modules whose tests use the engine host run last, one after another, each module's
    tests in their order: the host's engine is started once, and the idle engine does not hold
    its memory while the rest of the suite runs (it closes with the session)."""
    hosted = {getattr(i, "module", None) for i in items if "engine_host" in getattr(i, "fixturenames", ())}
    if hosted:
        inside = [getattr(i, "module", None) in hosted for i in items]
        items[:] = [i for i, h in zip(items, inside) if not h] + [i for i, h in zip(items, inside) if h]


@pytest.fixture(scope="session")
def embedded_reference(tmp_path_factory: pytest.TempPathFactory):
    """The single-process run that the 2-worker and the 2-actor runs of the embedded model
    (transformers, greedy, summarize, --limit 2) must equal: made once for both tests; they only
    read it."""
    from tests.support_generate import build_store
    from tests.support_llm import prepared_model
    from tests.support_scale import real_settings, single_process_run, transformers_factory

    reference = build_store(tmp_path_factory.mktemp("embedded-reference") / "one.duckdb")
    single_process_run(reference, transformers_factory(prepared_model()), real_settings(limit=2), ("summarize",))
    return reference
