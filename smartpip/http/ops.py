"""Operations endpoints: liveness, readiness, metrics and the supervision tree."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST
from quart import Blueprint, Response, request

from smartpip.http.problems import ApiError
from smartpip.metrics import Metrics
from supervisors import StatusRegistry
from tasks.health import HealthState

__all__ = ["ops_blueprint"]


def ops_blueprint(
    health: HealthState,
    draining: Callable[[], bool],
    metrics: Metrics,
    supervision: StatusRegistry,
    *,
    ops_token: str | None,
    backups: Mapping[str, object] | None = None,
) -> Blueprint:
    """Routes for load balancers, Prometheus and operators.

    Args:
        health: The health monitor's last findings (read on every ``/readyz``).
        draining: Whether the process is shutting down (``/readyz`` answers 503 then).
        metrics: The registry ``/metrics`` renders.
        supervision: The supervision tree ``/ops/supervisors`` shows.
        ops_token: The bearer token of ``/ops/*``; None: those routes answer 404.
        backups: Whether backups are enabled and where they go (``/ops/supervisors``).
    """
    bp = Blueprint("ops", __name__)

    @bp.get("/healthz")
    async def healthz() -> tuple[dict[str, str], int]:
        # GET and HEAD are answered by smartpip.http.middleware before Quart (the liveness fast
        # path); this route documents the path and gives other methods their 405.
        return {"status": "ok"}, 200  # pragma: no cover

    @bp.get("/readyz")
    async def readyz() -> tuple[dict[str, object], int, dict[str, str]]:
        checks = {
            "postgres": "ok" if health.postgres else "down",
            "migrations": "ok" if health.migrations else "pending",
            "redis": "ok" if health.redis else "degraded",
        }
        if draining():
            status, code = "draining", 503
        elif not health.ready:
            status, code = "unavailable", 503
        else:
            status, code = ("ready" if health.redis else "degraded"), 200
        headers = {"Retry-After": "5"} if code == 503 else {}
        return {"status": status, "checks": checks}, code, headers

    @bp.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)

    @bp.get("/ops/supervisors")
    async def supervisors() -> dict[str, object]:
        expected = ops_token
        if expected is None:
            raise ApiError(404, "the requested resource does not exist")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            raise ApiError(
                401,
                "a valid ops bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="ops"'},
            )
        body: dict[str, object] = {"children": supervision.snapshot()}
        if backups is not None:
            body["backups"] = dict(backups)
        return body

    return bp
