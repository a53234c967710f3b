"""The client middleware on an aiohttp without client middlewares (before 3.12): refused at
construction, naming the version needed (issue 21). Runs on every aiohttp: on CI's oldest (3.10)
for real, on newer ones with the check made to say no."""

from __future__ import annotations

import pytest

from coalesce_client import client_middleware
from coalesce_client.client_mw import compat


async def test_an_aiohttp_without_client_middlewares_is_refused_naming_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if compat.HAS_MIDDLEWARES:
        monkeypatch.setattr(compat, "HAS_MIDDLEWARES", False)
    with pytest.raises(RuntimeError, match=r"needs aiohttp >= 3\.12 .*Upgrade aiohttp"):
        client_middleware()
