"""Public v1 endpoints that need no sign-in: feature status and the API contract."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import metadata
from importlib import resources as package_files

from quart import Blueprint, Response

__all__ = ["api_v1_blueprint", "load_openapi"]


def load_openapi() -> bytes:
    """The OpenAPI document shipped in the package (spec-first, checked by tests)."""
    return package_files.files("smartpip.http").joinpath("openapi.json").read_bytes()


def api_v1_blueprint(features: Callable[[], dict[str, str]]) -> Blueprint:
    """Routes under ``/v1`` that are open to anyone.

    Args:
        features: Each feature's state now (:func:`smartpip.http.status.feature_states`).
    """
    bp = Blueprint("api_v1", __name__, url_prefix="/v1")
    version = metadata.version("smartpip")
    openapi = load_openapi()
    json.loads(openapi)  # a broken document must stop startup, not surface per request

    @bp.get("/status")
    async def status() -> dict[str, object]:
        return {"version": version, "features": features()}

    @bp.get("/openapi.json")
    async def openapi_document() -> Response:
        return Response(
            openapi,
            content_type="application/json",
            headers={"Cache-Control": "public, max-age=300"},
        )

    return bp
