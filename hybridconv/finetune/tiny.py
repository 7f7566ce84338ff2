"""A tiny random causal LM for previews and tests (needs the ``[llm]`` extra).

One Llama layer of hidden size 16 with MiniLM's tokenizer: ``hybridconv figures --quick`` and
the tests fine-tune it in seconds. Its numbers say nothing about real models.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["save_tiny_model"]


def save_tiny_model(path: str | Path, *, seed: int = 0) -> str:
    """Save the tiny random causal LM (weights drawn from ``seed``) with MiniLM's tokenizer to
    ``path``; returns the path, which ``FinetuneConfig(model=...)`` accepts. The global torch
    random state is left as it was."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from .models import minilm_path

    path = Path(path)
    tok = AutoTokenizer.from_pretrained(minilm_path())
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      pad_token_id=tok.pad_token_id)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the tiny model's weights; the global state is restored
    try:
        LlamaForCausalLM(cfg).save_pretrained(path)
    finally:
        torch.random.set_rng_state(state)
    tok.save_pretrained(path)
    return str(path)
