"""``torch.optim`` state dicts as flat tensors plus a JSON description, and back.

Optimizer state (nested dicts keyed by int parameter ids, tuples such as Adam's ``betas``,
tensors such as ``exp_avg`` and ``step``) is split by :func:`optimizer_state_to_tensors`;
the JSON part uses type tags so tuples, int keys and non-finite floats come back exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["optimizer_state_from_tensors", "optimizer_state_to_tensors"]

_OPTIM_FORMAT = "genlab.optimizer_state"
_OPTIM_VERSION = 1
_SEP = "/"


#
# JSON encoding with type tags (every tag is a one-key dict whose key starts with "__"):
#   tensor             -> {"__tensor__": "state/0/exp_avg"}   (tensor stored separately)
#   tuple              -> {"__tuple__": [...]}
#   dict (any keys)    -> {"__dict__": [[key, value], ...]}   (keeps int keys and order)
#   non-finite float   -> {"__float__": "nan" | "inf" | "-inf"}
#   None/bool/int/str/finite float/list -> themselves


def _encode(obj: Any, path: tuple[str, ...], tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = _SEP.join(path) or "value"
        unique, n = name, 1
        while unique in tensors:
            unique, n = f"{name}#{n}", n + 1
        tensors[unique] = obj
        return {"__tensor__": unique}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, (*path, str(i)), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, (*path, str(i)), tensors) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        pairs = []
        for key, value in obj.items():
            if not (key is None or isinstance(key, (bool, int, float, str, tuple))):
                raise ValueError(
                    f"optimizer state key {key!r} at {'/'.join(path) or '<root>'} has "
                    f"unsupported type {type(key).__name__}"
                )
            pairs.append([_encode(key, (), {}), _encode(value, (*path, str(key)), tensors)])
        return {"__dict__": pairs}
    raise ValueError(
        f"optimizer state value at {'/'.join(path) or '<root>'} has unsupported type "
        f"{type(obj).__name__}; only tensors, numbers, strings, None, lists, tuples and "
        "dicts can be stored"
    )


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if len(obj) != 1:
            raise ValueError(f"malformed optimizer JSON node {obj!r}")
        ((tag, value),) = obj.items()
        if tag == "__tensor__":
            if value not in tensors:
                raise ValueError(f"optimizer state tensor {value!r} is missing from the tensors")
            return tensors[value]
        if tag == "__tuple__":
            return tuple(_decode(v, tensors) for v in value)
        if tag == "__dict__":
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value}
        if tag == "__float__":
            return float(value)
        raise ValueError(f"unknown tag {tag!r} in optimizer JSON")
    return obj


def optimizer_state_to_tensors(
    opt_state_dict: Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict()`` into flat tensors and a JSON-safe description.

    Every tensor (``exp_avg``, ``exp_avg_sq``, Adam's tensor ``step``, ...) goes into the
    first dict under a path-like name such as ``"state/0/exp_avg"``; everything else
    (``param_groups`` with tuple ``betas``, int parameter ids, flags, non-tensor state)
    goes into the second, which survives ``json.dumps``/``json.loads`` exactly. Store the
    first as a checkpoint group and the second in ``meta``; invert with
    :func:`optimizer_state_from_tensors`.

    >>> p = torch.nn.Parameter(torch.ones(2))
    >>> opt = torch.optim.AdamW([p], lr=0.1)
    >>> p.grad = torch.ones(2); opt.step()
    >>> tensors, spec = optimizer_state_to_tensors(opt.state_dict())
    >>> sorted(tensors)
    ['state/0/exp_avg', 'state/0/exp_avg_sq', 'state/0/step']
    >>> import json
    >>> back = optimizer_state_from_tensors(tensors, json.loads(json.dumps(spec)))
    >>> back["param_groups"][0]["betas"]
    (0.9, 0.999)
    """
    if not isinstance(opt_state_dict, Mapping):
        raise ValueError(
            f"opt_state_dict must be a dict (optimizer.state_dict()), got {type(opt_state_dict).__name__}"
        )
    tensors: dict[str, torch.Tensor] = {}
    # Top-level keys are kept as path roots ("state", "param_groups") for readable names.
    value = {
        "__dict__": [[_encode(k, (), {}), _encode(v, (str(k),), tensors)] for k, v in opt_state_dict.items()]
    }
    return tensors, {"format": _OPTIM_FORMAT, "version": _OPTIM_VERSION, "value": value}


def optimizer_state_from_tensors(
    tensors: Mapping[str, torch.Tensor], json_part: Mapping[str, Any]
) -> dict[str, Any]:
    """Rebuild the optimizer ``state_dict`` from :func:`optimizer_state_to_tensors` output.

    The result can be passed to ``optimizer.load_state_dict``; tuples, int keys and
    non-tensor values come back with their original types, tensors bit for bit.
    """
    if not isinstance(json_part, Mapping) or json_part.get("format") != _OPTIM_FORMAT:
        raise ValueError("json_part is not an optimizer description from optimizer_state_to_tensors")
    if int(json_part.get("version", 0)) > _OPTIM_VERSION:
        raise ValueError(
            f"optimizer state version {json_part['version']} is newer than this genlab "
            f"understands ({_OPTIM_VERSION}); upgrade genlab"
        )
    state = _decode(json_part["value"], tensors)
    if not isinstance(state, dict):
        raise ValueError("optimizer description does not decode to a dict")
    return state
