"""Organising a cube's memories without an LLM: what each subject's slots hold now (``profile``),
links between memories (``links``), a session -> day -> week -> month tree (``timeline``), and the
deep path of search that uses them for questions needing several memories (``deep``)."""
