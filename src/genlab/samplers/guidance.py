"""Classifier-free guidance (Ho & Salimans 2022) for any class-conditional network.

One network learns both the guided field v(x | y) and the unguided one v(x) = v(x | null):
training replaces the label by the "no label" token with probability eta (label dropout).
Sampling follows the guided field

    v_w(x | y) = (1 - w) v(x) + w v(x | y),      w >= 0 the guidance scale,

the lectures' form: w = 0 is the unconditional model, w = 1 the conditional one, w > 1
extrapolates away from the unconditional field and sharpens p(x | y) (roughly towards
p(x | y) p(y | x)^(w - 1)). Ho & Salimans write (1 + w') v(x | y) - w' v(x): the same family
with w = 1 + w'. The combination is taken on the raw network output; every conversion
between velocity, noise, data and score is affine in that output, so guiding any of them is
guiding all of them.
"""

from __future__ import annotations

from typing import Any

import torch

from genlab._validate import check_class_labels

#: the label that selects the "no label" (null) token of a class-conditional network
NULL_LABEL = -1


def is_class_conditional(net: Any) -> bool:
    """Whether ``net`` takes labels (genlab's TimeMLP / UNet built with ``num_classes``)."""
    return getattr(net, "class_embed", None) is not None


def num_classes(net: Any) -> int | None:
    """The number of classes of a class-conditional network, else None."""
    embed = getattr(net, "class_embed", None)
    return int(embed.num_classes) if embed is not None else None


def check_labels(net: Any, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """Validate labels for sampling n points: (n,) integers in [0, K) (or -1 for none)."""
    if y is None:
        return None
    k = num_classes(net)
    if k is None:
        raise ValueError(
            "labels were given but the network is not class-conditional "
            "(build it with num_classes / model.net.class_conditional=true)"
        )
    return check_class_labels(y, k, n, null_label=NULL_LABEL)


def drop_labels(y: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Replace each label by NULL_LABEL with probability p (classifier-free training)."""
    if p <= 0.0:
        return y
    drop = torch.rand(y.shape, generator=generator, device=y.device) < p
    return torch.where(drop, torch.full_like(y, NULL_LABEL), y)


class GuidedNet:
    """``net`` evaluated as (1 - w) net(x, t, null) + w net(x, t, y), called as fn(x, t).

    w = 1 and w = 0 cost one network evaluation; otherwise the conditional and unconditional
    evaluations run as one batch of 2B.
    """

    def __init__(self, net: Any, y: torch.Tensor, w: float) -> None:
        if not is_class_conditional(net):
            raise ValueError(
                "guidance needs a class-conditional network trained with label dropout "
                "(model.net.class_conditional=true, model.label_dropout > 0)"
            )
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not w >= 0.0:
            raise ValueError(f"guidance scale w must be a number >= 0, got {w!r}")
        if y is None:
            raise ValueError("guidance needs labels y (the class to guide towards)")
        self.net, self.y, self.w = net, y, float(w)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.w == 1.0:
            return self.net(x, t, self.y)
        null = torch.full_like(self.y, NULL_LABEL)
        if self.w == 0.0:
            return self.net(x, t, null)
        both = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([self.y, null]))
        cond, uncond = both.chunk(2)
        return uncond + self.w * (cond - uncond)
