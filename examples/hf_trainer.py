"""Fine-tune SmolLM2-135M-Instruct with hybridconv's hybrid step inside ``transformers.Trainer``.

    python examples/hf_trainer.py                              # hybrid LoRA, mr, 4 steps on CPU
    python examples/hf_trainer.py --method zo --lr_x 1e-5      # MeZO (ZO on every weight)
    python examples/hf_trainer.py --gradient_accumulation_steps 2 --per_device_train_batch_size 2
    accelerate launch --cpu --num_processes 2 examples/hf_trainer.py --per_device_train_batch_size 2

Every ``TrainingArguments`` flag works as usual (``--learning_rate`` is eta_y, the PEFT
module's rate; ``--lr_x`` is eta_x, the base weights'; ``--lr_scheduler_type``,
``--logging_steps``, ``--eval_strategy``, ``--save_steps``, ``--resume_from_checkpoint``,
``--report_to`` ...), plus the hybrid step's (``--method``, ``--mu``, ``--q``, ``--schedule``,
``--sampling``, ...) and this script's (``--model``, ``--task``, ``--peft``, ``--k_shot``,
``--test_size``, ``--max_length``, ``--save_weights``). The defaults are a quick demo: 16
training examples (8 per class), one epoch of 4 steps, evaluation on 32 test examples before
and after; they show that it runs, not that it learns (see docs/finetune.md for runs that do).

``--save_weights FILE`` writes every trained weight (the ZO-trained base included: Trainer's
own ``save_model`` keeps a peft model's adapters only) and every rank prints a digest of them,
so runs can be compared bit for bit.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field

DEFAULTS = ["--output_dir", "runs/hf_trainer", "--per_device_train_batch_size", "4",
            "--num_train_epochs", "1", "--learning_rate", "5e-2", "--lr_x", "1e-4",
            "--optim", "sgd", "--lr_scheduler_type", "constant", "--max_grad_norm", "0",
            "--logging_steps", "1", "--eval_strategy", "epoch", "--eval_on_start", "true",
            "--save_strategy", "no", "--report_to", "none", "--seed", "0",
            "--dataloader_pin_memory", "false"]


@dataclass
class ScriptArguments:
    model: str = field(default="smollm2", metadata={"help": "smollm2, minilm, random:SHAPE "
                                                            "or a local Hugging Face folder"})
    task: str = field(default="mr", metadata={"help": "mr, boolq, winogrande, ..."})
    peft: str = field(default="lora", metadata={"help": "lora, prompt or prefix (for the methods "
                                                        "fo-peft, zo-peft, hybrid)"})
    k_shot: int = field(default=8, metadata={"help": "training examples per class"})
    test_size: int = field(default=32, metadata={"help": "test examples"})
    max_length: int = field(default=64, metadata={"help": "tokens per example"})
    save_weights: str | None = field(default=None, metadata={"help": "write every trained "
                                                                     "weight to this file"})


def main(argv: list[str] | None = None) -> dict:
    import torch
    from transformers import HfArgumentParser

    from hybridconv.finetune import HybridTrainer, HybridTrainingArguments, TaskObjective, models
    from hybridconv.finetune.tasks import load_task

    parser = HfArgumentParser((ScriptArguments, HybridTrainingArguments))
    script, args = parser.parse_args_into_dataclasses(
        args=DEFAULTS + list(sys.argv[1:] if argv is None else argv))
    task = load_task(script.task, k_shot=script.k_shot, test_size=script.test_size,
                     data_seed=args.seed)
    loaded = models.load_model(script.model, task, seed=args.seed)
    if args.method not in ("zo", "fo"):  # the methods with a PEFT module
        models.apply_peft(loaded, script.peft, seed=args.seed)
    objective = TaskObjective(loaded, task, max_length=script.max_length)
    trainer = HybridTrainer(loaded.model, args, train_dataset=task.train,
                            eval_dataset=task.test, **objective.trainer_kwargs())
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    weights = {n: p.detach().cpu() for n, p in loaded.model.named_parameters()}
    digest = hashlib.sha256()
    for n in sorted(weights):
        digest.update(n.encode())
        digest.update(weights[n].float().numpy().tobytes())
    rank = args.process_index
    print(f"weights-digest rank={rank} sha256={digest.hexdigest()} "
          f"comm_bytes={trainer.hybrid_optimizer.comm_bytes}", flush=True)
    if script.save_weights and trainer.is_world_process_zero():
        torch.save(weights, script.save_weights)
    return {"train_loss": result.training_loss, "steps": result.global_step}


if __name__ == "__main__":
    main()
