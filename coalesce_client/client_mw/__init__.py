"""The third face: ``client_middleware``, coalescing and caching inside aiohttp's own client.

Rules of this package (docs/architecture.md, layers): a face like ``client/`` and ``server/``,
as thin as they are: every HTTP rule comes from ``spec/``, every flight and store from ``core/``.
It imports the core, spec, storage, options, and of the client face only what reads an aiohttp
client response (``client/body.py``, ``client/send.py``'s ``snapshot_of``, ``client/call.py``'s
URL parts), never ``server/`` nor ``cli/``. What it needs of aiohttp beyond its public API is in
``compat.py``. Its modules are private: users import from ``coalesce_client``.

* ``middleware.py`` the public object (its key, hot path, conditional answers, invalidation);
  ``send.py`` the flight's real request (the rest of aiohttp's chain, run once); ``info.py``
  ``CacheInfo`` and ``cache_info``; ``compat.py`` the ``ClientResponse`` each caller gets.
"""
