"""How memories age: the forgetting curve, and the buffered read statistics that drive it.

The transitions themselves (archive, restore, release, markers) are operations:
``memkern.ops.lifecycle``.
"""
