"""The notebooks run top to bottom (nbclient, a fresh kernel each) and are stored without
outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
NEEDS_LLM = {"03_hybrid_finetuning.ipynb"}


def test_the_three_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_step_size_regimes.ipynb",
                                           "02_checking_your_own_bound.ipynb",
                                           "03_hybrid_finetuning.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


SLOW = {"03_hybrid_finetuning.ipynb"}
"""Notebooks run only with ``-m slow``: 03 fine-tunes MiniLM (75 s on 2 cores); its path
(HybridZOFO on a real model in a plain loop) is covered by the default suite's
tests/test_finetune_trainer.py."""


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW
                                  else p for p in NOTEBOOKS], ids=lambda p: p.stem)
def test_notebook_runs_clean(path, tmp_path, monkeypatch):
    if path.name in NEEDS_LLM:
        pytest.importorskip("transformers")
        pytest.importorskip("peft")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    assert not errors
