"""Hybrid fine-tuning in torch (DESIGN.md: the thin torch backend).

- :class:`HybridZOFO`: the optimizer (ZO on ``zo`` groups, FO on ``fo`` groups);
- :func:`hybrid_param_groups` / :func:`split_parameters`: parameters by name, type or list,
  peft-aware;
- :class:`ReshufflingSampler`: rr / so / ig / wr epoch orders, resumable;
- :func:`replay`: the final ZO weights from a step log;
- :class:`ProblemModule`: a simulator problem as a module (the equivalence test);
- :class:`HybridTrainer`, :class:`HybridTrainingArguments`, :class:`TaskObjective`: the step
  inside ``transformers.Trainer`` (imported on first use: they need transformers).

Real models and tasks (``tasks``, ``models``, ``trainer``) need the ``[llm]`` extra
(transformers, peft) and are imported from their modules.
"""

from .directions import DIRECTIONS, DirectionSource, NumpyStreamDirections, TorchDirections
from .groups import (
    hybrid_param_groups,
    is_adapter_name,
    method_param_groups,
    method_selectors,
    split_parameters,
)
from .optimizer import DIFFERENCES, FO_GRADIENTS, FO_OPTIMIZERS, HybridZOFO, ZOLog, replay
from .problem_module import ProblemModule
from .sampler import SAMPLINGS, ReshufflingSampler

__all__ = [
    "DIFFERENCES",
    "DIRECTIONS",
    "FO_GRADIENTS",
    "FO_OPTIMIZERS",
    "SAMPLINGS",
    "DirectionSource",
    "HybridTrainer",
    "HybridTrainingArguments",
    "HybridZOFO",
    "NumpyStreamDirections",
    "ProblemModule",
    "ReshufflingSampler",
    "TaskObjective",
    "TorchDirections",
    "ZOLog",
    "hybrid_param_groups",
    "is_adapter_name",
    "method_param_groups",
    "method_selectors",
    "replay",
    "split_parameters",
]

_LAZY = ("HybridTrainer", "HybridTrainingArguments", "TaskObjective")


def __getattr__(name: str):
    """The transformers-based names, imported on first use (``import hybridconv.finetune``
    stays free of transformers)."""
    if name in _LAZY:
        from . import hf_trainer

        return getattr(hf_trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
