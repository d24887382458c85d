"""The fake YouTube the benchmark runs: ``python -m bench.fake_youtube --bind HOST:PORT``.

`tests.fakes.youtube.FakeYouTube` (the tests' loopback YouTube Data API, real wire format) as a
child process of the harness, with three additions:

- ``--any-query``: every ``q`` finds a few synthetic videos instead of the corpus' handful, so
  any workload gets answers; ``videos.list`` knows them too. As on YouTube, not every result
  names the query in its title: about one in four names it in the description only (so the
  economy run's relevance of local answers, measured on titles, is not true by construction);
- ``--call-log PATH``: one JSON line per API request (``search`` or ``videos``), stamped when
  it arrived, ``{"t": <unix seconds>, "method": "search", "q": ..., "status": 200}``, flushed
  at once (the economy run counts upstream searches and duplicates from it);
- ``GET /healthz`` answers 200, so `bench.servers.ServerProcess.wait_ready` works.

``--latency`` delays every answer (both methods) like a real search's round trip. SIGTERM or
Ctrl-C stops it cleanly (exit 0). The harness starts it before the service, which gets
``SMARTPIP_YOUTUBE_API_URL=<base>/youtube/v3`` and the same key.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from bench.servers import ServerProcess, free_port
from tests.fakes.youtube import FakeYouTube
from tests.fakes.youtube_corpus import CorpusVideo

__all__ = ["API_PATH", "BenchYouTube", "api_url", "fake_youtube_process", "main"]

API_PATH = "/youtube/v3"
READY_PATH = "/healthz"
REPO_ROOT = Path(__file__).resolve().parent.parent
_METHODS = {API_PATH + "/search": "search", API_PATH + "/videos": "videos"}
_Response = tuple[int, dict[str, str], bytes]
# Why 3: enough items for the ranking and a realistic answer size (~1.5 KB), few enough that a
# search costs the fake next to nothing.
SYNTHETIC_RESULTS = 3


def api_url(server: ServerProcess) -> str:
    """``SMARTPIP_YOUTUBE_API_URL`` for a running fake."""
    return server.base_url + API_PATH


def fake_youtube_process(
    name: str,
    *,
    log_path: Path,
    host: str = "127.0.0.1",
    any_query: bool = True,
    latency_s: float = 0.0,
    call_log: Path | None = None,
) -> tuple[ServerProcess, str]:
    """The fake as a `ServerProcess` on a free port, and the API key it accepts.

    Not started: enter it, then ``wait_ready_or_report(READY_PATH, ...)``. Shared by the wrk
    run (``bench.run``) and the quota-economy run (``bench.economy``).
    """
    api_key = "bench-" + secrets.token_urlsafe(16)
    port = free_port(host)
    command = [
        sys.executable,
        "-m",
        "bench.fake_youtube",
        "--bind",
        f"{host}:{port}",
        "--key",
        api_key,
        "--latency",
        str(latency_s),
    ]
    if any_query:
        command.append("--any-query")
    if call_log is not None:
        command += ["--call-log", str(call_log)]
    server = ServerProcess(
        name,
        command,
        host=host,
        port=port,
        log_path=log_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=REPO_ROOT,
    )
    return server, api_key


class BenchYouTube(FakeYouTube):
    """`FakeYouTube` on a fixed address, answering any query, logging each API request.

    Args:
        api_key: The key the service must send.
        bind: ``host:port`` to listen on.
        any_query: Synthesize `SYNTHETIC_RESULTS` videos for any ``q`` (else the corpus).
        call_log: Where each API request is written as a JSON line.
    """

    def __init__(
        self,
        api_key: str,
        *,
        bind: str,
        any_query: bool = True,
        call_log: TextIO | None = None,
    ) -> None:
        super().__init__(api_key)
        self.bind = bind
        self.any_query = any_query
        self.call_log = call_log
        self._synthetic: dict[str, CorpusVideo] = {}

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on :attr:`bind` until cancelled; ``nursery.start`` returns the API base URL."""
        config = HypercornConfig()
        config.bind = [self.bind]
        config.accesslog = None
        config.errorlog = logging.getLogger("bench.fake_youtube")
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(partial(serve, self._app, config, mode="asgi"))
            self.base_url = binds[0] + API_PATH
            task_status.started(self.base_url)

    async def _handle(self, verb: str, path: str, params: dict[str, str]) -> _Response:
        if path == READY_PATH:
            return 200, {"content-type": "application/json"}, b'{"status":"ok"}'
        arrived = time.time()
        status, headers, payload = await super()._handle(verb, path, params)
        method = _METHODS.get(path)
        if method is not None and self.call_log is not None:
            line = {
                "t": round(arrived, 6),
                "method": method,
                "q": params.get("q"),
                "status": status,
            }
            self.call_log.write(json.dumps(line, ensure_ascii=False) + "\n")
            self.call_log.flush()
        return status, headers, payload

    def _search(self, params: dict[str, str]) -> dict[str, Any]:
        if not self.any_query:
            return super()._search(params)
        return self._over(self._videos_for(params.get("q", "")), super()._search, params)

    def _videos(self, params: dict[str, str]) -> dict[str, Any]:
        if not self.any_query:
            return super()._videos(params)
        known = (self._synthetic.get(i) for i in params.get("id", "").split(","))
        return self._over(tuple(v for v in known if v is not None), super()._videos, params)

    def _over(
        self,
        corpus: tuple[CorpusVideo, ...],
        answer: Callable[[dict[str, str]], dict[str, Any]],
        params: dict[str, str],
    ) -> dict[str, Any]:
        """The parent's answer over ``corpus`` (synchronous: no other task sees the swap)."""
        saved, self.corpus = self.corpus, corpus
        try:
            return answer(params)
        finally:
            self.corpus = saved

    def _videos_for(self, q: str) -> tuple[CorpusVideo, ...]:
        """Deterministic videos whose description contains ``q`` (so the parent's filter keeps
        them), and about three in four their title too."""
        videos = []
        for n in range(SYNTHETIC_RESULTS):
            digest = hashlib.blake2b(f"{n}:{q}".encode(), digest_size=8).digest()
            channel = digest[0] % 10
            title = f"{q} - bench result {n + 1}"
            if digest[5] % 4 == 0:
                title = f"Bench Channel {channel} clip {digest[6]}"
            video = CorpusVideo(
                video_id="b" + digest.hex()[:10],
                title=html.escape(title),
                description=html.escape(f"Synthetic video {n + 1} about {q}"),
                channel_title=f"Bench Channel {channel}",
                published_at=f"{2010 + digest[1] % 15}-0{1 + digest[2] % 9}-1{digest[3] % 9}"
                "T12:00:00Z",
                view_count=int.from_bytes(digest[4:], "big") % 5_000_000,
            )
            self._synthetic[video.video_id] = video
            videos.append(video)
        return tuple(videos)


async def _serve(fake: BenchYouTube, latency_s: float) -> None:
    fake.inject(latency=latency_s)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(fake.run)
            print(f"fake YouTube on {url}", flush=True)
            async for _signum in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m bench.fake_youtube", description=__doc__)
    parser.add_argument("--bind", default="127.0.0.1:0", help="host:port")
    parser.add_argument("--key", default="bench-key", help="the API key the service must send")
    parser.add_argument("--any-query", action="store_true", help="synthetic results for any q")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--call-log", type=Path, help="a JSON line per API request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    log: TextIO | None = None
    try:
        if args.call_log is not None:
            args.call_log.parent.mkdir(parents=True, exist_ok=True)
            log = args.call_log.open("w", encoding="utf-8")
        fake = BenchYouTube(args.key, bind=args.bind, any_query=args.any_query, call_log=log)
        trio.run(_serve, fake, args.latency)
    finally:
        if log is not None:
            log.close()


if __name__ == "__main__":
    main()
