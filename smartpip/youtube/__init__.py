"""The YouTube Data API v3 clients: search with statistics (suggest), playlist writes
(:class:`PlaylistClient`, with a user's OAuth token), typed errors.

Build one :class:`YouTubeClient` at the composition root with the shared ``httpx.AsyncClient``
and call :meth:`YouTubeClient.search`. Errors are :class:`YouTubeError` subclasses (hierarchy in
:mod:`smartpip.youtube._errors`); ``on_call`` feeds an upstream-calls counter by method and
outcome. Caching, single-flight and the quota breaker belong to the caller.
"""

from smartpip.youtube._client import SEARCH_FIELDS, VIDEOS_FIELDS, CallHook, YouTubeClient
from smartpip.youtube._errors import (
    BadRequest,
    Forbidden,
    KeyInvalid,
    QuotaExceeded,
    RateLimited,
    UpstreamFailure,
    YouTubeError,
)
from smartpip.youtube._models import Video
from smartpip.youtube._playlists import PlaylistClient
from smartpip.youtube._quota_day import (
    PACIFIC,
    next_pacific_midnight,
    pacific_day,
    seconds_until_pacific_midnight,
)
from smartpip.youtube._settings import YouTubeSettings

__all__ = [
    "PACIFIC",
    "SEARCH_FIELDS",
    "VIDEOS_FIELDS",
    "BadRequest",
    "CallHook",
    "Forbidden",
    "KeyInvalid",
    "PlaylistClient",
    "QuotaExceeded",
    "RateLimited",
    "UpstreamFailure",
    "Video",
    "YouTubeClient",
    "YouTubeError",
    "YouTubeSettings",
    "next_pacific_midnight",
    "pacific_day",
    "seconds_until_pacific_midnight",
]
