"""Keeping derived memories consistent over time (ADD / UPDATE / INVALIDATE / NOOP)."""

from memkern.memory.updates import apply_facts, rule_decision, slot_of

__all__ = ["apply_facts", "rule_decision", "slot_of"]
