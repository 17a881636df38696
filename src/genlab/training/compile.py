"""``train.compile``: torch.compile the networks of a model, in place.

Only the networks are compiled (each sub-module with parameters that is called as a
function: a velocity net, an encoder, a generator, ...), never the samplers' or the losses'
Python control flow. ``nn.Module.compile`` keeps the module and its parameter names, so
checkpoints, EMA and DDP see the same state dict as in eager mode. Compilation happens at
the first call; the trainer runs its first step under :func:`compiled` and, if that step
fails, undoes the compilation with :func:`uncompile` and goes on in eager mode after one
warning line (e.g. the double backward of a CNF's Hutchinson divergence, which
torch.compile does not support).
"""

from __future__ import annotations

from torch import nn

__all__ = ["compile_mode", "compile_networks", "uncompile"]


def compile_mode(setting: bool | str) -> str | None:
    """The torch.compile mode of a ``train.compile`` setting (None: do not compile)."""
    if setting is False or setting is None:
        return None
    return "default" if setting is True else str(setting)


def _networks(module: nn.Module) -> list[nn.Module]:
    """The callable sub-modules with parameters, outermost first (containers are entered)."""
    found: list[nn.Module] = []
    for child in module.children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            found.extend(_networks(child))
        elif any(True for _ in child.parameters()):
            found.append(child)
    return found


def compile_networks(model: nn.Module, mode: str = "default") -> list[nn.Module]:
    """Compile every network of ``model`` in place (``nn.Module.compile``); returns them."""
    networks = _networks(model)
    for net in networks:
        net.compile(mode=mode)
    return networks


def uncompile(networks: list[nn.Module]) -> None:
    """Back to eager mode for modules compiled by :func:`compile_networks`."""
    for net in networks:
        net._compiled_call_impl = None
