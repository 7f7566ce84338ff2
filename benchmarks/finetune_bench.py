"""Step time of every fine-tuning method against its floor, and peak memory, in one run.

    python benchmarks/finetune_bench.py                          # MiniLM on CPU, 8x64 and 32x128
    python benchmarks/finetune_bench.py --device cuda --model random:opt-1.3b --dtype bfloat16

Step time. For each batch shape (``batch x seq`` tokens, real mr snippets padded to ``seq``)
one fresh process loads a model per method, builds its optimizer exactly as the trainer does
(``build_optimizer``) and times every method *interleaved*: round after round, one step of
each, so that a change of load hits all of them alike; the table gives the fastest of ``--steps``
rounds after ``--warmup`` (load only ever adds time, so the minimum is the steadiest
estimate on a shared machine). The same rounds time the floors' parts with plain torch:
a no-grad forward of the plain and of the LoRA model, and a ``torch.optim.SGD`` step (forward,
backward, update) of the full and of the LoRA model. A method's floor is what it cannot do
without:

==============  =======================================================================
fo              plain torch SGD step of the full model
fo-lora         plain torch SGD step of the LoRA model
zo              2q no-grad forwards of the plain model (MeZO without drawing directions)
zo-lora         2q no-grad forwards of the LoRA model
hybrid          plain torch SGD step of the LoRA model + 2q no-grad LoRA forwards
hybrid-shared   plain torch SGD step of the LoRA model + q no-grad LoRA forwards
                (``--fo-gradient shared``: 1 + q passes)
==============  =======================================================================

``hybrid-rademacher`` is the hybrid with Rademacher directions (drawn as bits). A ZO step
also regenerates its direction: the table's ``move`` rows time one move of the whole ZO block
(x + a u -> x + b u, u regenerated from its seed, as ``HybridZOFO`` does it), and a central
q = 1 step makes three (to x + mu u, to x - mu u, back to x with the update folded in), a cost
the floor leaves out. The hybrid's moves share the piece each worker still holds from the
previous move (``PieceCache``); ``hybrid-regenerate`` is the hybrid with that sharing off
(every move regenerates every piece), to show what it saves.

Memory: each (method, shape) in a fresh subprocess with glibc's mmap threshold fixed, peak
measured over the timed steps only: on CPU the process's peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs``), on CUDA the allocator's peak allocated and reserved bytes. Every
weight is read once before timing (the safetensors are memory-mapped). ``zo_extra`` is the
ZO-full step's peak minus the peak of two no-grad forwards: what the perturbation adds, to
compare with the largest parameter tensor.

Targets: hybrid <= 1.1x its floor (issue 18); hybrid step <= 1.5x FO-LoRA, hybrid peak <=
1.1x FO-LoRA, ZO extra <= the largest tensor (issue 5). Measured in this one run; the machines
are shared and noisy: compare ratios, note the load (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

METHODS = ("fo", "fo-lora", "zo", "zo-lora", "hybrid", "hybrid-regenerate", "hybrid-shared",
           "hybrid-rademacher")
REFERENCES = ("forward", "forward-lora", "sgd", "sgd-lora", "move", "move-rademacher")
FLOORS = {  # method -> (plain torch step or None, number of no-grad forwards, forward kind)
    "fo": ("sgd", 0, None), "fo-lora": ("sgd-lora", 0, None), "zo": (None, 2, "forward"),
    "zo-lora": (None, 2, "forward-lora"), "hybrid": ("sgd-lora", 2, "forward-lora"),
    "hybrid-regenerate": ("sgd-lora", 2, "forward-lora"),
    "hybrid-shared": ("sgd-lora", 1, "forward-lora"),
    "hybrid-rademacher": ("sgd-lora", 2, "forward-lora"),
}


def _setup(spec: dict):
    import torch

    from hybridconv.finetune.tasks import load_task

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    task = load_task("mr", k_shot=max(spec["batch"], 2), test_size=1)
    return torch, task


def _batch(loaded, task, spec: dict) -> dict:
    import torch

    if loaded.tokenizer is None:  # random shapes without a tokenizer: random token ids
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, loaded.model.config.vocab_size, (spec["batch"], spec["seq"]),
                            generator=g)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                 "labels": torch.randint(0, 2, (spec["batch"],), generator=g)}
    else:
        examples = (task.train * spec["batch"])[:spec["batch"]]
        batch = loaded.encode(task, examples, spec["seq"], pad_to=spec["seq"])
    return {k: v.to(spec["device"]) for k, v in batch.items()}


def _config(spec: dict, method: str):
    from hybridconv.finetune.trainer import FinetuneConfig

    base = {"forward": "zo", "hybrid-shared": "hybrid", "hybrid-rademacher": "hybrid",
            "hybrid-regenerate": "hybrid",
            "forward-lora": "zo-lora", "sgd": "fo", "sgd-lora": "fo-lora", "move": "zo",
            "move-rademacher": "zo"}.get(method, method)
    return FinetuneConfig(model=spec["model"], method=base, device=spec["device"],
                          dtype=spec["dtype"],
                          fo_gradient="shared" if method == "hybrid-shared" else "clean",
                          directions="rademacher" if method.endswith("rademacher")
                          else "gaussian")


def _touch(model) -> None:
    import torch

    with torch.no_grad():  # make every weight resident: safetensors are mapped lazily, and
        for p in model.parameters():  # a ZO write would otherwise page in untouched rows
            float(p.sum())


def _loss(spec: dict, loaded, batch):
    """The batch loss as the trainer computes it (``trainer.batch_loss``: under
    ``torch.autocast`` in ``spec["autocast"]`` unless ``"none"``)."""
    from hybridconv.finetune.trainer import batch_loss

    forward = batch_loss(loaded, spec.get("autocast", "none"), spec["device"])
    return lambda: forward(batch)


def _stepper(spec: dict, method: str, torch, task):
    """A callable doing one step of ``method`` (a method or a reference), and its optimizer."""
    from hybridconv.finetune.models import apply_lora, load_model
    from hybridconv.finetune.optimizer import _set_offset
    from hybridconv.finetune.trainer import build_optimizer

    cfg = _config(spec, method)
    loaded = load_model(cfg.model, task, seed=0, dtype=getattr(torch, cfg.dtype),
                        device=cfg.device)
    batch = _batch(loaded, task, spec)
    loss = _loss(spec, loaded, batch)
    opt = None
    if method in ("forward", "forward-lora"):
        if method == "forward-lora":
            apply_lora(loaded, r=cfg.lora_r, alpha=cfg.lora_alpha, seed=0)
        loaded.model.eval()

        def step():
            with torch.no_grad():
                loss()
    elif method in ("sgd", "sgd-lora"):
        if method == "sgd-lora":
            apply_lora(loaded, r=cfg.lora_r, alpha=cfg.lora_alpha, seed=0)
        params = [p for p in loaded.model.parameters() if p.requires_grad]
        sgd = torch.optim.SGD(params, lr=1e-6)
        loaded.model.eval()

        def step():
            sgd.zero_grad(set_to_none=True)
            loss().backward()
            sgd.step()
    elif method.startswith("move"):
        opt = build_optimizer(cfg, loaded)
        zo, master, dirs = opt.zo_params(), opt._master, opt.directions
        state = {"at": 0.0}

        def step():  # one move of the whole ZO block, alternating x + mu u and x
            new = 1e-3 if state["at"] == 0.0 else 0.0
            _set_offset(zo, master, dirs, 12345, 0, new, state["at"], opt.threads)
            state["at"] = new
    else:
        opt = build_optimizer(cfg, loaded)
        if method == "hybrid-regenerate":
            opt._pieces = None  # every move regenerates every piece

        def step():
            opt.step(loss)
    _touch(loaded.model)
    return step, opt, loaded


def _sync(torch, dev: str) -> None:
    if torch.device(dev).type == "cuda":
        torch.cuda.synchronize(dev)


def time_worker(spec: dict) -> dict:
    """Every method and reference of one shape, timed interleaved (see the module doc)."""
    torch, task = _setup(spec)
    steppers = {}
    info = {}
    for m in spec["methods"]:
        step, opt, loaded = _stepper(spec, m, torch, task)
        steppers[m] = (step, opt)
        if m in ("forward", "sgd") or "params" not in info:  # the plain model's size
            info["params"] = sum(p.numel() for p in loaded.model.parameters())
        if opt is not None and m.startswith("move"):
            info["zo_params"] = sum(p.numel() for p in opt.zo_params())
    times: dict[str, list[float]] = {m: [] for m in steppers}
    clock = time.process_time if spec.get("clock") == "cpu" else time.perf_counter
    for r in range(spec["warmup"] + spec["steps"]):
        for m, (step, _) in steppers.items():
            t = clock()
            step()
            _sync(torch, spec["device"])
            if r >= spec["warmup"]:
                times[m].append(clock() - t)
    rows = []
    for m, (_, opt) in steppers.items():
        fwd = None
        if opt is not None and not m.startswith("move"):
            fwd = opt.forward_passes / (spec["warmup"] + spec["steps"])
        rows.append({"method": m, "batch": spec["batch"], "seq": spec["seq"],
                     "s_per_step": min(times[m]),
                     "s_per_step_median": statistics.median(times[m]), "fwd_per_step": fwd})
    opt = steppers.get("hybrid", (None, None))[1]
    if opt is not None and opt._pieces is not None:  # numbers a step did not regenerate
        info["shared_per_step"] = opt._pieces.reused / (spec["warmup"] + spec["steps"])
        info["hybrid_zo_params"] = sum(p.numel() for p in opt.zo_params())
    return {"rows": rows, "threads": torch.get_num_threads(), **info}


def memory_worker(spec: dict) -> dict:
    """Peak memory of one method over ``steps`` steps after ``warmup`` (fresh process)."""
    from hybridconv.finetune.memory import current_rss, peak_memory, reset_peak

    torch, task = _setup(spec)
    method = spec["method"]
    step, _, loaded = _stepper(spec, "forward" if method == "forward" else method, torch, task)
    largest = max(p.numel() * p.element_size() for p in loaded.model.parameters())
    passes = 2 if method == "forward" else 1
    for _ in range(spec["warmup"]):
        for _ in range(passes):
            step()
    _sync(torch, spec["device"])
    base = current_rss()
    reset_peak(spec["device"])
    for _ in range(spec["steps"]):
        for _ in range(passes):
            step()
    _sync(torch, spec["device"])
    mem = peak_memory(spec["device"])
    return {"method": method, "batch": spec["batch"], "seq": spec["seq"],
            "peak_bytes": mem["peak_mem_bytes"], "peak_reserved_bytes":
            mem.get("peak_reserved_bytes"), "rss_before_bytes": base,
            "largest_tensor_bytes": largest, "mem_source": mem["source"]}


def _subprocess(mode: str, spec: dict, env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, f"--{mode}", json.dumps(spec)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{mode} worker failed for {spec}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--autocast", default="none", choices=("none", "bfloat16", "float16"),
                    help="run every forward pass (methods and floors alike) under "
                         "torch.autocast in this dtype, as `hybridconv finetune --autocast`")
    ap.add_argument("--shapes", nargs="+", default=["8x64", "32x128"],
                    help="batch x sequence length")
    ap.add_argument("--steps", type=int, default=8, help="timed rounds (the fastest counts)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--no-memory", action="store_true", help="time only")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time steps by the wall clock (default) or by the process's CPU time "
                         "(all its threads: the work done, which other processes on a loaded "
                         "machine do not inflate; it does not show parallel speed-up)")
    ap.add_argument("--save", metavar="FILE", help="also write the report to FILE")
    ap.add_argument("--force", action="store_true", help="overwrite --save if it exists")
    ap.add_argument("--time-worker", help=argparse.SUPPRESS)
    ap.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.time_worker:
        print(json.dumps(time_worker(json.loads(args.time_worker))))
        return
    if args.memory_worker:
        print(json.dumps(memory_worker(json.loads(args.memory_worker))))
        return
    if min(args.steps, args.warmup + 1) < 1 or args.threads < 0:
        ap.error("--steps must be >= 1, --warmup and --threads >= 0")
    import contextlib
    import io
    from pathlib import Path

    import pandas as pd
    import torch

    if args.save and Path(args.save).exists() and not args.force:
        raise SystemExit(f"{args.save} exists; pass --force to overwrite it")
    load0 = os.getloadavg()
    needed = ({FLOORS[m][0] for m in args.methods} | {FLOORS[m][2] for m in args.methods}) - {
        None}
    refs = [r for r in REFERENCES if r in needed or r.startswith("move")]
    common = dict(model=args.model, device=args.device, dtype=args.dtype, autocast=args.autocast,
                  steps=args.steps, warmup=args.warmup, threads=args.threads,
                  clock=args.clock)
    timed, mem, meta = [], [], {}
    for shape in args.shapes:
        b, s = (int(v) for v in shape.split("x"))
        spec = dict(common, batch=b, seq=s, methods=[*args.methods, *refs])
        print(f"  {shape}: timing {len(spec['methods'])} methods and references "
              "interleaved", file=sys.stderr)
        res = _subprocess("time-worker", spec, dict(os.environ))
        timed += res["rows"]
        meta = {k: v for k, v in res.items() if k != "rows"}
        if args.no_memory:
            continue
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        for m in [*args.methods, "forward"]:
            print(f"  {shape}: memory of {m}", file=sys.stderr)
            mem.append(_subprocess("memory-worker", dict(common, batch=b, seq=s, method=m),
                                   env))
    load1 = os.getloadavg()
    df = pd.DataFrame(timed)
    if mem:
        df = df.merge(pd.DataFrame(mem), on=["method", "batch", "seq"], how="left")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        _report(df, args, torch, pd, meta, load0, load1)
    print(buf.getvalue(), end="")
    if args.save:
        from hybridconv._io import write_text_atomic

        write_text_atomic(args.save, buf.getvalue())


def floor_of(g, method: str) -> float:
    """A method's floor from the reference rows of its shape (see the module doc)."""
    step, n, fwd = FLOORS[method]
    return (g.loc[step, "s_per_step"] if step else 0.0) + (
        n * g.loc[fwd, "s_per_step"] if fwd else 0.0)


