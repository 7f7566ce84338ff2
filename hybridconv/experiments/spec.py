"""A declarative sweep: one TOML file -> a validated list of runs.

```toml
[experiment]
name = "minilm-main"                          # names the rows of the CSV
results = "experiments/results/minilm.csv"    # tidy rows, appended atomically
runs = "runs/minilm-main"                     # one folder per run (checkpoints)

[base]                                        # FinetuneConfig fields shared by every run
k_shot = 128
epochs = 10

[grid]                                        # the cross product (lists; a scalar = 1 value)
model = ["minilm"]
task = ["mr", "boolq"]
method = ["probe", "zero-shot", "fo", "fo-peft", "zo", "zo-peft", "hybrid"]
peft = ["lora", "prompt", "prefix"]           # crossed with the PEFT methods only
schedule = ["jacobi", "gauss-seidel"]         # crossed with hybrid only
seed = [0, 1, 2]

[[override]]                                  # settings for the runs that match
method = "hybrid"                             # grid keys filter (a value or a list)
peft = "lora"
lr_x = [1e-6, 1e-5]                           # other keys set FinetuneConfig fields;
lr_y = 5e-2                                   # lists expand the grid

[[exclude]]                                   # drop the runs that match every key
schedule = "gauss-seidel"
peft = ["prompt", "prefix"]
```

Methods are :data:`hybridconv.spec.METHODS` (``fo-lora`` / ``zo-lora`` accepted) plus the
baselines of :data:`BASELINES`: ``probe`` (a linear probe on frozen features,
:mod:`hybridconv.finetune.probe`) and ``zero-shot`` (the untrained model's test accuracy;
prompt-based LMs only). Axes that do not apply to a method collapse: a full-model method
takes no PEFT kind, only the hybrid takes a schedule, baselines take neither and train
nothing (their rates and budget are ignored).

:func:`load_spec` validates everything before any run starts: unknown sections or keys,
unknown methods, PEFT kinds, schedules, tasks or models, a rate <= 0, an empty grid, a task
whose data is not installed: each is one ``ValueError`` line naming the key and the value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import spec as vocab

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["BASELINES", "AXES", "Run", "ExperimentSpec", "load_spec", "parse_spec"]

BASELINES = vocab.BASELINES
AXES = ("model", "task", "method", "peft", "schedule", "seed")
"""Grid keys; every other key of ``[grid]`` or an override is a FinetuneConfig field."""


@dataclass(frozen=True)
class Run:
    """One run of a sweep: the complete settings and a stable id (a hash of them)."""

    settings: dict[str, Any]

    @property
    def method(self) -> str:
        return self.settings["method"]

    @property
    def baseline(self) -> bool:
        return self.method in BASELINES.values

    @property
    def run_id(self) -> str:
        blob = json.dumps(self.settings, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        s = self.settings
        if self.baseline:
            return self.method
        out = s["method"] + (f"-{s['peft']}" if s.get("peft") else "")
        return out + ("-gs" if s.get("schedule") == "gauss-seidel" else "")


@dataclass
class ExperimentSpec:
    """A parsed and validated sweep."""

    name: str
    results: Path
    runs_dir: Path
    runs: list[Run] = field(default_factory=list)
    source: Path | None = None

    def subset(self, only: Sequence[str]) -> ExperimentSpec:
        """The runs whose settings match every ``KEY=V1,V2`` filter (a setting matches when
        its value, as text, is one of the values; ``none`` matches an unset one). Run ids are
        hashes of the settings, so a subset's finished runs count for the whole spec. A key
        that no run has, or a filter that leaves no run, is a ``ValueError``."""
        runs = list(self.runs)
        for item in only:
            key, sep, values = str(item).partition("=")
            key = key.strip()
            wanted = {v.strip() for v in values.split(",") if v.strip()}
            if not sep or not key or not wanted:
                raise ValueError(f"--only must be KEY=VALUE[,VALUE...], got {item!r}")
            keys = set().union(*(r.settings for r in self.runs)) | {"label"}
            if key not in keys:
                raise ValueError(f"--only: {key!r} is not a setting of {self.name}'s runs "
                                 f"(one of {', '.join(sorted(keys))})")

            def text(r: Run, key: str = key) -> str:
                v = r.label() if key == "label" else r.settings.get(key)
                return "none" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))

            runs = [r for r in runs if text(r) in wanted
                    or (isinstance(r.settings.get(key), float)
                        and any(_same_number(r.settings[key], w) for w in wanted))]
        if not runs:
            raise ValueError(f"--only {' '.join(only)} leaves none of {self.name}'s "
                             f"{len(self.runs)} runs")
        return dataclasses.replace(self, runs=runs)

    def describe(self) -> str:
        n = len(self.runs)
        base = sum(r.baseline for r in self.runs)
        return f"{self.name}: {n} runs ({n - base} fine-tuning, {base} baselines)"


def _same_number(value: float, text: str) -> bool:
    try:
        return float(text) == value
    except ValueError:
        return False


def _listify(key: str, v: Any) -> list[Any]:
    out = list(v) if isinstance(v, list) else [v]
    if not out:
        raise ValueError(f"grid {key} is an empty list: the grid has no run")
    return out


def _config_fields() -> dict[str, Any]:
    from ..finetune.trainer import FinetuneConfig

    return {f.name: f for f in fields(FinetuneConfig)}


def _matches(over: dict[str, Any], settings: dict[str, Any]) -> bool:
    for k in AXES:
        if k in over:
            allowed = over[k] if isinstance(over[k], list) else [over[k]]
            if settings.get(k) not in allowed:
                return False
    return True


def _matches_all(ex: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Whether a run matches every key of an ``[[exclude]]`` table (a value or a list)."""
    for k, v in ex.items():
        allowed = v if isinstance(v, list) else [v]
        if settings.get(k) not in allowed:
            return False
    return True


