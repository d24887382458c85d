"""Exceptions raised by supervisors.

Hierarchy::

    Exception
    └── EscalationError   a child exhausted its restart budget; its supervisor stopped

A supervisor raises nothing else of its own: every other exception out of
``run_supervisor`` is one it did not handle (``trio.Cancelled``, ``KeyboardInterrupt``,
an exception from an ``on_restart`` callback) and propagates unchanged.
"""

from __future__ import annotations


class EscalationError(Exception):
    """A child failed more often than its ``RestartBudget`` allows.

    Raised out of ``run_supervisor`` after every other child has been cancelled. The
    child's last exception is chained as ``__cause__`` (None when a ``PERMANENT`` child
    kept returning cleanly). A parent supervisor treats it as an ordinary failure of the
    nested supervisor, so escalation climbs the tree one budget at a time.

    Attributes:
        child: name of the child that escalated.
        supervisor: name of the supervisor it belonged to.
    """

    def __init__(self, child: str, supervisor: str, message: str) -> None:
        """Create the error.

        Args:
            child: name of the child that escalated.
            supervisor: name of the supervisor it belonged to.
            message: human-readable explanation.
        """
        super().__init__(message)
        self.child = child
        self.supervisor = supervisor
