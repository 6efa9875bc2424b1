"""Splicing a function into a language model at a hook: replace one module's output and run the rest of the model.

Used to ask what the model loses when a hook's activations are replaced by an SAE's reconstruction
(saeseeds.functional.loss). The layers before the hook do not depend on what is spliced in, so they run once
per batch of contexts (`Prefix`) and every splice runs only the block holding the hook and those after it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from saeseeds.activations.models import resolve_hook

Splice = Callable[[torch.Tensor], torch.Tensor]
"""Maps the hooked module's output [B, L, d] to what the rest of the model sees instead (same shape)."""

# The final norm of the base transformer, by the name each family gives it (saeseeds.activations.layouts).
FINAL_NORMS = ("norm", "final_layer_norm", "ln_f")


@contextmanager
def spliced(module: nn.Module, fn: Splice) -> Iterator[None]:
    """Within the block, `module`'s output is replaced by `fn(output)` (the first element of a tuple output)."""

    def replace(mod, args, output):
        if isinstance(output, tuple):
            return (_checked(fn, output[0]),) + tuple(output[1:])
        return _checked(fn, output)

    handle = module.register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


def _checked(fn: Splice, x: torch.Tensor) -> torch.Tensor:
    out = fn(x)
    if out.shape != x.shape:
        raise ValueError(f"a splice returned shape {tuple(out.shape)} for the hook's output of shape {tuple(x.shape)}")
    return out.to(x.dtype)


def _blocks_holding(model: nn.Module, hook_module: nn.Module) -> tuple[nn.ModuleList, int]:
    """Returns (the list of transformer blocks, index of the block that is or contains `hook_module`)."""
    base = getattr(model, "base_model", model)
    for mod in base.modules():
        if isinstance(mod, nn.ModuleList):
            for i, block in enumerate(mod):
                if any(m is hook_module for m in block.modules()):
                    return mod, i
    raise ValueError(f"hook module {type(hook_module).__name__} is not inside a transformer block; splicing needs one")


def _final_norm(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", model)
    for name in FINAL_NORMS:
        if isinstance(getattr(base, name, None), nn.Module):
            return getattr(base, name)
    raise ValueError(f"{type(model).__name__}: no final norm among {FINAL_NORMS}; splicing does not know where the blocks end")


@dataclass
class Prefix:
    """What the blocks from the hook's on receive for one batch: the hidden state entering the hook's block
    and each later block's keyword arguments (attention mask, rotary embeddings...), from one clean forward."""

    hidden: torch.Tensor
    block_kwargs: list[dict[str, Any]]


class SplicedModel:
    """A causal language model with a hook at which functions can be spliced; runs the layers before the hook once per batch."""

    def __init__(self, model: nn.Module, hook: str):
        self.model, self.hook = model, hook
        self.module = resolve_hook(model, hook)
        self.blocks, self.first = _blocks_holding(model, self.module)
        self.norm = _final_norm(model)
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise ValueError(f"{type(model).__name__} has no output embeddings (not a causal language model)")
        self.device = next(model.parameters()).device

    def clean(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, Prefix]:
        """Returns (the unhooked model's logits [B, L, V], the prefix of this batch for `tail`), from one forward.

        Pre-hooks on the blocks from the hook's on record their inputs; the model's own forward is not changed.
        """
        captured: list[tuple[tuple, dict]] = []

        def record(mod, args, kwargs):
            captured.append((args, dict(kwargs)))

        handles = [b.register_forward_pre_hook(record, with_kwargs=True) for b in list(self.blocks)[self.first :]]
        try:
            with torch.inference_mode():
                logits = self.model(input_ids=input_ids.to(self.device), use_cache=False).logits
        finally:
            for h in handles:
                h.remove()
        if len(captured) != len(self.blocks) - self.first:
            raise RuntimeError(f"{len(captured)} of the {len(self.blocks) - self.first} blocks after the hook ran in the forward")
        first_args, _ = captured[0]
        hidden = first_args[0] if first_args else captured[0][1].pop("hidden_states")
        kwargs = [{k: v for k, v in kw.items() if k != "hidden_states"} for _, kw in captured]
        return logits, Prefix(hidden, kwargs)

    def tail(self, prefix: Prefix, fn: Splice | None) -> torch.Tensor:
        """Returns the logits [B, L, V] with `fn` spliced in at the hook (None: nothing spliced), running only
        the hook's block and the ones after it on the batch's `prefix`."""
        with torch.inference_mode(), (spliced(self.module, fn) if fn is not None else _nothing()):
            h = prefix.hidden
            for block, kwargs in zip(list(self.blocks)[self.first :], prefix.block_kwargs):
                out = block(h, **kwargs)
                h = out[0] if isinstance(out, tuple) else out
            return self.head(self.norm(h))


@contextmanager
def _nothing() -> Iterator[None]:
    yield
