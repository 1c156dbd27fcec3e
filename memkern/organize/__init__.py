"""Organising a cube's memories without an LLM: what each subject's slots hold now (``profile``), a
session -> day -> week -> month tree (``timeline``), the named entities of a text (``entities``), and
the deep path of search for questions needing several memories or reasoning over time (``deep``)."""
