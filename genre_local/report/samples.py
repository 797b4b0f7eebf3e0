"""Generation samples: for one task and LLM, a seeded sample of inputs beside their outputs.

Original title vs enhanced title (summarize); history titles vs profile, and on synthetic data
the true interests with the user's fidelity score (profile); a cold user's history vs the news
written for them, with the profile chain generation read (news, chain); invalid outputs with
their errors. `generations show` prints these, the HTML report shows them per task and LLM.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from genre_local.pipeline.fidelity import Fidelity, profile_fidelity
from genre_local.store import Store
from genre_local.store import results
from genre_local.store.generations import DEFAULT_METHOD, GenerationSource, split_method

HISTORY_SHOWN = 10  # most recent history titles per user; long MIND histories would drown the output


@dataclass(frozen=True)
class GeneratedItem:
    title: str
    abstract: str
    category: str


@dataclass(frozen=True)
class TruthScore:
    """A user's true interests (synthetic data only) and how well the profile matches them."""

    topics: tuple[str, ...]
    region: str
    fidelity: Fidelity


@dataclass(frozen=True)
class Sample:
    """One input beside its latest valid output. Which fields are set depends on the task."""

    input_id: str  # nid (summarize) or user id
    round: int
    run_id: str  # the generation run that wrote the output
    original_title: str | None = None  # summarize
    enhanced_title: str | None = None  # summarize
    history: tuple[str, ...] = ()  # profile, news, chain: the user's latest history titles, oldest first
    history_length: int = 0
    topics: tuple[str, ...] = ()  # profile: the output; chain: the profile the generator read
    regions: tuple[str, ...] = ()
    truth: TruthScore | None = None  # profile on synthetic data
    items: tuple[GeneratedItem, ...] = ()  # news, chain


@dataclass(frozen=True)
class InvalidSample:
    input_id: str
    round: int
    attempt: int  # tries before giving up
    run_id: str
    raw_output: str
    error: str


@dataclass(frozen=True)
class SampleSet:
    dataset: str
    task: str
    llm: str  # the LLM: generations.model
    seed: int
    valid_inputs: int  # inputs with a valid output, of which `samples` is a sample
    invalid_inputs: int
    samples: tuple[Sample, ...]
    invalid: tuple[InvalidSample, ...]
    prompt_set: str | None = None  # with llm, the generation source; None: every set of the LLM
    method: str | None = None  # with prompt_set, the source's profile method; None: every method

    @property
    def source(self) -> str:
        """The generation source's label (LLM/prompt set[+method]), or the LLM when sets are not split."""
        if self.prompt_set is None:
            return self.llm
        return GenerationSource(self.llm, self.prompt_set, self.method or DEFAULT_METHOD).label


def pick(ids: Sequence[str], limit: int, seed: int, salt: str) -> list[str]:
    """A reproducible sample of `limit` ids (all when fewer), in id order.

    Each id is ranked by a hash of (seed, salt, id) and the lowest `limit` are kept, so the
    same (ids, limit, seed, salt) always gives the same sample, and outputs stored later never
    reshuffle it: a new id either enters the sample (displacing one) or leaves it as it was. The
    salt (dataset, task, LLM) keeps the samples of different tasks and sources independent.
    """
    ordered = sorted(set(ids))
    if len(ordered) <= limit:
        return ordered
    rank = {i: hashlib.sha256(f"{seed}:{salt}:{i}".encode()).digest() for i in ordered}
    return sorted(sorted(ordered, key=rank.__getitem__)[:limit])


