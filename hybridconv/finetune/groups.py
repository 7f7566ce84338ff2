"""Splitting a model's parameters into the ``zo`` block, the ``fo`` block and frozen ones.

MeZO's lesson (ANCHORS.md): choose the ZO parameters by *name*, not by ``requires_grad``. With
a peft model the default split is the hybrid of THEORY.md: the adapters (``lora_A``,
``lora_B``, ...) and the trainable copies of ``modules_to_save`` (the classification head) go
to ``fo``; every other base weight (``*.base_layer.weight`` included) goes to ``zo``; peft's
frozen ``original_module`` copies are never trained. A selector is any of

- a regular expression (``str``), searched in the parameter's full name;
- a module type, or a tuple of types: parameters owned directly by such modules;
- a list of names or of parameter tensors;
- a callable ``(name, parameter) -> bool``.

Precedence: ``original_module`` copies, then ``frozen``, then ``fo``, then ``zo``, then the
default (``fo`` for adapters and heads of a peft model, ``zo`` for the rest).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import spec

__all__ = ["Selector", "split_parameters", "hybrid_param_groups", "is_adapter_name",
           "method_selectors", "method_param_groups"]

Selector = str | type | tuple | Sequence[Any] | Callable[[str, torch.Tensor], bool] | None

_ADAPTER = re.compile(r"(^|\.)(lora_[A-Za-z_]+|lora_magnitude_vector|modules_to_save|"
                      r"prompt_encoder|ia3_l)(\.|$)")
_ORIGINAL = re.compile(r"(^|\.)original_module(\.|$)")


def is_adapter_name(name: str) -> bool:
    """Whether a parameter name belongs to a peft adapter or a ``modules_to_save`` copy.

    >>> is_adapter_name("base_model.model.bert.layer.0.query.lora_A.default.weight")
    True
    >>> is_adapter_name("base_model.model.bert.layer.0.query.base_layer.weight")
    False
    """
    return bool(_ADAPTER.search(name))


def _matcher(model: torch.nn.Module, sel: Selector, what: str) -> Callable[[str, Any], bool]:
    if sel is None:
        return lambda n, p: False
    if isinstance(sel, str):
        try:
            rx = re.compile(sel)
        except re.error as e:
            raise ValueError(f"{what}: {sel!r} is not a regular expression ({e})") from None
        return lambda n, p: bool(rx.search(n))
    if isinstance(sel, type) or (isinstance(sel, tuple) and sel
                                 and all(isinstance(t, type) for t in sel)):
        owned = {id(p) for m in model.modules() if isinstance(m, sel)
                 for p in m.parameters(recurse=False)}
        return lambda n, p: id(p) in owned
    if callable(sel):
        return lambda n, p: bool(sel(n, p))
    items = list(sel)
    names = {s for s in items if isinstance(s, str)}
    ids = {id(s) for s in items if isinstance(s, torch.Tensor)}
    if len(names) + len(ids) != len(items):
        raise ValueError(f"{what}: a list selector holds names or tensors only")
    known = {n for n, _ in model.named_parameters()}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(f"{what}: no parameter named {unknown[0]!r}")
    return lambda n, p: n in names or id(p) in ids


def split_parameters(model: torch.nn.Module, *, zo: Selector = None, fo: Selector = None,
                     frozen: Selector = None) -> dict[str, list[tuple[str, torch.Tensor]]]:
    """``{"zo": [...], "fo": [...], "frozen": [...]}`` lists of ``(name, parameter)``.

    With no selector, a model with peft adapters gets the hybrid split (adapters and heads
    ``fo``, base ``zo``); a model without adapters gets everything ``zo``.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    m_frozen, m_fo, m_zo = (_matcher(model, s, w) for s, w in
                            ((frozen, "frozen"), (fo, "fo"), (zo, "zo")))
    named = list(model.named_parameters())
    peft = any(is_adapter_name(n) for n, _ in named)
    out: dict[str, list[tuple[str, torch.Tensor]]] = {"zo": [], "fo": [], "frozen": []}
    for n, p in named:
        if _ORIGINAL.search(n) or m_frozen(n, p):
            kind = "frozen"
        elif m_fo(n, p):
            kind = "fo"
        elif m_zo(n, p):
            kind = "zo"
        elif zo is not None:  # an explicit zo selector: the rest is frozen unless fo says so
            kind = "fo" if (fo is None and peft and is_adapter_name(n)) else "frozen"
        else:
            kind = "fo" if peft and is_adapter_name(n) else "zo"
        out[kind].append((n, p))
    return out