def _report(df, args, torch, pd, meta, load0, load1) -> None:
    MiB = 2**20
    dev = args.device if args.device == "cpu" else torch.cuda.get_device_name(args.device)
    has_mem = "peak_bytes" in df
    ac = "" if args.autocast == "none" else f", forward passes under {args.autocast} autocast"
    print(f"# finetune_bench: {args.model} ({meta.get('params', 0) / 1e6:.1f}M params, "
          f"{args.dtype}{ac}) on {dev}; {platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {meta.get('threads')} threads; fastest of {args.steps} "
          f"interleaved rounds after {args.warmup} warm-up"
          + ("; CPU time of the process, not wall time" if args.clock == "cpu" else "")
          + (f"; memory: {df['mem_source'].dropna().iloc[0]}" if has_mem else "")
          + f"; load average {load0[0]:.2f} before, {load1[0]:.2f} after (1 min)")
    for (b, s), g in df.groupby(["batch", "seq"], sort=False):
        g = g.set_index("method")
        methods = [m for m in METHODS if m in g.index]
        ref = g.loc["fo-lora"] if "fo-lora" in g.index else None
        table = pd.DataFrame({
            "s/step": g.loc[methods, "s_per_step"],
            "floor s": [floor_of(g, m) for m in methods],
        }, index=methods)
        table["x floor"] = table["s/step"] / table["floor s"]
        table["median s"] = g.loc[methods, "s_per_step_median"]
        table["fwd/step"] = g.loc[methods, "fwd_per_step"]
        if ref is not None:
            table["x FO-LoRA"] = table["s/step"] / ref["s_per_step"]
        if has_mem:
            table["peak MiB"] = g.loc[methods, "peak_bytes"] / MiB
            if ref is not None:
                table["peak x FO-LoRA"] = g.loc[methods, "peak_bytes"] / ref["peak_bytes"]
        print(f"\n## batch {b} x {s} tokens\n")
        print(table.round(3).to_string())
        refs = [r for r in REFERENCES if r in g.index]
        print("\nreferences (plain torch; s per call): " + ", ".join(
            f"{r} {g.loc[r, 's_per_step']:.4f}" for r in refs))
        if "hybrid" in g.index:
            h = g.loc["hybrid", "s_per_step"] / floor_of(g, "hybrid")
            print(f"\nhybrid / its floor {h:.2f} (target <= 1.1: "
                  f"{'met' if h <= 1.1 else 'MISSED'})")
            if "move" in g.index:
                mv, fl = g.loc["move", "s_per_step"], floor_of(g, "hybrid")
                print(f"one move of the ZO block ({meta.get('zo_params', 0) / 1e6:.1f}M "
                      f"weights, u regenerated, gaussian) {mv:.4f} s = {100 * mv / fl:.1f}% "
                      f"of the hybrid's floor; a central q = 1 step makes 3: "
                      f"{100 * 3 * mv / fl:.0f}% (with Rademacher bits: "
                      f"{100 * 3 * g.loc['move-rademacher', 's_per_step'] / fl:.0f}%)")
            if "shared_per_step" in meta:
                n, D = meta["shared_per_step"], 3 * meta["hybrid_zo_params"]
                print(f"pieces shared by the hybrid's moves: {n / 1e6:.2f}M of the {D / 1e6:.1f}M "
                      f"numbers three moves would regenerate ({100 * n / D:.1f}%)")
            if "hybrid-regenerate" in g.index:
                regen = g.loc["hybrid-regenerate", "s_per_step"] / g.loc["hybrid", "s_per_step"]
                print("hybrid without piece sharing (every move regenerates u) / hybrid "
                      f"{regen:.3f}")
            if "fo-lora" in g.index and "sgd-lora" in g.index:
                print(f"fo-lora (HybridZOFO) / plain torch SGD step of the LoRA model "
                      f"{g.loc['fo-lora', 's_per_step'] / g.loc['sgd-lora', 's_per_step']:.2f}")
            if ref is not None:
                r_t = g.loc["hybrid", "s_per_step"] / ref["s_per_step"]
                print(f"hybrid / FO-LoRA step time {r_t:.2f} (issue 5's target <= 1.5: "
                      f"{'met' if r_t <= 1.5 else 'MISSED'})", end="")
                if has_mem:
                    r_m = g.loc["hybrid", "peak_bytes"] / ref["peak_bytes"]
                    print(f"; peak memory {r_m:.2f} (target <= 1.1: "
                          f"{'met' if r_m <= 1.1 else 'MISSED'})")
                else:
                    print()
        if has_mem and "zo" in g.index and "forward" in g.index:
            extra = g.loc["zo", "peak_bytes"] - g.loc["forward", "peak_bytes"]
            big = g.loc["zo", "largest_tensor_bytes"]
            print(f"ZO-full peak - two no-grad forwards: {extra / MiB:.1f} MiB vs largest "
                  f"tensor {big / MiB:.1f} MiB (target <=: {'met' if extra <= big else 'MISSED'})")


if __name__ == "__main__":
    main()
