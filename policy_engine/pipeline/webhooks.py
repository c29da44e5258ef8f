"""Telling a client its analysis job finished: a POST of JSON to the URL it gave, signed
so that it can tell the call came from this engine and was not replayed.

Signature header ``Policy-Engine-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" under the server's webhook_signing_key>``; a receiver recomputes it (``verify``)
and refuses old timestamps. Delivery is at least once (a worker killed after sending and
before recording sends again): receivers deduplicate by job id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from policy_engine.errors import ConfigError

log = logging.getLogger(__name__)

HEADER = "Policy-Engine-Signature"
ATTEMPTS, TIMEOUT_S = 3, 10.0


def check_url(url: str, allowed_hosts: Sequence[str], secret: str) -> str:
    """``url`` if webhooks may be sent there: http(s), a host on the allow-list (so a
    client cannot make the workers call internal addresses), and a secret to sign with."""
    if not allowed_hosts or not secret:
        raise ConfigError(
            "webhook_url: this server sends no webhooks (set webhook_hosts and webhook_signing_key)"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"webhook_url {url!r}: give an http or https URL")
    if parts.hostname.lower() not in {h.lower() for h in allowed_hosts}:
        raise ConfigError(f"webhook_url: host {parts.hostname!r} is not in webhook_hosts")
    return url


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: float = 300.0) -> bool:
    """For receivers: the signature is right and not older than ``tolerance_s``."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(
        sign(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}"
    )


def deliver(url: str, secret: str, payload: dict[str, Any]) -> tuple[int, str | None]:
    """POST ``payload``, trying again on failure; returns (attempts, last error or None)."""
    body = json.dumps(payload, default=str, sort_keys=True).encode()
    error = None
    for attempt in range(1, ATTEMPTS + 1):
        headers = {
            "Content-Type": "application/json",
            HEADER: sign(secret, int(time.time()), body),
            "User-Agent": "policy-engine-webhook",
        }
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:  # noqa: S310 - http(s) checked
                if 200 <= answer.status < 300:
                    return attempt, None
                error = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc))
        log.warning("webhook to %s failed (attempt %d): %s", url, attempt, error)
        if attempt < ATTEMPTS:
            time.sleep(attempt)
    return ATTEMPTS, error
