"""Peak memory and time per step of every fine-tuning method, in the shape of the paper's Table 2.

    python benchmarks/gpu_suite.py                                # one GPU: OPT-1.3b and Llama-2-7b
    python benchmarks/gpu_suite.py --device cpu --tiny            # the same code, tiny shapes, CPU

Rows: FO-full, FO-PEFT, ZO-full (MeZO), ZO-PEFT, hybrid and hybrid Gauss-Seidel, for LoRA,
prompt and prefix tuning, plus ZO-full and hybrid-LoRA with in-place perturbation (MeZO's way,
no fp32 master copy) and two reference lines: the model's parameter bytes and the peak of one
no-grad forward pass (MeZO's "inference memory"). Models: OPT-1.3b and Llama-2-7b shapes with
random weights (``load_model("random:opt-1.3b")``, built on the device), in ``--dtype``
(bfloat16 by default), one batch of ``--batch`` x ``--seq`` random tokens classified by the
next-token logits of two label tokens (the fine-tuner's loss). Every method is
:class:`~hybridconv.finetune.optimizer.HybridZOFO` over its split
(:func:`~hybridconv.finetune.groups.method_param_groups`), plain SGD on the FO block (the
paper's protocol), eta_x = 1e-6, eta_y = 1e-3, mu = 1e-3, q = 1, central differences. The ZO
block keeps an fp32 master copy (``master_weights=True``: exact perturb / restore, also for
peft's fp32 adapters), except in the "in place" rows, which perturb and restore the weights in
their own dtype as MeZO does (no copy; the round trip leaves rounding errors, shown).

Measurement: each configuration runs in a fresh process (forked from a server that imported
torch and transformers but never touched the GPU, so each has its own CUDA context and
allocator), takes ``--warmup`` steps, resets the peak, and times ``--steps`` more (median,
with a device synchronize). CUDA: peak allocated and reserved bytes of the timed window
(``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``). CPU: peak resident set size
of the window (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the process's RSS
before the model was built (the interpreter and libraries), with glibc's mmap threshold fixed
so freed blocks leave the RSS. After timing, a step whose last forward pass raises checks that
the ZO block comes back exactly ("exact", or the largest difference left). A configuration
that runs past ``--timeout`` seconds is killed; one whose weights (and gradients, for FO-full)
alone exceed ``--max-memory-gib`` is skipped; an out-of-memory error is recorded; the reason
goes in the table. Configurations run in order of importance (references, FO-PEFT and hybrid
first) until ``--budget`` seconds are spent.

Output: the table on stdout (ratios of PEFT rows to FO-PEFT of the same kind, of full-model
rows to FO-LoRA), every measured number in ``--csv`` (written atomically; an existing file
needs ``--force``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's hybridconv, also in the forked processes
    sys.path.insert(0, str(ROOT))

MODELS = ("opt-1.3b", "llama-7b")
LABELS = {"opt-1.3b": "OPT-1.3b", "llama-7b": "Llama-2-7b"}
PEFTS = ("lora", "prompt", "prefix")
VARIANTS = ("inference", "fo", "fo-peft", "zo", "zo-inplace", "zo-peft", "hybrid",
            "hybrid-inplace", "hybrid-gs")
TINY = {  # the same architectures, shrunk (``--tiny``)
    "opt-1.3b": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128,
                     vocab_size=512, max_position_embeddings=128, word_embed_proj_dim=64),
    "llama-7b": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, vocab_size=512, max_position_embeddings=128),
}
RATES = dict(lr_x=1e-6, lr_y=1e-3, mu=1e-3)
PRELOAD = ("torch", "transformers", "peft", "hybridconv.finetune", "hybridconv.finetune.models",
           "transformers.models.opt.modeling_opt", "transformers.models.llama.modeling_llama",
           "peft.tuners.lora", "peft.tuners.prompt_tuning", "peft.tuners.prefix_tuning")
"""Modules the fork server imports once (and each measurement before its baseline RSS)."""
GiB = 2**30


# --- the configurations --------------------------------------------------------------------

def configurations(models, variants, pefts) -> list[dict]:
    """In order of importance: references, then Table 2's FO-PEFT and hybrid rows, then MeZO's
    ZO-full, then the rest; each tier for every model before the next tier."""
    tiers = [[("inference", None)],
             [(v, k) for k in pefts for v in ("fo-peft", "hybrid")],
             [("zo", None), ("zo-inplace", None), ("hybrid-inplace", "lora")],
             [("hybrid-gs", k) for k in pefts],
             [("zo-peft", k) for k in pefts],
             [("fo", None)]]
    out = []
    for tier in tiers:
        for m in models:
            out += [dict(model=m, variant=v, peft=k) for v, k in tier
                    if v in variants and (k is None or k in pefts)]
    return out


def method_of(variant: str) -> tuple[str | None, str, bool]:
    """(method of spec.METHODS or None for inference, schedule, in place)."""
    return {"inference": (None, "jacobi", False), "fo": ("fo", "jacobi", False),
            "fo-peft": ("fo-peft", "jacobi", False), "zo": ("zo", "jacobi", False),
            "zo-inplace": ("zo", "jacobi", True), "zo-peft": ("zo-peft", "jacobi", False),
            "hybrid": ("hybrid", "jacobi", False),
            "hybrid-inplace": ("hybrid", "jacobi", True),
            "hybrid-gs": ("hybrid", "gauss-seidel", False)}[variant]


def row_name(variant: str, peft: str | None) -> str:
    kind = {"lora": "LoRA", "prompt": "Prompt", "prefix": "Prefix", None: "full"}[peft]
    return {"inference": "inference (reference)", "fo": "FO-full", "fo-peft": f"FO-{kind}",
            "zo": "ZO-full", "zo-inplace": "ZO-full (in place, MeZO)",
            "zo-peft": f"ZO-{kind}", "hybrid": f"Hybrid-{kind}",
            "hybrid-inplace": f"Hybrid-{kind} (in place)",
            "hybrid-gs": f"Hybrid-GS-{kind}"}[variant]


# --- one configuration, in its own process ---------------------------------------------------

def _task():
    from hybridconv.finetune.tasks import Task

    return Task(name="synthetic", train=[], test=[], classes=("a", "b"),
                label_words=(" a", " b"), template="{text}")


def build_model(shape: str, *, tiny: bool, dtype, device: str, seed: int = 0):
    """A LoadedModel with random weights, built on ``device``."""
    import torch

    from hybridconv.finetune import models

    if not tiny:
        with torch.device(device):
            return models.load_model(f"random:{shape}", _task(), seed=seed, dtype=dtype,
                                     device=device)
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = {**models.RANDOM_SHAPES[shape], **TINY[shape]}
    config = AutoConfig.for_model(kw.pop("model_type"), **kw)
    with models.seeded(seed), torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return models.LoadedModel(name=f"tiny:{shape}", model=model, tokenizer=None, kind="lm",
                              label_token_ids=[0, 1])


class _Abort(Exception):
    pass


def measure(spec: dict) -> dict:
    """Build, step, time and measure one configuration (runs in a fresh process)."""
    import warnings

    import torch

    from hybridconv.finetune import HybridZOFO, method_param_groups
    from hybridconv.finetune.memory import (
        current_rss,
        parameter_bytes,
        peak_memory,
        reset_peak,
    )
    from hybridconv.finetune.models import apply_peft

    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers vs peft prefixes
    for name in PRELOAD:  # imported before the baseline RSS (already there when forked)
        __import__(name)
    dev = spec["device"]
    cuda = torch.device(dev).type == "cuda"
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    base_rss = current_rss()
    dtype = getattr(torch, spec["dtype"])
    method, schedule, inplace = method_of(spec["variant"])
    out: dict = {"status": "ok", "base_rss_bytes": base_rss}
    loaded = build_model(spec["model"], tiny=spec["tiny"], dtype=dtype, device=dev)
    out["model_params"] = sum(p.numel() for p in loaded.model.parameters())
    if spec["peft"]:  # LoRA r = 8, alpha = 16 on peft's default targets; 10 virtual tokens
        apply_peft(loaded, spec["peft"], r=8, alpha=16, num_virtual_tokens=10, seed=0)
        loaded.model.to(dev)  # anything peft created elsewhere (no copy for the rest)
    model = loaded.model
    out["weights_bytes"] = parameter_bytes(model)
    g = torch.Generator().manual_seed(0)
    vocab = getattr(model, "get_base_model", lambda: model)().config.vocab_size
    ids = torch.randint(0, vocab, (spec["batch"], spec["seq"]), generator=g)
    batch = {"input_ids": ids.to(dev), "attention_mask": torch.ones_like(ids).to(dev),
             "labels": torch.randint(0, 2, (spec["batch"],), generator=g).to(dev)}

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    opt = None
    if method is None:  # the reference: one no-grad forward pass
        model.eval()

        def step():
            with torch.no_grad():
                return loaded.loss(batch)
    else:
        groups = method_param_groups(model, method, lr_x=RATES["lr_x"], lr_y=RATES["lr_y"])
        opt = HybridZOFO(groups, mu=RATES["mu"], seed=0, module=model, schedule=schedule,
                         master_weights=not inplace)
        zo = opt.zo_params()
        fo = [p for gr in opt.param_groups if gr["kind"] == "fo" for p in gr["params"]]
        out.update(zo_params=sum(p.numel() for p in zo), fo_params=sum(p.numel() for p in fo),
                   master_bytes=sum(4 * p.numel() for p, m in zip(zo, opt.log.master,
                                                                  strict=True) if m))

        def step():
            return opt.step(lambda: loaded.loss(batch))
    if not cuda:
        with torch.no_grad():  # every weight resident before the window (lazily mapped pages)
            for p in model.parameters():
                float(p.detach().float().sum())
    for _ in range(spec["warmup"]):
        loss = step()
    sync()
    reset_peak(dev)
    times = []
    for _ in range(spec["steps"]):
        t = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t)
    mem = peak_memory(dev)
    out.update(s_per_step=statistics.median(times), loss=float(loss),
               peak_bytes=mem["peak_mem_bytes"], peak_reserved_bytes=mem.get(
                   "peak_reserved_bytes"), mem_source=mem["source"])
    if not cuda and base_rss is not None:
        out["peak_bytes"] -= base_rss
    if opt is not None:
        out["fwd_per_step"] = opt.forward_passes / (spec["warmup"] + spec["steps"])
        try:  # after the measured window: its copy of the ZO block is not in the peak
            out["restore"] = restore_check(opt, loaded, batch) if opt.zo_params() else "n/a"
        except torch.cuda.OutOfMemoryError:
            out["restore"] = "not checked (out of memory for the copy)"
    else:
        out["fwd_per_step"] = 1.0
    return out


def restore_check(opt, loaded, batch) -> str:
    """Run a step whose last forward pass raises: HybridZOFO moves the ZO block back. 'exact'
    if every ZO weight equals its value before, else the largest difference."""
    zo = opt.zo_params()
    before = [p.detach().clone() for p in zo]
    per_step = round(opt.forward_passes / max(opt.steps, 1))
    calls = [0]

    def closure():
        calls[0] += 1
        if calls[0] == per_step:
            raise _Abort
        return loaded.loss(batch)

    try:
        opt.step(closure)
    except _Abort:
        pass
    diff = max(float((p.detach().float() - b.float()).abs().max()) for p, b in
               zip(zo, before, strict=True))
    return "exact" if diff == 0.0 else f"max |dx| {diff:.1e}"


def _child(spec: dict, path: str) -> None:
    try:
        res = measure(spec)
    except Exception as e:  # an out-of-memory error or a failure: recorded, the suite goes on
        import torch

        oom = isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()
        res = {"status": "oom" if oom else "error",
               "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    Path(path).write_text(json.dumps(res))


# --- the driver ------------------------------------------------------------------------------

def estimate(variant: str, n: int, itemsize: int) -> tuple[int, str]:
    """A lower bound of the bytes a configuration needs, and what it counts: the weights; plus
    their gradients for FO-full; plus the ZO block's fp32 master copy in half precision
    (activations are not counted)."""
    w = n * itemsize
    if variant == "fo":
        return 2 * w, "weights + gradients"
    if variant in ("zo", "hybrid", "hybrid-gs") and itemsize < 4:
        return w + 4 * n, "weights + fp32 master copy"
    return w, "weights"


def parameter_count(shape: str, tiny: bool) -> int:
    import torch

    with torch.device("meta"):
        return build_model(shape, tiny=tiny, dtype=torch.float32, device="meta").model \
            .num_parameters()


def run_all(args) -> list[dict]:
    import torch

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        total = torch.cuda.get_device_properties(torch.device(args.device)).total_memory \
            if args.max_memory_gib is None else args.max_memory_gib * GiB
        device_name = _device_name(args.device)
    else:
        total = (args.max_memory_gib * GiB if args.max_memory_gib is not None
                 else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        device_name = f"cpu ({platform.processor() or platform.machine()}, "\
                      f"{os.cpu_count()} cores)"
    itemsize = getattr(torch, args.dtype).itemsize
    counts = {m: parameter_count(m, args.tiny) for m in args.models}
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
        for i, c in enumerate(configurations(args.models, args.variants, args.peft)):
            row = {**c, "name": row_name(c["variant"], c["peft"]), "device": device_name,
                   "dtype": args.dtype, "batch": args.batch, "seq": args.seq,
                   "model_params": counts[c["model"]]}
            left = args.budget - (time.perf_counter() - start)
            need, what = estimate(c["variant"], counts[c["model"]], itemsize)
            if need > total:
                row.update(status="skipped", reason=f"needs more than {need / GiB:.1f} GiB "
                                                    f"({what}) > {total / GiB:.1f} GiB")
            elif left < 1:
                row.update(status="skipped", reason=f"suite budget of {args.budget:g} s spent")
            else:
                spec = {**c, "device": args.device, "dtype": args.dtype, "tiny": args.tiny,
                        "batch": args.batch, "seq": args.seq, "steps": args.steps,
                        "warmup": args.warmup, "threads": args.threads}
                path = os.path.join(tmp, f"{i}.json")
                t0 = time.perf_counter()
                p = _start(ctx, spec, path)
                if p is not None:
                    p.join(min(args.timeout, left))
                wall = time.perf_counter() - t0
                if p is None:
                    row.update(status="error", reason="could not start a process")
                elif p.is_alive():
                    p.kill()
                    p.join()
                    why = (f"--timeout {args.timeout:g}" if args.timeout <= left
                           else f"the suite budget --budget {args.budget:g}")
                    row.update(status="timeout", reason=f"killed after {wall:.0f} s ({why})")
                elif not os.path.exists(path):
                    row.update(status="error", reason=f"process exited with code {p.exitcode}")
                else:
                    row.update(json.loads(Path(path).read_text()))
                row["wall_s"] = wall
            rows.append(row)
            print(f"  [{time.perf_counter() - start:5.0f} s] {LABELS[c['model']]:10s} "
                  f"{row['name']:26s} {row.get('status')}"
                  + (f" {row['s_per_step']:.4f} s/step {row['peak_bytes'] / 2**20:.1f} MiB"
                     if row.get("status") == "ok" else f" ({row.get('reason', '')})"),
                  file=sys.stderr, flush=True)
    return rows


def _start(ctx, spec: dict, path: str, tries: int = 3):
    """Start the measuring process; a fork server that died (EOF on its socket) is restarted
    by multiprocessing on the next try."""
    for _ in range(tries):
        p = ctx.Process(target=_child, args=(spec, path))
        try:
            p.start()
            return p
        except (EOFError, OSError) as e:
            print(f"  could not start a process ({type(e).__name__}: {e}); retrying",
                  file=sys.stderr, flush=True)
            time.sleep(1)
    return None


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(torch.device(device))


# --- the table ---------------------------------------------------------------------------------

def table(rows: list[dict], args) -> str:
    """The Table 2 layout: one line per method, per model peak memory and time with ratios."""
    by = {(r["model"], r["variant"], r["peft"]): r for r in rows}
    models = [m for m in args.models if any(r["model"] == m for r in rows)]
    cuda = not str(args.device).startswith("cpu")
    big = max((r.get("peak_bytes") or 0) for r in rows) >= GiB
    unit, scale = ("GiB", GiB) if big else ("MiB", 2**20)
    mem = f"peak alloc / reserved {unit}" if cuda else f"peak RSS - base, {unit}"
    head = ["method"]
    for m in models:
        head += [f"{LABELS[m]}{' (tiny)' if args.tiny else ''} {mem}", "x FO-PEFT", "s/step",
                 "x FO-PEFT"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    weights = ["parameter bytes (reference)"]
    for m in models:
        w = next((r["weights_bytes"] for r in rows if r["model"] == m and r.get("weights_bytes")
                  and r["variant"] in ("inference", "zo", "fo")), None)
        n = next(r["model_params"] for r in rows if r["model"] == m)
        w = w if w is not None else n * _itemsize(args.dtype)
        weights += [f"{w / scale:.3f}", "", "", ""]
    lines.append("| " + " | ".join(weights) + " |")
    order = [("inference", None), ("fo", None)] + [("fo-peft", k) for k in PEFTS] + \
        [("zo", None), ("zo-inplace", None)] + [("zo-peft", k) for k in PEFTS] + \
        [("hybrid", k) for k in PEFTS] + [("hybrid-inplace", "lora")] + \
        [("hybrid-gs", k) for k in PEFTS]
    notes = []
    for v, k in order:
        if not any((m, v, k) in by for m in models):
            continue
        cells = [row_name(v, k)]
        for m in models:
            r = by.get((m, v, k))
            ref = by.get((m, "fo-peft", k or "lora"))
            if r is None:
                cells += ["", "", "", ""]
                continue
            if r.get("status") != "ok":
                cells += [r["status"], "", "", ""]
                notes.append(f"{LABELS[m]} {row_name(v, k)}: {r['status']}: {r.get('reason')}")
                continue
            peak = r["peak_bytes"] / scale
            cell = f"{peak:.3f}" + (f" / {r['peak_reserved_bytes'] / scale:.3f}"
                                    if r.get("peak_reserved_bytes") else "")
            ok = ref is not None and ref.get("status") == "ok"
            ratio_m = f"{r['peak_bytes'] / ref['peak_bytes']:.2f}" if ok else ""
            ratio_t = f"{r['s_per_step'] / ref['s_per_step']:.2f}" if ok else ""
            if k is None and ratio_m:
                ratio_m, ratio_t = ratio_m + "*", ratio_t + "*"
            cells += [cell, ratio_m, f"{r['s_per_step']:.4f}", ratio_t]
            if r.get("restore") not in (None, "n/a", "exact"):
                notes.append(f"{LABELS[m]} {row_name(v, k)}: ZO restore {r['restore']}")
        lines.append("| " + " | ".join(cells) + " |")
    out = "\n".join(lines)
    out += "\n\n* full-model rows: ratio to FO-LoRA. PEFT rows: ratio to FO-PEFT of the same kind."
    for m in models:
        inf, zo, zi = (by.get((m, v, None)) for v in ("inference", "zo", "zo-inplace"))
        if inf and inf.get("status") == "ok":
            parts = [f"{name} / inference {r['peak_bytes'] / inf['peak_bytes']:.2f}"
                     for name, r in (("ZO-full (master)", zo), ("ZO-full (in place)", zi))
                     if r and r.get("status") == "ok"]
            if parts:
                out += f"\nMeZO's claim (ZO-full ~ inference memory), {LABELS[m]}: " + \
                       "; ".join(parts)
    checks = [r for r in rows if r.get("restore") == "exact"
              or str(r.get("restore")).startswith("max")]
    exact = [r for r in checks if r["restore"] == "exact"]
    out += f"\nExact restore after an aborted step: {len(exact)} of {len(checks)} ZO rows"
    if notes:
        out += "\n" + "\n".join(f"- {n}" for n in notes)
    return out + "\n"


def _itemsize(dtype: str) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]


def header(args, rows) -> str:
    import torch

    dev = rows[0]["device"] if rows else args.device
    return (f"# gpu_suite: {dev}; {args.dtype}; batch {args.batch} x {args.seq} tokens; median "
            f"of {args.steps} steps after {args.warmup} warm-up; torch {torch.__version__}, "
            f"{platform.python_implementation()} {platform.python_version()}; each "
            f"configuration in a fresh process\n\n")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--tiny", action="store_true",
                    help="tiny shapes of the same architectures (a smoke run; CPU: < 2 min)")
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--peft", nargs="+", default=list(PEFTS), choices=PEFTS)
    ap.add_argument("--batch", type=int, default=None, help="default 8 (tiny: 2)")
    ap.add_argument("--seq", type=int, default=None, help="default 256 (tiny: 16)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps, default 5 (tiny: 2)")
    ap.add_argument("--warmup", type=int, default=None, help="default 2 (tiny: 1)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per configuration, default 60 (tiny: 30)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole suite, default 450 (tiny: 110)")
    ap.add_argument("--max-memory-gib", type=float, default=None,
                    help="skip what needs more (default: the device's memory)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads per process (default: torch's; tiny: 1)")
    ap.add_argument("--csv", default=None, help="write every number here (default "
                                                "docs/gpu_suite_<device>.csv; tiny: none)")
    ap.add_argument("--save", default=None, help="also write the printed report here")
    ap.add_argument("--force", action="store_true", help="overwrite --csv / --save")
    args = ap.parse_args(argv)
    tiny = args.tiny
    for name, full, small in (("batch", 8, 2), ("seq", 256, 16), ("steps", 5, 2),
                              ("warmup", 2, 1), ("timeout", 60.0, 30.0),
                              ("budget", 450.0, 110.0)):
        if getattr(args, name) is None:
            setattr(args, name, small if tiny else full)
    for name in ("batch", "seq", "steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be an integer >= 1, got {getattr(args, name)}")
    if args.threads is None:
        args.threads = 1 if tiny else 0
    if args.threads < 0:
        ap.error(f"--threads must be an integer >= 0, got {args.threads}")
    if args.warmup < 0:
        ap.error(f"--warmup must be an integer >= 0, got {args.warmup}")
    for name in ("timeout", "budget"):
        v = getattr(args, name)
        if not (math.isfinite(v) and v > 0):
            ap.error(f"--{name} must be a number of seconds > 0, got {v}")
    if args.max_memory_gib is not None and not args.max_memory_gib > 0:
        ap.error(f"--max-memory-gib must be > 0, got {args.max_memory_gib}")
    if args.csv is None and not tiny:
        args.csv = f"docs/gpu_suite_{'cpu' if args.device == 'cpu' else 'cuda'}.csv"
    for path in (args.csv, args.save):
        if path and Path(path).exists() and not args.force:
            ap.error(f"{path} exists; pass --force to overwrite it")
        if path and not Path(path).resolve().parent.is_dir():
            ap.error(f"the folder of {path} does not exist")
    return args, ap


def main(argv=None) -> int:
    args, ap = parse(argv)
    import torch

    if args.device != "cpu":
        try:
            dev = torch.device(args.device)
        except RuntimeError:
            ap.error(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
        if dev.type != "cuda" or not torch.cuda.is_available():
            ap.error(f"--device {args.device}: no CUDA device here (use --device cpu --tiny)")
    else:
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")  # for the forked processes
    rows = run_all(args)
    report = header(args, rows) + table(rows, args)
    print(report, end="")
    from hybridconv._io import write_text_atomic

    if args.csv:
        import pandas as pd

        write_text_atomic(args.csv, pd.DataFrame(rows).to_csv(index=False))
    if args.save:
        write_text_atomic(args.save, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
