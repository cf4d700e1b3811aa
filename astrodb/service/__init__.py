"""The astrodb HTTP service (``astrodb serve``): IVOA Simple Cone Search, a GSSS-compatible
catalog search for stcal/drizzlepac, and a JSON API with OpenAPI docs, read-only over a store.

>>> from astrodb.service import create_app, Settings
>>> app = create_app(Settings(store_url="sqlite:///stars.sqlite"))   # any ASGI server runs it

See docs/service.md.
"""
from .settings import Settings

__all__ = ["create_app", "serve", "Settings"]


def __getattr__(name):  # the app's modules load astropy & co.: only when asked for
    if name == "create_app":
        from .app import create_app
        return create_app
    if name == "serve":
        from .server import serve
        return serve
    raise AttributeError(name)
