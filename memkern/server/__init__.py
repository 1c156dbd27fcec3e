"""memkern's REST API (``pip install 'memkern[server]'``): ``create_app`` and ``memkern serve``.

Importing this package needs FastAPI; the HTTP client (``memkern.client``) does not.
"""

from memkern.server.app import ACTOR_HEADER, create_app, current_actor, serve

__all__ = ["ACTOR_HEADER", "create_app", "current_actor", "serve"]
