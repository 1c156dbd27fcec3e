"""Activation and parametric memory of a cube, as operations: build, status, drop; distil, ask,
status, forget. The work is in ``memkern.memory.activation`` and ``memkern.memory.parametric``."""

from __future__ import annotations

from memkern.memory import activation, parametric
from memkern.models import ActivationReport, AdapterReport, ParametricAnswer
from memkern.ops.context import OpContext


def activation_build(ctx: OpContext, max_tokens: int = activation.DEFAULT_BLOCK_TOKENS) -> ActivationReport:
    """Render the cube's profile and hottest memories, let the local model read them once, keep the KV state."""
    activation.build(ctx, max_tokens=max_tokens)
    return activation.status(ctx).report()


def activation_status(ctx: OpContext) -> ActivationReport:
    """Fresh, stale (and why) or missing; a stale activation is never used."""
    return activation.status(ctx).report()


def activation_drop(ctx: OpContext) -> bool:
    """Remove the cube's activation (KV state and prefix files); False if it had none."""
    return activation.drop(ctx)


def parametric_distil(ctx: OpContext, max_facts: int = 64, epochs: int = 8, rank: int = 8) -> AdapterReport:
    """Train a LoRA adapter on the cube's facts (CPU; minutes) and attach it to the cube."""
    parametric.distil(ctx, max_facts=max_facts, epochs=epochs, rank=rank)
    return parametric.adapter_status(ctx)


def parametric_ask(ctx: OpContext, query: str, use_adapter: bool = True) -> ParametricAnswer:
    """Answer ``query`` closed-book (no retrieval) with the local model and the cube's adapter."""
    return parametric.chat_with_adapter(ctx, query, use_adapter=use_adapter)


def parametric_status(ctx: OpContext) -> AdapterReport:
    """The cube's adapter (verified) and whether its memories changed since it was distilled."""
    return parametric.adapter_status(ctx)


def parametric_forget(ctx: OpContext) -> bool:
    """Remove the cube's adapter (files and reference); False if it had none."""
    return parametric.forget_adapter(ctx)
