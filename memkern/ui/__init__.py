"""The web UI served by ``memkern serve`` at ``/ui/``: see ``memkern.ui.routes``.

Mount it with ``app.include_router(ui_router(mos, auth=...))``. It needs Jinja2 (in the
``server`` extra); its templates, CSS and JavaScript are package data, nothing is fetched.
"""

from memkern.ui.routes import ui_router

__all__ = ["ui_router"]
