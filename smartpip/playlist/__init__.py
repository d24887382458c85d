"""Playlist: "add this video to my YouTube playlist", only with the user's explicit consent.

Modules:

- :mod:`.grants`: the contract between the two halves: :class:`Grants` turns a user's stored
  (encrypted) Google refresh token into a short-lived access token; its errors say why it could
  not.
- :mod:`.write`: :class:`~.write.PlaylistWriter`, ``POST /v1/youtube/playlist``'s service
  (idempotency, the Smart PiP playlist, YouTube's errors); its routes in :mod:`.write_routes`,
  its request and answer in :mod:`.model`.
- :mod:`.errors`: the write's domain errors.
- :mod:`.budget`: the writes' share of the daily YouTube units and the per-user cap.
- :mod:`.metrics`: its Prometheus metrics.
"""
