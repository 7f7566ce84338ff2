"""Declarative sweeps: a TOML spec -> resumable runs -> a tidy CSV -> docs/results.md.

- :mod:`.spec`: parse and validate a spec, expand its grid into :class:`~.spec.Run` s;
- :mod:`.runner`: run what is not finished yet (resume from checkpoints), in parallel
  processes, appending rows atomically;
- :mod:`.report`: tables, paired comparisons and learning curves from the CSVs.

Command line: ``hybridconv experiment SPEC.toml [--workers N]`` and
``hybridconv experiment SPEC.toml ... --report docs/results.md``.
"""

from .spec import BASELINES, ExperimentSpec, Run, load_spec, parse_spec

__all__ = ["BASELINES", "ExperimentSpec", "Run", "load_spec", "parse_spec"]
