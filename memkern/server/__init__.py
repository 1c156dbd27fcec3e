"""memkern's REST API (``pip install 'memkern[server]'``): ``create_app`` and ``memkern serve``.

Importing this package needs FastAPI; the HTTP client (``memkern.client``) does not.
"""

from memkern.server.app import create_app, serve
from memkern.server.auth import current_user

__all__ = ["create_app", "current_user", "serve"]
