"""Where theory meets numbers: verdicts with confidence and an adversarial falsifier.

:func:`check` holds one simulated instance against a bound; :func:`falsify` searches over
problem instances and hyper-parameters inside the theorem's conditions for the largest
empirical / bound ratio; :func:`family_bound` is the bound of the hypotheses a problem family
satisfies. The reports (tightness, mutations, the noise floor, PEPit, real runs) live in their
own modules.
"""

from .check import MEASURES, VERDICTS, Verdict, check
from .falsify import (
    FAMILY_BOUNDS,
    FAMILY_SPACES,
    FalsifyResult,
    build_instance,
    decode_point,
    falsify,
    family_bound,
)

__all__ = ["MEASURES", "VERDICTS", "Verdict", "check", "FAMILY_SPACES", "FAMILY_BOUNDS",
           "FalsifyResult", "falsify", "family_bound", "build_instance", "decode_point"]
