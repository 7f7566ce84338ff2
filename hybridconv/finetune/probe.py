"""Linear probe on frozen features: the baseline every fine-tuning method must beat.

Features: a classifier's mean-pooled last hidden state (what :class:`~.models.MeanPoolClassifier`
feeds its head), a causal LM's last hidden state at the prompt's last token (what its
label-word logits read). They are standardized with the training set's mean and standard
deviation per coordinate, then a multinomial logistic regression

    min_W,b (1/n) sum_i CE(W z_i + b, y_i) + lambda ||W||_F^2

is fitted by L-BFGS (``torch.optim.LBFGS``, strong-Wolfe line search; convex, so the optimum
does not depend on the start). lambda is chosen on the dev split from :data:`L2_GRID`
(highest dev accuracy, ties to the larger lambda), and the test accuracy of that fit is the
probe's row. Deterministic: no random draw.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["L2_GRID", "features", "fit_logistic", "linear_probe"]

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@torch.no_grad()
def features(loaded, task, examples, *, max_length: int, batch_size: int = 64,
             device: str = "cpu") -> torch.Tensor:
    """Frozen features (N, hidden) of ``examples`` in eval mode."""
    model = loaded.model
    mode = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(examples), batch_size):
            batch = loaded.encode(task, examples[i:i + batch_size], max_length)
            batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            out.append(loaded.features(batch).float().cpu())
    finally:
        model.train(mode)
    return torch.cat(out)


def fit_logistic(z: torch.Tensor, y: torch.Tensor, classes: int, l2: float,
                 max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) of the L2-regularised logistic regression above, by L-BFGS in float64."""
    z = z.double()
    W = torch.zeros(classes, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ W.T + b, y) + l2 * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach()


def linear_probe(loaded, task, *, max_length: int, device: str = "cpu",
                 l2_grid: tuple[float, ...] = L2_GRID) -> dict[str, Any]:
    """Fit the probe on ``task.train``, choose lambda on ``task.dev``, score ``task.test``.

    Returns ``{"accuracy", "test_loss", "dev_accuracy", "l2", "per_l2": [...]}``.
    """
    if not task.dev:
        raise ValueError(f"task {task.name!r} has no dev split to choose the L2 weight on")
    kw = dict(max_length=max_length, device=device)
    z_tr, z_dev, z_te = (features(loaded, task, xs, **kw)
                         for xs in (task.train, task.dev, task.test))
    mean, sd = z_tr.mean(0), z_tr.std(0).clamp_min(1e-6)
    std = lambda z: ((z - mean) / sd).double()  # noqa: E731
    y = {k: torch.tensor([e.label for e in xs]) for k, xs in
         (("train", task.train), ("dev", task.dev), ("test", task.test))}
    C = len(task.classes)
    rows = []
    for l2 in l2_grid:
        W, b = fit_logistic(std(z_tr), y["train"], C, l2)
        dev_logits, te_logits = std(z_dev) @ W.T + b, std(z_te) @ W.T + b
        rows.append({"l2": l2,
                     "dev_accuracy": float((dev_logits.argmax(1) == y["dev"]).double().mean()),
                     "accuracy": float((te_logits.argmax(1) == y["test"]).double().mean()),
                     "test_loss": float(torch.nn.functional.cross_entropy(te_logits,
                                                                          y["test"]))})
    best = max(rows, key=lambda r: (r["dev_accuracy"], r["l2"]))
    return {**best, "per_l2": rows}
