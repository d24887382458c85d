"""Playlist: "add this video to my YouTube playlist", only with the user's explicit consent.

Modules:

- :mod:`.grants`: the contract between the two halves: :class:`Grants` turns a user's stored
  (encrypted) Google refresh token into a short-lived access token; its errors say why it could
  not.
"""
