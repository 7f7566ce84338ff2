"""Peak-memory windows (CPU: VmHWM reset through /proc/self/clear_refs)."""

from __future__ import annotations

import sys

import pytest
import torch

from hybridconv.finetune.memory import current_rss, peak_memory, reset_peak


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux-only")
def test_a_window_sees_a_large_temporary_allocation():
    assert reset_peak("cpu")
    before = peak_memory("cpu")["peak_mem_bytes"]
    x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    float(x.sum())
    del x
    after = peak_memory("cpu")
    assert after["source"].startswith("VmHWM")
    assert after["peak_mem_bytes"] - before >= 60 * 2**20
    assert current_rss() is not None and current_rss() > 0