def _expand(settings: dict[str, Any], overrides: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply every matching override in order; list values expand into several runs."""
    out = [settings]
    for over in overrides:
        nxt = []
        for s in out:
            if not _matches(over, s):
                nxt.append(s)
                continue
            keys = [k for k in over if k not in AXES]
            values = [_listify(k, over[k]) for k in keys]
            for combo in itertools.product(*values):
                nxt.append({**s, **dict(zip(keys, combo, strict=True))})
        out = nxt
    return out


def _check_task(task: str, checked: dict[str, str | None]) -> None:
    """A task's data must be there before anything runs."""
    if task in checked:
        if checked[task]:
            raise ValueError(checked[task])
        return
    from ..finetune.tasks import TASKS, available

    if task not in TASKS:
        checked[task] = f"grid task must be one of {', '.join(TASKS)}, got {task!r}"
    else:
        problem = available(task)
        checked[task] = f"task {task!r} has no data here: {problem}" if problem else None
    if checked[task]:
        raise ValueError(checked[task])


def _is_lm(model: str) -> bool:
    """Whether a grid model is a prompt-based causal LM (zero-shot rows need one)."""
    from ..finetune.models import RANDOM_SHAPES

    name = model.split(":", 1)[1] if model.startswith("random:") else model
    if name in ("smollm2", *RANDOM_SHAPES):
        return True
    if name == "minilm":
        return False
    cfg = Path(model) / "config.json"
    if cfg.exists():
        archs = json.loads(cfg.read_text()).get("architectures") or []
        return any(a.endswith("ForCausalLM") for a in archs)
    return False


def _check_model(model: str) -> None:
    from ..finetune.models import MODELS, RANDOM_SHAPES

    if model in MODELS or model.startswith("random:") and (
            model.split(":", 1)[1] in set(RANDOM_SHAPES) | set(MODELS)):
        return
    if not (Path(model) / "config.json").exists():
        raise ValueError(f"grid model must be one of {', '.join(MODELS)}, random:SHAPE or a "
                         f"local Hugging Face directory, got {model!r}")


def parse_spec(data: dict[str, Any], *, root: Path | None = None,
               source: Path | None = None) -> ExperimentSpec:
    """Validate a parsed TOML document and expand its grid (see the module docstring)."""
    from ..finetune.trainer import FinetuneConfig

    root = root or Path.cwd()
    unknown = set(data) - {"experiment", "base", "grid", "override", "exclude"}
    if unknown:
        raise ValueError(f"unknown section [{sorted(unknown)[0]}]: allowed are [experiment], "
                         f"[base], [grid], [[override]], [[exclude]]")
    exp = data.get("experiment", {})
    for key in ("name", "results", "runs"):
        if not isinstance(exp.get(key), str) or not exp.get(key):
            raise ValueError(f"[experiment] needs {key} = \"...\" (a non-empty string)")
    extra = set(exp) - {"name", "results", "runs"}
    if extra:
        raise ValueError(f"unknown key experiment.{sorted(extra)[0]}")
    cfg_fields = _config_fields()
    base = dict(data.get("base", {}))
    for k in base:
        if k in AXES or k not in cfg_fields:
            raise ValueError(f"unknown key base.{k}: [base] takes FinetuneConfig fields "
                             f"other than the grid axes {', '.join(AXES)}")
    grid = dict(data.get("grid", {}))
    if not grid:
        raise ValueError("[grid] is missing or empty: the grid has no run")
    for k in grid:
        if k not in AXES and k not in cfg_fields:
            raise ValueError(f"unknown key grid.{k}")
    overrides = data.get("override", [])
    if not isinstance(overrides, list):
        raise ValueError("override must be an array of tables: [[override]]")
    for i, over in enumerate(overrides):
        for k in over:
            if k not in AXES and k not in cfg_fields:
                raise ValueError(f"unknown key override[{i}].{k}")
    methods = []
    for m in _listify("method", grid.get("method", [vocab.METHODS.default])):
        if m in BASELINES.values:
            methods.append(m)
        else:
            try:
                vocab.validate("method", m, among=vocab.METHODS)
                methods.append(m)  # aliases kept: fo-lora means peft lora only
            except ValueError:
                raise ValueError(f"grid method must be one of "
                                 f"{', '.join(vocab.METHODS.values + BASELINES.values)} "
                                 f"(or fo-lora, zo-lora), got {m!r}") from None
    pefts = [vocab.validate("peft", p, label="grid peft")
             for p in _listify("peft", grid.get("peft", [vocab.PEFT_KINDS.default]))]
    schedules = [vocab.validate("schedule", s, label="grid schedule")
                 for s in _listify("schedule", grid.get("schedule",
                                                        [vocab.SCHEDULES.default]))]
    models = _listify("model", grid.get("model", ["minilm"]))
    tasks = _listify("task", grid.get("task", ["mr"]))
    seeds = [vocab.validate("seed", s, label="grid seed")
             for s in _listify("seed", grid.get("seed", [0]))]
    swept = {k: _listify(k, v) for k, v in grid.items() if k not in AXES}
    for m in models:
        _check_model(m)
        if "zero-shot" in methods and not _is_lm(m):
            raise ValueError(f"grid method zero-shot needs a prompt-based causal LM; model "
                             f"{m!r} is a classifier with a fresh head (leave zero-shot out "
                             f"or split the grid)")
    checked: dict[str, str | None] = {}
    for t in tasks:
        _check_task(t, checked)
    runs: dict[str, Run] = {}
    excludes = data.get("exclude", [])
    if not isinstance(excludes, list):
        raise ValueError("exclude must be an array of tables: [[exclude]]")
    for i, ex in enumerate(excludes):
        for k in ex:
            if k not in AXES and k not in cfg_fields:
                raise ValueError(f"unknown key exclude[{i}].{k}")
    # order: all methods of a seed before the next seed, so partial results pair up
    for model, task, seed, method in itertools.product(models, tasks, seeds, methods):
        aliased = method in vocab.METHODS.aliases
        method = vocab.METHODS.aliases.get(method, method)
        kinds: list[str | None] = (["lora"] if aliased else pefts) \
            if method in ("fo-peft", "zo-peft", "hybrid") else [None]
        scheds: list[str | None] = schedules if method == "hybrid" else [None]
        for peft, sched in itertools.product(kinds, scheds):
            for combo in itertools.product(*swept.values()):
                s = {**base, **dict(zip(swept, combo, strict=True)), "model": model,
                     "task": task, "method": method, "peft": peft, "schedule": sched,
                     "seed": seed}
                for s2 in _expand(s, overrides):
                    if any(_matches_all(ex, s2) for ex in excludes):
                        continue
                    runs_for = _normalize(s2, FinetuneConfig)
                    runs.setdefault(runs_for.run_id, runs_for)
    if not runs:
        raise ValueError("the grid has no run")
    # execution order: model, task, seed; baselines, then per PEFT kind its methods, then the
    # full-model methods: a kind's FO-PEFT / hybrid pair finishes together, so partial
    # results pair up (the order changes no run's settings or id)
    rank = lambda xs, v: xs.index(v) if v in xs else len(xs)  # noqa: E731
    meth = [vocab.METHODS.aliases.get(m, m) for m in methods]
    ordered = sorted(runs.values(), key=lambda r: (
        rank(models, r.settings["model"]), rank(tasks, r.settings["task"]),
        rank(seeds, r.settings["seed"]), not r.baseline,
        rank(pefts, r.settings.get("peft")), rank(meth, r.method)))
    runs = {r.run_id: r for r in ordered}
    src_dir = root
    return ExperimentSpec(name=exp["name"], results=src_dir / exp["results"],
                          runs_dir=src_dir / exp["runs"], runs=list(runs.values()),
                          source=source)


def _normalize(s: dict[str, Any], config_cls) -> Run:
    """Validate one run's settings through FinetuneConfig and drop what does not apply."""
    method = s["method"]
    if method in BASELINES.values:
        keep = {k: s[k] for k in ("model", "task", "method", "seed", "k_shot", "test_size",
                                  "max_length", "eval_batch_size", "device", "dtype")
                if k in s}
        cfg_kw = {k: v for k, v in keep.items() if k != "method"}
        try:
            config_cls(**cfg_kw, method="fo")  # validates the shared fields
        except (TypeError, ValueError) as e:
            raise ValueError(f"run {keep}: {e}") from None
        return Run(keep)
    kw = {k: v for k, v in s.items() if v is not None}
    try:
        cfg = config_cls(**kw)
    except TypeError as e:
        raise ValueError(f"run {kw}: {e}") from None
    except ValueError as e:
        raise ValueError(f"run {cfg_label(kw)}: {e}") from None
    d = asdict(cfg)
    if cfg.method != "hybrid":
        d["schedule"] = None
    rates = cfg.resolved()
    for k in ("lr_x", "lr_y", "mu"):
        d[k] = rates.get(k)
    return Run(d)


def cfg_label(kw: dict[str, Any]) -> str:
    return " ".join(f"{k}={kw[k]}" for k in ("model", "task", "method", "peft", "seed")
                    if kw.get(k) is not None)


def load_spec(path: str | Path, *, root: Path | None = None) -> ExperimentSpec:
    """Read, validate and expand a TOML spec; paths in it are relative to ``root`` (default:
    the current directory; run from the repository root)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"spec file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from None
    return parse_spec(data, root=root, source=path)
