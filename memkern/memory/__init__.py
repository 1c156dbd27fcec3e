"""Memory beyond plaintext: activation memory (KV caches a local model restores instead of
re-reading memories) and parametric memory (LoRA adapters distilled from memories).
"""