def hybrid_param_groups(model: torch.nn.Module, *, lr_x: float, lr_y: float,
                        zo: Selector = None, fo: Selector = None,
                        frozen: Selector = None) -> list[dict[str, Any]]:
    """Parameter groups for :class:`~.optimizer.HybridZOFO` (names included, for replay).

    Frozen parameters get ``requires_grad=False`` here; the optimizer sets ``zo`` parameters
    to ``requires_grad=False`` and ``fo`` ones to ``True``. Empty blocks are left out.
    """
    lr_x = spec.validate("eta_x", lr_x, label="lr_x")
    lr_y = spec.validate("eta_y", lr_y, label="lr_y")
    split = split_parameters(model, zo=zo, fo=fo, frozen=frozen)
    for _, p in split["frozen"]:
        p.requires_grad_(False)
    groups = []
    for kind, lr in (("zo", lr_x), ("fo", lr_y)):
        if split[kind]:
            groups.append({"kind": kind, "lr": lr, "names": [n for n, _ in split[kind]],
                           "params": [p for _, p in split[kind]]})
    if not groups:
        raise ValueError("no parameter is trained: every parameter was selected as frozen")
    return groups


def _adapter(n: str, p: torch.Tensor) -> bool:
    return is_adapter_name(n)


def _base(n: str, p: torch.Tensor) -> bool:
    return not is_adapter_name(n)


def _everything(n: str, p: torch.Tensor) -> bool:
    return True


def method_selectors(method: str) -> dict[str, Selector]:
    """The selectors of a fine-tuning method (:data:`hybridconv.spec.METHODS`):

    ===========  ==============================  =====================  ==================
    method       zo block (lr_x)                 fo block (lr_y)        frozen
    ===========  ==============================  =====================  ==================
    fo           none                            every weight           none
    fo-peft      none                            PEFT module + head     base
    zo           every weight (MeZO)             none                   none
    zo-peft      PEFT module + head              none                   base
    hybrid       base                            PEFT module + head     peft's head copy
    ===========  ==============================  =====================  ==================

    ``fo-lora`` / ``zo-lora`` are accepted for ``fo-peft`` / ``zo-peft``.

    >>> sorted(method_selectors("fo-peft"))
    ['fo', 'frozen']
    """
    method = spec.validate("method", method, among=spec.METHODS)
    return {"fo": dict(fo=_everything), "fo-peft": dict(fo=_adapter, frozen=_base),
            "zo": dict(zo=_everything), "zo-peft": dict(zo=_adapter, frozen=_base),
            "hybrid": {}}[method]


def method_param_groups(model: torch.nn.Module, method: str, *, lr_x: float, lr_y: float,
                        zo: Selector = None, fo: Selector = None,
                        frozen: Selector = None) -> list[dict[str, Any]]:
    """:func:`hybrid_param_groups` split as :func:`method_selectors` says; explicit selectors
    (``zo``, ``fo``, ``frozen``) are allowed with ``method="hybrid"`` only (the other methods
    are defined by their split)."""
    sel = method_selectors(method)
    given = {k: v for k, v in (("zo", zo), ("fo", fo), ("frozen", frozen)) if v is not None}
    if given and sel:
        raise ValueError(f"zo/fo/frozen selectors need method 'hybrid', got method {method!r}")
    return hybrid_param_groups(model, lr_x=lr_x, lr_y=lr_y, **(given or sel))
