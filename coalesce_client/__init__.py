"""coalesce_client: stop cache stampedes in aiohttp programs.

Concurrent identical requests share one real call (single-flight); responses that pass a filter may
then be kept for a while. Everything public is importable from here; other modules may move.
"""

from .flight import Outcome, SingleFlight

__all__ = ["Outcome", "SingleFlight"]

__version__ = "0.1.0.dev0"
