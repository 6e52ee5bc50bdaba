"""Per-layer weight and gradient norms of a model, for ``gitexp.log_norms``.

Imported by the API only when ``log_norms`` is called, so ``import gitexp`` stays light. Never
imports PyTorch or NumPy itself unless the model's parameters are of that kind (then the
library is already imported by the training script).

What counts as a model:

* a PyTorch ``nn.Module``, or anything with ``named_parameters()`` yielding (name, tensor);
  gradients come from each parameter's ``.grad`` when it is set;
* a mapping of names to arrays (NumPy arrays, or anything ``numpy.asarray`` takes), e.g. a
  state dict or ``np.load("model.npz")``; gradients can be given as a second mapping;
* an iterable of (name, array) pairs.

Layers: a parameter ``encoder.layer1.weight`` belongs to layer ``encoder.layer1``; a name
without a dot is a layer of its own. A layer's norm is the L2 norm of all its parameters
together (the square root of the sum of their squared norms); ``weight_norm`` and
``grad_norm`` without a layer are the norms over the whole model (what gradient clipping
compares against its threshold).
"""
from __future__ import annotations

import math
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

WEIGHT = "weight_norm"
GRAD = "grad_norm"


def layer_of(name: str, by: str = "layer") -> str:
    if by == "tensor":
        return name
    head, dot, _tail = name.rpartition(".")
    return head if dot else name


def named_arrays(model: Any) -> Tuple[List[Tuple[str, Any]], List[Tuple[str, Any]]]:
    """(name, weight) and (name, gradient) pairs of ``model`` (see the module's doc)."""
    if hasattr(model, "named_parameters") and callable(model.named_parameters):
        weights, grads = [], []
        for name, param in model.named_parameters():
            weights.append((str(name), param))
            grad = getattr(param, "grad", None)
            if grad is not None:
                grads.append((str(name), grad))
        return weights, grads
    if isinstance(model, Mapping) or hasattr(model, "items") and callable(model.items):
        return [(str(k), v) for k, v in model.items()], []
    if isinstance(model, (str, bytes)):
        raise TypeError("gitexp.log_norms: expected a model, a mapping of arrays or (name, array) pairs, "
                        f"not {type(model).__name__}")
    try:
        pairs = [(str(name), value) for name, value in model]
    except (TypeError, ValueError):
        raise TypeError("gitexp.log_norms: expected a PyTorch module (or anything with named_parameters()), "
                        f"a mapping of names to arrays, or (name, array) pairs; not {type(model).__name__}") from None
    return pairs, []


def _is_torch(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def squared_norms(arrays: Iterable[Tuple[str, Any]]) -> Dict[str, float]:
    """name -> squared L2 norm, in float64 for NumPy (no overflow for float16) and in one
    device-to-host copy for all PyTorch tensors together (one sync, not one per tensor)."""
    pairs = list(arrays)
    out: Dict[str, float] = {}
    torch_pairs = [(n, a) for n, a in pairs if _is_torch(a)]
    if torch_pairs:
        import torch

        with torch.no_grad():
            squares = []
            for _name, tensor in torch_pairs:
                t = tensor.detach()
                if t.is_sparse:
                    t = t.coalesce().values()
                t = t.double() if t.is_floating_point() or t.is_complex() else t.to(torch.float64)
                squares.append(t.abs().pow(2).sum() if t.is_complex() else t.pow(2).sum())
            values = torch.stack(squares).cpu().tolist()
        out.update({name: float(v) for (name, _), v in zip(torch_pairs, values)})
    rest = [(n, a) for n, a in pairs if not _is_torch(a)]
    if rest:
        import numpy as np

        for name, value in rest:
            array = np.asarray(value)
            if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
                continue  # not numbers (a name, a config value in a state dict): not a weight
            flat = array.astype(np.complex128 if np.iscomplexobj(array) else np.float64, copy=False).ravel()
            out[name] = float(np.vdot(flat, flat).real)
    return out


def norms(model: Any, grads: Optional[Any] = None, by: str = "layer", prefix: str = "") -> Dict[str, float]:
    """``{"weight_norm": ..., "weight_norm/<layer>": ..., "grad_norm": ..., "grad_norm/<layer>": ...}``.

    ``grads``: gradients for a mapping of arrays (same names as the weights); a PyTorch
    module's gradients are read from its parameters. ``by``: "layer" (default) or "tensor"
    (one value per parameter). ``prefix`` goes before each name, e.g. "encoder/".
    """
    if by not in ("layer", "tensor"):
        raise ValueError(f"gitexp.log_norms: by must be 'layer' or 'tensor', not {by!r}")
    weights, model_grads = named_arrays(model)
    if grads is not None:
        model_grads = named_arrays(grads)[0]
    out: Dict[str, float] = {}
    for kind, pairs in ((WEIGHT, weights), (GRAD, model_grads)):
        if not pairs:
            continue
        squares = squared_norms(pairs)
        if not squares:
            continue
        layers: Dict[str, float] = {}
        for name, square in squares.items():
            layer = layer_of(name, by)
            layers[layer] = layers.get(layer, 0.0) + square
        out[f"{prefix}{kind}"] = math.sqrt(math.fsum(squares.values()))
        for layer, square in layers.items():
            out[f"{prefix}{kind}/{layer}"] = math.sqrt(square)
    return out
