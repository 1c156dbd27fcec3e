"""Organising a cube's memories without an LLM: what each subject's slots hold now (``profile``)."""
