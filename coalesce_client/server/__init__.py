"""The server face: ``coalesce_middleware`` for ``aiohttp.web`` applications.

Rules of this package (docs/architecture.md, layers): the only code that touches
``aiohttp.web``; it imports the core, the HTTP rules (``spec``), storage and options, never the
client face. What it needs of aiohttp beyond its public API is in ``compat.py``. Its modules are
private: users import from ``coalesce_client``.

* ``middleware.py`` the middleware (keys, the hot path, conditional answers, invalidation);
  ``send.py`` the handler runs behind a flight; ``replay.py`` the answers from snapshots.
"""
