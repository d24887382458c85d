"""The running process: what starts, what runs side by side, what stops.

Reading order for a newcomer:

1. :mod:`smartpip.runtime.main`: ``main()`` migrates, opens the resources, runs the supervision
   tree and the HTTP server in one root nursery, and handles SIGTERM (drain, then stop).
2. :mod:`smartpip.runtime.resources`: the composition root; every pool, client, service and
   registry is built here once and passed in (no module-level singletons).
3. :mod:`smartpip.runtime.tree`: every background child of the process in one list, with its
   restart policy and interval.
4. :mod:`smartpip.runtime.app`: every route, wired to the services it uses.
5. :mod:`smartpip.runtime.lifecycle` (serving, draining, stopping) and
   :mod:`smartpip.runtime.features` (what ``/v1/status`` reports).

Then a feature package (``smartpip.history`` is the smallest whole one) and the pieces of
:mod:`smartpip.http` it uses. The folder map: ``docs/architecture.md``.
"""
