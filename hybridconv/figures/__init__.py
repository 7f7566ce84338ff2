"""The report's figures: one module per figure, each computing a tidy DataFrame and plotting it.

Every figure module has ``NAME``, ``TITLE``, ``settings(quick) -> dict``,
``compute(*, quick, workers, progress) -> DataFrame`` and ``plot(df) -> Figure``; ``plot`` reads
nothing but the DataFrame, so a figure can be redrawn from its cached CSV
(``hybridconv figures --replot``). :func:`build` runs them and writes the PNG, the PDF, the CSV
and ``MANIFEST.json``.

>>> list(FIGURES)[:3]
['rates', 'regimes', 'sampling']
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

__all__ = ["FIGURES", "figure_module", "build"]

FIGURES: dict[str, str] = {
    "rates": "hybridconv.figures.rates",
    "regimes": "hybridconv.figures.regimes",
    "sampling": "hybridconv.figures.sampling",
    "complexity": "hybridconv.figures.complexity",
    "dimension": "hybridconv.figures.dimension",
    "tightness": "hybridconv.figures.tightness",
    "finetuning": "hybridconv.figures.finetuning",
    "realruns": "hybridconv.figures.realruns",
}
"""Figure name -> module, in the report's order."""


def figure_module(name: str) -> ModuleType:
    """The module of figure ``name`` (imported on demand)."""
    if name not in FIGURES:
        raise ValueError(f"figure must be one of {list(FIGURES)}, got {name!r}")
    return import_module(FIGURES[name])


def __getattr__(name: str):
    if name == "build":
        from .build import build

        return build
    raise AttributeError(name)
