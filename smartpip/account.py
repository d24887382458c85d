"""The signed-in user's account: ``GET /v1/me``."""

from __future__ import annotations

from quart import Blueprint

from smartpip.problems import ApiError
from smartpip.resources import Resources
from smartpip.tokens import AccessClaims
from store.users import select_user

__all__ = ["account_blueprint"]


def account_blueprint(resources: Resources) -> Blueprint:
    """``/v1/me``: who the bearer token belongs to."""
    bp = Blueprint("account", __name__, url_prefix="/v1")
    guards = resources.guards

    @bp.get("/me")
    @guards.user(limit=resources.config.rate_limit_user)
    async def me(user: AccessClaims) -> dict[str, object]:
        row = await resources.db.run(select_user, user.user_id)
        if row is None:
            raise ApiError(404, "this account no longer exists")
        return {"id": str(row.id), "createdAt": row.created_at.isoformat()}

    return bp
