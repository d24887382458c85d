"""Settings of the YouTube Data API client, built once at the edge from the environment."""

from __future__ import annotations

import attrs

__all__ = ["YouTubeSettings"]


def _strip_slash(url: str) -> str:
    return url.rstrip("/")


@attrs.frozen
class YouTubeSettings:
    """Where and how the client calls the YouTube Data API v3.

    Attributes:
        api_url: Base URL without a trailing slash, e.g. ``https://www.googleapis.com/youtube/v3``
            (``SMARTPIP_YOUTUBE_API_URL``).
        api_key: The server API key (``SMARTPIP_YOUTUBE_API_KEY``); hidden from ``repr``.
        max_results: ``maxResults`` of ``search.list`` (1-50).
        timeout: Seconds for one HTTP attempt: connect and read timeouts, and an overall
            deadline on the whole exchange (a server dripping bytes stays under read timeouts).
        max_body_bytes: Largest answer accepted; larger is an :class:`UpstreamFailure`.
        retries: Extra attempts after a retryable failure (5xx, timeout, connection error).
        retry_base: First backoff delay in seconds; doubled per retry, then jittered.
    """

    api_url: str = attrs.field(converter=_strip_slash)
    api_key: str = attrs.field(repr=False)
    # Why 10: enough candidates for ranking; maxResults does not change the 100-unit cost,
    # but the answer size and the videos.list id list grow with it.
    max_results: int = attrs.field(default=10, validator=attrs.validators.in_(range(1, 51)))
    # Why 3 s: Google answers a search in well under a second; with 2 retries and backoff the
    # whole call stays under about 10 s, inside a request budget.
    timeout: float = attrs.field(default=3.0, validator=attrs.validators.gt(0))
    # Why 1 MB: a trimmed 50-result search answer is a few tens of KiB.
    max_body_bytes: int = attrs.field(default=1_000_000, validator=attrs.validators.gt(0))
    retries: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    # Why 0.2 s: delays of 0.1-0.2 s then 0.2-0.4 s ride out a blip without holding a
    # request for long.
    retry_base: float = attrs.field(default=0.2, validator=attrs.validators.ge(0))
