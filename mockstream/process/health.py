"""`mockstream health`: is a server answering `GET /healthz`? For a container HEALTHCHECK and CI scripts.

Standard library only (no aiohttp), so a check every few seconds costs a bare Python start. No proxy is
consulted: the check is always local, whatever HTTP_PROXY says.
"""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit


def default_health_url(environ: dict[str, str]) -> str:
    """The `/healthz` of the server this environment configures (MOCKSTREAM_HOST/PORT), reached locally."""
    host = environ.get("MOCKSTREAM_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    port = environ.get("MOCKSTREAM_PORT") or "8000"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/healthz"


def health_url(url: str) -> str:
    """Accept a base URL (`http://host:8000`) or the full health URL; only http:// is served."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"expected an http:// URL such as http://127.0.0.1:8000, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}: {exc}") from None
    path = parts.path if parts.path not in ("", "/") else "/healthz"
    return parts._replace(path=path).geturl()


def probe(url: str, timeout: float) -> str | None:
    """None when `url` answers 200; else why not, in words."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/", headers={"User-Agent": "mockstream-health"})
        response = connection.getresponse()
        response.read()
    except ConnectionRefusedError:
        return "nothing is listening (connection refused)"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"
    except http.client.HTTPException as exc:
        return f"not an HTTP answer: {exc!r}"
    finally:
        connection.close()
    return None if response.status == 200 else f"answered {response.status} {response.reason}"


def check_health(url: str, wait: float, timeout: float = 2.0) -> tuple[bool, str]:
    """Probe `url` until it answers 200 or `wait` seconds pass; (healthy, a line saying so)."""
    start = time.monotonic()
    deadline = start + wait
    while True:
        attempt = time.monotonic()
        problem = probe(url, min(timeout, max(deadline - attempt, 0.2)))
        now = time.monotonic()
        if problem is None:
            return True, f"healthy: {url} answered 200 after {now - start:.2f} s"
        if now >= deadline:
            waited = f" after waiting {wait:g} s" if wait else ""
            return False, f"{url}: {problem}{waited}"
        time.sleep(min(0.1, max(deadline - now, 0.0)))
