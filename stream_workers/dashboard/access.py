"""Who may change state through the dashboard: the token rules.

- No token configured: the dashboard is read-only; every state-changing request is refused
  (403) and the page says why.
- A token configured: a state-changing request needs ``Authorization: Bearer <token>``
  (compared in constant time); a missing or wrong one is refused (401).
- Binding to an address other than loopback without a token is refused at start: a dashboard
  reachable from other machines must not let anyone who reaches it change the policy.

The token is never rendered, logged or recorded: an override made from the dashboard is
recorded as made by ``dashboard:<fingerprint>``, the first 8 hex digits of the token's SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, field
from typing import Final

from pydantic import SecretStr

from stream_workers.errors import WorkerError

__all__ = [
    "DEFAULT_BIND",
    "DEFAULT_PORT",
    "TOKEN_ENV",
    "Access",
    "Refusal",
    "check_bind",
    "is_loopback",
]

#: Where the dashboard listens unless told otherwise: this machine only.
DEFAULT_BIND: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8765
#: The environment variable ``outroute dashboard`` and ``outroute demo`` read the token from.
TOKEN_ENV: Final = "OUTROUTE_DASHBOARD_TOKEN"

_MIN_TOKEN: Final = 16


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: SecretStr | None) -> None:
    """Refuse, naming the rule, to serve a non-loopback address without a token."""
    if token is None and not is_loopback(host):
        raise WorkerError(
            f"refusing to bind the dashboard to {host}, which is not a loopback address, "
            f"without a token: set {TOKEN_ENV} (state changes will need it) or bind 127.0.0.1"
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a state-changing request is refused: the HTTP status and the message."""

    status: int
    message: str


@dataclass(frozen=True, slots=True)
class Access:
    """The token rules of one dashboard. ``token`` None: read-only."""

    token: SecretStr | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token.get_secret_value()) < _MIN_TOKEN:
            raise WorkerError(
                f"{TOKEN_ENV} must be at least {_MIN_TOKEN} characters long "
                "(a random string, e.g. from `openssl rand -hex 16`)"
            )

    @property
    def writable(self) -> bool:
        return self.token is not None

    @property
    def actor(self) -> str:
        """Who a change made through this dashboard is recorded as (never the token)."""
        if self.token is None:
            return "dashboard"
        digest = hashlib.sha256(self.token.get_secret_value().encode()).hexdigest()
        return f"dashboard:{digest[:8]}"

    def refusal(self, authorization: str | None) -> Refusal | None:
        """None when a request with this ``Authorization`` header may change state."""
        if self.token is None:
            return Refusal(
                403,
                f"this dashboard is read-only: start it with {TOKEN_ENV} set to allow changes",
            )
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return Refusal(401, "this change needs the dashboard's token (Authorization: Bearer)")
        expected = self.token.get_secret_value().encode()
        if not hmac.compare_digest(given.strip().encode(), expected):
            return Refusal(401, "the token is not this dashboard's token")
        return None