def _history_titles(store: Store, dataset: str, histories: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    shown = {u: h[-HISTORY_SHOWN:] for u, h in histories.items()}
    titles = results.load_news_titles(store, dataset, sorted({n for h in shown.values() for n in h}))
    return {u: tuple(titles.get(n, n) for n in h) for u, h in shown.items()}


def _samples(store: Store, dataset: str, task: str, llm: str, outputs: list[results.GenerationOutput],
             prompt_set: str | None, method: str | None) -> list[Sample]:
    ids = [o.input_id for o in outputs]
    parsed = {o.input_id: json.loads(o.parsed) if o.parsed else {} for o in outputs}
    if task == "summarize":
        titles = results.load_news_titles(store, dataset, ids)
        return [Sample(o.input_id, o.round, o.run_id, original_title=titles.get(o.input_id, ""),
                       enhanced_title=str(parsed[o.input_id].get("title", ""))) for o in outputs]
    histories = results.load_user_histories(store, dataset, ids)
    titles = _history_titles(store, dataset, histories)
    truth = results.load_user_truth(store, dataset, ids) if task == "profile" else {}
    # The chain's news beside the profiles they were made from: of the chain's method.
    profiles = results.load_profiles(store, dataset, llm, ids, prompt_set, method) if task == "chain" else {}
    out = []
    for o in outputs:
        p = parsed[o.input_id]
        if task == "profile":
            topics, regions = tuple(p.get("topics", ())), tuple(p.get("regions", ()))
        else:
            topics, regions = profiles.get(o.input_id, ((), ()))
        score = None
        if o.input_id in truth:
            true_topics, region = truth[o.input_id]
            fidelity = profile_fidelity({o.input_id: (topics, regions)}, {o.input_id: (true_topics, region)})
            score = TruthScore(true_topics, region, fidelity) if fidelity else None
        items = tuple(GeneratedItem(str(i.get("title", "")), str(i.get("abstract", "")), str(i.get("category", "")))
                      for i in p.get("items", ()))
        out.append(Sample(o.input_id, o.round, o.run_id, history=titles.get(o.input_id, ()),
                          history_length=len(histories.get(o.input_id, ())), topics=topics, regions=regions,
                          truth=score, items=items))
    return out


def collect_samples(store: Store, dataset: str, task: str, llm: str, limit: int, seed: int = 0,
                    prompt_set: str | None = None, method: str | None = None) -> SampleSet:
    """A seeded sample of `limit` valid outputs and of `limit` invalid ones for (task, LLM), of
    one prompt set (None: every set of the LLM) and profile method (None: every method)."""
    # A method other than 'generate' salts the sample; a generated source keeps the samples it had.
    salt = (f"{dataset}:{task}:{llm}" + ("" if prompt_set is None else f":{prompt_set}")
            + ("" if method in (None, DEFAULT_METHOD) else f":{method}"))
    valid_ids = results.load_generation_input_ids(store, dataset, task, llm, True, prompt_set, method)
    invalid_ids = results.load_generation_input_ids(store, dataset, task, llm, False, prompt_set, method)
    valid = results.load_generation_outputs(store, dataset, task, llm, True, pick(valid_ids, limit, seed, salt),
                                            prompt_set, method)
    invalid = results.load_generation_outputs(store, dataset, task, llm, False,
                                              pick(invalid_ids, limit, seed, salt + ":invalid"), prompt_set, method)
    return SampleSet(
        dataset=dataset, task=task, llm=llm, seed=seed,
        valid_inputs=len(valid_ids), invalid_inputs=len(invalid_ids),
        samples=tuple(_samples(store, dataset, task, llm, valid, prompt_set, method)),
        invalid=tuple(InvalidSample(o.input_id, o.round, o.attempt, o.run_id, o.raw_output, o.error or "")
                      for o in invalid),
        prompt_set=prompt_set,
        method=method,
    )


def collect_all_samples(store: Store, dataset: str, limit: int, seed: int = 0) -> list[SampleSet]:
    """One sample set per task and generation source (LLM, prompt set, profile method) stored for
    the dataset (task order of GENRE)."""
    from genre_local.llm.tasks import TASKS

    sources = results.load_generation_sources(store, dataset)
    order = {t: i for i, t in enumerate(TASKS)}
    sources = sorted(sources, key=lambda s: (order.get(s.task, len(order)), s.task, s.model, s.prompt_set, s.method))
    return [collect_samples(store, dataset, s.task, s.model, limit, seed, s.prompt_set, s.method) for s in sources]


def matching_llms(stored: Sequence[str], wanted: str | None) -> list[str]:
    """The stored LLM ids `wanted` names: all without it, else the exact id, else those whose
    folder name (the part before '@') is `wanted`. Empty when none matches."""
    if wanted is None:
        return sorted(stored)
    if wanted in stored:
        return [wanted]
    return sorted(s for s in stored if s.split("@", 1)[0] == wanted)


def matching_sources(stored: Sequence[GenerationSource], wanted: str | None) -> list[GenerationSource]:
    """The stored sources `wanted` names: all without it, else the one whose label (LLM/set
    [+method]) it is, else every set and method of the LLMs matching_llms finds (only the method
    a '+METHOD' suffix names, if any)."""
    if wanted is None:
        return sorted(set(stored))
    exact = [s for s in stored if s.label == wanted]
    if exact:
        return exact
    name, method = split_method(wanted)
    llms = set(matching_llms([s.llm for s in stored], name))
    return sorted({s for s in stored if s.llm in llms and method in (None, s.method)})
