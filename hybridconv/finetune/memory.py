"""Peak memory of a run: CUDA allocator statistics, or the process's peak RSS on CPU.

On CUDA both the allocated and the reserved peaks are reported (ANCHORS.md: numbers from
different tools are not comparable). On Linux CPU the peak resident set size (``VmHWM``) is
reset by writing ``5`` to ``/proc/self/clear_refs`` (proc(5)), so a peak can be measured over
a window (e.g. the training steps, without the model load); elsewhere the lifetime
``ru_maxrss`` is the best available and ``resettable`` says so.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

__all__ = ["reset_peak", "peak_memory", "current_rss", "parameter_bytes"]


def _status(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def current_rss() -> int | None:
    """Resident set size now, in bytes (Linux), else None."""
    return _status("VmRSS")


def reset_peak(device: str | torch.device = "cpu") -> bool:
    """Start a new peak window; returns whether the peak could be reset."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory(device: str | torch.device = "cpu") -> dict[str, int | str]:
    """``{"peak_mem_bytes", "peak_reserved_bytes" (CUDA), "source"}`` since the last reset."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        return {"peak_mem_bytes": int(torch.cuda.max_memory_allocated(device)),
                "peak_reserved_bytes": int(torch.cuda.max_memory_reserved(device)),
                "source": "torch.cuda.max_memory_allocated"}
    hwm = _status("VmHWM")
    if hwm is not None:
        return {"peak_mem_bytes": hwm, "source": "VmHWM (peak RSS)"}
    scale = 1 if sys.platform == "darwin" else 1024
    return {"peak_mem_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
            "source": "ru_maxrss (lifetime peak RSS)"}


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of a module's parameters (each tensor once): the reference line of a memory
    table (MeZO's claim: ZO fine-tuning needs about the memory of inference)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    return total
