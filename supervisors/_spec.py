"""What a supervisor runs: one ``ChildSpec`` per child."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

import attrs
import trio

from ._policy import Backoff, RestartBudget, RestartPolicy


class ChildRun(Protocol):
    """A child's body: ``async def run(*, task_status) -> ...``.

    The supervisor calls it as ``await nursery.start(run)``, which passes ``task_status``
    by keyword. The child calls ``task_status.started()`` once it is ready to serve;
    that moment counts as a success and unblocks the supervisor's own readiness.
    """

    def __call__(self, *, task_status: trio.TaskStatus[None]) -> Awaitable[object]:
        """Run the child; see the class docstring."""
        ...


@attrs.frozen
class ChildSpec:
    """How to run and restart one child.

    Attributes:
        name: unique name of the child (in the whole ``StatusRegistry``).
        run: the child's body, called as ``await nursery.start(run)``.
        policy: which endings lead to a restart.
        backoff: delay between restarts.
        budget: how many restarts are allowed before escalating.
    """

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    run: ChildRun
    policy: RestartPolicy = RestartPolicy.PERMANENT
    backoff: Backoff = attrs.field(factory=Backoff)
    budget: RestartBudget = attrs.field(factory=RestartBudget)
