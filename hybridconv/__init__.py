"""hybridconv: hybrid zeroth-order / first-order fine-tuning, its theory and its checks.

The base model's weights (block ``x``) get zeroth-order updates, the PEFT module (block ``y``)
first-order ones, inside a random-reshuffling SGD loop with one learning rate per block.
``hybridconv.theory`` states the assumptions and derives the convergence bound symbolically.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
