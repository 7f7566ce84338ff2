"""Where theory meets numbers: verdicts with confidence and an adversarial falsifier.

:func:`check` holds one simulated instance against a bound; :func:`falsify` searches over
problem instances and hyper-parameters inside the theorem's conditions for the largest
empirical / bound ratio.
"""

from .check import MEASURES, VERDICTS, Verdict, check
from .falsify import FAMILY_SPACES, FalsifyResult, falsify

__all__ = ["MEASURES", "VERDICTS", "Verdict", "check", "FAMILY_SPACES", "FalsifyResult",
           "falsify"]
