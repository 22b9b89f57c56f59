"""AWS Signature Version 4 for the S3 API: pure functions, then a signer of prepared requests."""

from __future__ import annotations

import hashlib
import hmac
import posixpath
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Final, final
from urllib.parse import quote, unquote, urlsplit

import requests

ALGORITHM = "AWS4-HMAC-SHA256"
CONTENT_SHA256_HEADER = "x-amz-content-sha256"
DATE_HEADER = "x-amz-date"
SESSION_TOKEN_HEADER = "x-amz-security-token"  # noqa: S105 (a header name, not a secret)
# RFC 3986 unreserved characters, the only ones SigV4 leaves unencoded (quote() keeps "_.-~" and alphanumerics).
UNRESERVED = "-_.~"
MASK = "***"


@final
class S3Credentials:
    """An access key pair with an optional session token; the secret and token never show in repr."""

    __slots__ = ("access_key", "secret_key", "session_token")

    def __init__(self, access_key: str, secret_key: str, session_token: str | None = None) -> None:
        self.access_key: Final = access_key
        self.secret_key: Final = secret_key
        # Lambda's execution role signs with temporary credentials: the token must travel, signed.
        self.session_token: Final = session_token or None

    def __repr__(self) -> str:
        token = MASK if self.session_token else None
        return f"S3Credentials(access_key={self.access_key!r}, session_token={token!r})"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """Every UTF-8 byte outside the unreserved set as %XY (upper case), as SigV4 prescribes."""
    return quote(text, safe=UNRESERVED + ("/" if keep_slash else ""))


def canonical_uri(path: str, *, normalize: bool) -> str:
    """The decoded `path`, encoded once; `normalize` removes dot segments and repeated slashes.

    S3 does neither: an object key is taken byte for byte ("a//b" and "a/../b" are keys of their
    own) and encoded once, where the other services normalise and encode twice. The published
    test suite's requests carry raw paths, so it checks the normalising form with one encoding.
    """
    if normalize:
        kept_trailing = path.endswith("/") and path != "/"
        path = posixpath.normpath(path)
        # POSIX lets a path start with exactly two slashes; no URL path means that.
        path = "/" + path.lstrip("/")
        if kept_trailing and not path.endswith("/"):
            path += "/"
    return uri_encode(path or "/", keep_slash=True)


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Decoded (name, value) pairs, each encoded, sorted by name then value (repeated names kept)."""
    encoded = sorted((uri_encode(name, keep_slash=False), uri_encode(value, keep_slash=False)) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_headers(headers: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """(the canonical header block, the signed header names): names lower-cased, values trimmed,
    inner runs of spaces collapsed, and repeated names joined with commas in their order."""
    joined: dict[str, list[str]] = {}
    for name, value in headers:
        joined.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    names = sorted(joined)
    block = "".join(f"{name}:{','.join(joined[name])}\n" for name in names)
    return block, ";".join(names)


def canonical_request(
    method: str,
    uri: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    payload_hash: str,
) -> tuple[str, str]:
    """(the canonical request, its signed header names) from an encoded URI and query."""
    block, signed = canonical_headers(headers)
    return "\n".join([method.upper(), uri, query, block, signed, payload_hash]), signed


def credential_scope(amz_date: str, region: str, service: str) -> str:
    return f"{amz_date[:8]}/{region}/{service}/aws4_request"


def string_to_sign(amz_date: str, scope: str, creq: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, sha256_hex(creq.encode("utf-8"))])


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def authorization(credentials: S3Credentials, scope: str, signed_headers: str, sts: str) -> str:
    """The Authorization header's value for a string to sign under `scope`."""
    date, region, service, _ = scope.split("/")
    key = signing_key(credentials.secret_key, date, region, service)
    signature = hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
    return (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={signed_headers}, "
        f"Signature={signature}"
    )


def amz_date(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y%m%dT%H%M%SZ")


def query_pairs(query: str) -> list[tuple[str, str]]:
    """The decoded pairs of an encoded query string ("a" alone is the name a with an empty value)."""
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


class S3SignerV4:
    """Signs a prepared S3 request at send time: the signed path, query and headers are the sent ones.

    The payload is always hashed (x-amz-content-sha256, which S3 requires on every request): the
    bodies sent here are small, and a signed hash lets S3 refuse a body changed on the way.
    """

    def __init__(self, credentials: S3Credentials, region: str, clock: Callable[[], float]) -> None:
        self.credentials = credentials
        self.region = region
        self.clock = clock

    def sign(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode("utf-8")
        stamp = amz_date(self.clock())
        url = urlsplit(request.url or "")
        request.headers[DATE_HEADER] = stamp
        request.headers[CONTENT_SHA256_HEADER] = sha256_hex(body)
        request.headers["Host"] = url.netloc
        if self.credentials.session_token:
            request.headers[SESSION_TOKEN_HEADER] = self.credentials.session_token
        # The URL already carries the encoded key, so it is decoded first and encoded exactly once.
        uri = canonical_uri(unquote(url.path), normalize=False)
        signed_names = (name for name in request.headers if _signed(name))
        headers = [(name, request.headers[name]) for name in signed_names]
        creq, signed = canonical_request(
            request.method or "GET", uri, canonical_query(query_pairs(url.query)), headers, sha256_hex(body)
        )
        scope = credential_scope(stamp, self.region, "s3")
        sts = string_to_sign(stamp, scope, creq)
        request.headers["Authorization"] = authorization(self.credentials, scope, signed, sts)
        return request


def _signed(name: str) -> bool:
    """Host, Content-Type, Content-MD5 and every x-amz- header are signed; the rest may be changed by a proxy."""
    lower = name.lower()
    return lower in {"host", "content-type", "content-md5"} or lower.startswith("x-amz-")
