"""Bearer-token access control for management endpoints.

When the coordinator has a token (``STRESSGRID_TOKEN``), a protected
blueprint answers 401 to any request without ``Authorization: Bearer
<token>``. The comparison takes the same time whatever the guess.
"""
import hmac

from flask import current_app, jsonify, request


def token_matches(header, token):
    """True when ``header`` (an Authorization value) carries ``token``."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        # Still compare, so a missing header takes as long as a wrong one.
        hmac.compare_digest(b"", token.encode())
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def check_token():
    """``None`` when the request may go on, else the 401 answer."""
    token = current_app.config.get("STRESSGRID_TOKEN") or ""
    if not token or token_matches(request.headers.get("Authorization"), token):
        return None
    response = jsonify(error={"message": "missing or wrong bearer token", "code": "unauthorized"})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="stressgrid"'
    return response


def protect(blueprint):
    """Require the bearer token (when one is configured) on every route of ``blueprint``."""
    blueprint.before_request(check_token)
    return blueprint
