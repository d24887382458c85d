"""nginx from Debian's packages in front of real ``smartpip serve`` processes, on loopback.

The project's own ``nginx/smartpip.conf`` and ``nginx/proxy.conf`` are used as they are; only
addresses, ports and file locations are substituted (each substitution must apply, so the
tests break when the configuration drifts from what they test). 127.0.0.1 is added to the
Cloudflare ranges: a client connecting from it plays the edge, one from 127.0.0.2 anyone else.
One setting is lowered: ``gzip_min_length`` (to 64 bytes), so that the api's short answers show
which locations compress and which (``/v1/auth/``) never do.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

__all__ = ["NGINX", "Nginx", "render", "run_nginx"]

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
UPSTREAM_LINE = re.compile(r"^(\s*)server api:8080 resolve( [^;]*);$", re.MULTILINE)


@attrs.frozen
class Nginx:
    http_port: int
    https_port: int
    prefix: Path

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def access_log(self) -> str:
        return (self.prefix / "logs" / "access.log").read_text()


def _substitute(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, f"nginx/smartpip.conf no longer has {old!r}"
    return text.replace(old, new)


def render(prefix: Path, upstreams: Sequence[int], http_port: int, https_port: int) -> Path:
    """Write the test's nginx.conf under ``prefix``; returns its path."""
    for sub in ("logs", "certs", "smartpip", "temp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=localhost",
            "-keyout", str(prefix / "certs" / "origin.key"),
            "-out", str(prefix / "certs" / "origin.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    ranges = (ROOT / "nginx" / "cloudflare-ips.conf").read_text()
    (prefix / "smartpip" / "cloudflare-ips.conf").write_text(
        ranges + "set_real_ip_from 127.0.0.1/32;  # the tests' Cloudflare edge\n"
    )
    shutil.copy(ROOT / "nginx" / "proxy.conf", prefix / "smartpip" / "proxy.conf")
    conf = (ROOT / "nginx" / "smartpip.conf").read_text()
    match = UPSTREAM_LINE.search(conf)
    assert match is not None, "nginx/smartpip.conf no longer has the api upstream"
    indent, params = match.group(1), match.group(2)
    servers = "\n".join(f"{indent}server 127.0.0.1:{port}{params};" for port in upstreams)
    conf = conf[: match.start()] + servers + conf[match.end() :]
    conf = _substitute(conf, "/etc/nginx/smartpip/", f"{prefix}/smartpip/")
    conf = _substitute(conf, "/etc/nginx/certs/", f"{prefix}/certs/")
    conf = _substitute(conf, "/var/log/nginx/", f"{prefix}/logs/")
    conf = _substitute(conf, "gzip_min_length 1024;", "gzip_min_length 64;")
    conf = _substitute(conf, "listen 80 ", f"listen 127.0.0.1:{http_port} ")
    conf = _substitute(conf, "listen 443 ", f"listen 127.0.0.1:{https_port} ")
    (prefix / "smartpip.conf").write_text(conf)
    temp = prefix / "temp"
    main = f"""
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    access_log off;
    include {prefix}/smartpip.conf;
}}
"""
    (prefix / "nginx.conf").write_text(main)
    return prefix / "nginx.conf"


def _wait_listening(process: subprocess.Popen[bytes], port: int, within: float = 20.0) -> None:
    """Poll until nginx accepts connections (bounded; fails if it exits)."""
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise AssertionError(f"nginx did not start: {stderr[-2000:]}") from None
            time.sleep(0.02)


@contextmanager
def run_nginx(
    prefix: Path, upstreams: Sequence[int], http_port: int, https_port: int
) -> Iterator[tuple[Nginx, subprocess.Popen[bytes]]]:
    """nginx as a foreground process on the rendered configuration (stopped afterwards)."""
    conf = render(prefix, upstreams, http_port, https_port)
    test = subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs/error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert test.returncode == 0, test.stderr
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs/error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(process, https_port)
        yield Nginx(http_port, https_port, prefix), process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
