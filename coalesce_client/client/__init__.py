"""The client face: ``CoalescingSession`` and the ``CachedResponse`` each caller gets.

Rules of this package (docs/architecture.md, layers): the only code that touches aiohttp's
client; it imports the core, the HTTP rules (``spec``), storage and options, never the server
face. What it needs of aiohttp beyond its public API is in ``compat.py``. Its modules are
private: users import from ``coalesce_client``.

* ``session.py`` the public object; ``calls.py`` how one call is answered; ``call.py`` what a
  call is (its key, what it may share); ``send.py`` its real request; ``context.py`` what a request
  method returns; ``response.py`` and ``body.py`` what a caller gets.
"""
