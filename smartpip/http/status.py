"""Feature availability for ``/v1/status``: what the extension may use right now.

Each feature is ``up``, ``degraded`` (works with reduced guarantees, e.g. per-process rate
limits while Redis is away), ``down`` (a dependency it cannot work without is unreachable) or
``disabled`` (not configured on this deployment, or not shipped in this version). The extension
reads this document to switch features off cleanly instead of discovering failures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from tasks.health import HealthState

__all__ = ["Feature", "feature_states"]


@attrs.frozen
class Feature:
    """One user-facing feature and what it depends on.

    Attributes:
        name: the key in ``features``.
        shipped: whether this version serves the feature's endpoints at all.
        configured: whether the deployment's configuration enables it.
        needs: dependencies ("postgres", "redis") without which it is ``down``.
        degrades_without: dependencies without which it still works, ``degraded``.
    """

    name: str
    shipped: bool
    configured: bool = True
    needs: tuple[str, ...] = ()
    degrades_without: tuple[str, ...] = ()


_SEVERITY = {"up": 0, "degraded": 1, "down": 2}


def feature_states(
    health: HealthState,
    features: Sequence[Feature],
    *,
    live: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The availability of every feature given its configuration and the last health probe.

    Args:
        health: The last dependency probe.
        features: The features to report (``smartpip.runtime.features``).
        live: A feature's own view of itself (``up``, ``degraded``, ``down``), e.g. suggest's
            breaker; the worse of it and the dependency-based state is reported.
    """
    up = {"postgres": health.ready, "redis": health.redis}
    states: dict[str, str] = {}
    for feature in features:
        if not feature.shipped or not feature.configured:
            states[feature.name] = "disabled"
        elif not all(up[dep] for dep in feature.needs):
            states[feature.name] = "down"
        elif not all(up[dep] for dep in feature.degrades_without):
            states[feature.name] = "degraded"
        else:
            states[feature.name] = "up"
        own = (live or {}).get(feature.name)
        if own is not None and states[feature.name] != "disabled":
            states[feature.name] = max(states[feature.name], own, key=_SEVERITY.__getitem__)
    return states
