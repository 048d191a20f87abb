"""The bearer token of the API's write endpoints (sales task outcomes, conversions).

Web forms, webhooks and unsubscribe links authenticate by other means (nothing, a provider
signature, a signed token); these endpoints change scores and enrollments for anyone's lead, so
they need ``Authorization: Bearer $SPIRALE_API_TOKEN`` and stay closed while no token is set.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from spirale.api.context import get_context


def require_api_token(request: Request) -> None:
    """FastAPI dependency: 403 while no token is configured, 401 for a missing or wrong one."""
    token = get_context(request).settings.api_token
    expected = token.get_secret_value() if token is not None else ""
    if not expected:
        raise HTTPException(status_code=403, detail="this endpoint is disabled: set SPIRALE_API_TOKEN")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise HTTPException(
            status_code=401, detail="missing or wrong API token", headers={"WWW-Authenticate": "Bearer"}
        )
