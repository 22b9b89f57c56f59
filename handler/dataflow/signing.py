"""NCP API Gateway signature v2: pure functions and a requests auth that signs what is sent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final, final

import requests

TIMESTAMP_HEADER = "x-ncp-apigw-timestamp"
ACCESS_KEY_HEADER = "x-ncp-iam-access-key"
SIGNATURE_HEADER = "x-ncp-apigw-signature-v2"
MASK = "***"
# The gateway accepts 5 minutes either way; an offset under a minute is noise, not skew.
SKEW_TOLERANCE_S = 60.0

log = logging.getLogger(__name__)


@final
class Credentials:
    """An NCP access key pair; the secret never shows in repr, and it is no tuple that could be dumped."""

    __slots__ = ("access_key", "placeholder", "secret_key")

    def __init__(self, access_key: str, secret_key: str, placeholder: bool = False) -> None:
        self.access_key: Final = access_key
        self.secret_key: Final = secret_key
        self.placeholder: Final = placeholder

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key!r}, placeholder={self.placeholder!r})"


def string_to_sign(method: str, path_and_query: str, timestamp_ms: str, access_key: str) -> str:
    """The exact message the gateway recomputes: method, path with query, timestamp, key."""
    return f"{method.upper()} {path_and_query}\n{timestamp_ms}\n{access_key}"


def signature(secret_key: str, message: str) -> str:
    digest = hmac.new(secret_key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode("ascii")


def signed_headers(credentials: Credentials, method: str, path_and_query: str, timestamp_ms: str) -> dict[str, str]:
    message = string_to_sign(method, path_and_query, timestamp_ms, credentials.access_key)
    return {
        TIMESTAMP_HEADER: timestamp_ms,
        ACCESS_KEY_HEADER: credentials.access_key,
        SIGNATURE_HEADER: signature(credentials.secret_key, message),
    }


def masked(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers safe to log: the signature is a credential for five minutes, so it is hidden."""
    return {name: (MASK if name.lower() == SIGNATURE_HEADER else value) for name, value in headers.items()}


class NcpSignatureV2:
    """Signs a prepared request at send time, so the signed path and query are the sent ones.

    It owns the clock offset (gateway minus local, seconds), as requests-aws4auth's signer owns
    its date handling: `clock` returns epoch seconds, and `offset` corrects a clock that the
    gateway has reported as off. One signer serves every thread of a container, so the offset
    learned by one request serves all, and a request signed with an older offset is re-signed
    rather than failed (see `handle_date_mismatch`).
    """

    def __init__(self, credentials: Credentials, clock: Callable[[], float] = time.time) -> None:
        self.credentials = credentials
        self.clock = clock
        self.offset = 0.0
        self._lock = threading.Lock()

    def timestamp_ms(self, offset: float | None = None) -> str:
        return str(int((self.clock() + (self.offset if offset is None else offset)) * 1000))

    def sign(self, request: requests.PreparedRequest, offset: float) -> requests.PreparedRequest:
        method = request.method or "GET"
        request.headers.update(signed_headers(self.credentials, method, request.path_url, self.timestamp_ms(offset)))
        return request

    def handle_date_mismatch(self, gateway_offset: float | None, signed_with: float) -> bool:
        """After an authentication failure: True when a request signed with `signed_with` is worth re-signing.

        `gateway_offset` is the gateway's clock minus ours, from its Date header. A sibling thread
        may have corrected the offset since this request was signed: then re-signing is right
        whatever this answer's Date says. Offsets under the tolerance count as no skew at all.
        """
        with self._lock:
            if abs(self.offset - signed_with) >= SKEW_TOLERANCE_S:
                return True
            if gateway_offset is None:
                return False
            corrected = gateway_offset if abs(gateway_offset) >= SKEW_TOLERANCE_S else 0.0
            if abs(corrected - self.offset) < SKEW_TOLERANCE_S:
                return False
            self.offset = corrected
        log.warning("clock skew corrected", extra={"skewSeconds": round(corrected, 1)})
        return True
