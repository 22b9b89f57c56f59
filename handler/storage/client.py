"""S3 API client over requests: list a prefix page by page, read an object's state, write an object."""

from __future__ import annotations

import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote_plus, urlsplit

import requests
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict

from handler.clocks import Clocks
from handler.dataflow.client import Answer, retry_after_seconds, unsent_failure
from handler.dataflow.retry import RetryPolicy
from handler.dataflow.transport import WATCHDOG, AttemptWatch, watched_session
from handler.errors import StorageError
from handler.records import Record
from handler.storage.sigv4 import S3Credentials, S3SignerV4, uri_encode

if TYPE_CHECKING:
    from handler.dataflow.retry import StorageOperation

log = logging.getLogger(__name__)

# Every storage request reads, or writes the same bytes again: each is safe to send twice.
STORAGE_POLICY: Final = RetryPolicy(
    idempotent_operations=frozenset({"list-objects", "head-object", "put-object"}), later_codes=frozenset()
)
METHODS: Final[dict[StorageOperation, str]] = {"list-objects": "GET", "head-object": "HEAD", "put-object": "PUT"}
MIN_ATTEMPT_S = 0.25  # as the Data Flow client: an attempt with less time left could not finish usefully
MAX_PAGE = 1000  # S3's own cap on max-keys
# A bucket name that can be a host name label of its own (dots would break the TLS wildcard match).
VIRTUAL_HOST_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# What to do about each refusal; a HEAD answer has no body, so its status stands for a code.
FIXES: Final = {
    "SignatureDoesNotMatch": "the secret key does not match the access key: check the pair the caller passes",
    "InvalidAccessKeyId": "the access key is unknown to this endpoint: NCP keys sign for NCP's endpoint only, "
    "AWS keys for AWS only",
    "AccessDenied": "the credentials may not do this: grant s3:ListBucket on the bucket (listing), "
    "s3:GetObject (HeadObject) or s3:PutObject (PutObject) on the prefix",
    "Forbidden": "access denied or a wrong key pair (a HEAD answer has no body to tell which): "
    "check the keys and s3:GetObject on the prefix",
    "NoSuchBucket": "check the bucket name, and that the endpoint and region are the bucket's",
    "NoSuchKey": "the object is gone (deleted or renamed since it was listed or notified)",
    "RequestTimeTooSkewed": "this machine's clock is more than 15 minutes off the storage's: fix its time",
    "ExpiredToken": "the session token has expired: pass the current AWS_SESSION_TOKEN with its key pair",
    "AuthorizationHeaderMalformed": "the region is not the bucket's: set the bucket's region",
    "PermanentRedirect": "the bucket is in another region: set the bucket's region (and endpoint)",
}
HEAD_CODES: Final = {301: "PermanentRedirect", 400: "BadRequest", 403: "Forbidden", 404: "NoSuchKey"}


class S3Endpoint(Record):
    """Where the S3 API answers, the signing region, and whether buckets go in the path or the host name."""

    __slots__ = ("url", "region", "path_style")

    def __init__(self, url: str, region: str, path_style: bool) -> None:
        self.url: Final = url.rstrip("/")
        self.region: Final = region
        self.path_style: Final = path_style

    def object_url(self, bucket: str, key: str = "") -> str:
        """The URL of `key` in `bucket` (of the bucket itself when `key` is empty), the key encoded once."""
        path = "/" + uri_encode(key, keep_slash=True)
        if self.path_style or not VIRTUAL_HOST_BUCKET.match(bucket):
            return f"{self.url}/{uri_encode(bucket, keep_slash=False)}{path if key else ''}"
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{bucket}.{parts.netloc}{path}"


# NCP Object Storage: S3-compatible, path-style addressing, one region in Korea.
NCP_OBJECT_STORAGE: Final = S3Endpoint("https://kr.object.ncloudstorage.com", "kr-standard", path_style=True)


def aws_s3(region: str) -> S3Endpoint:
    """AWS S3's regional endpoint, buckets as host names (path style for names with dots or capitals)."""
    return S3Endpoint(f"https://s3.{region}.amazonaws.com", region, path_style=False)


class StoredObject(Record):
    """An object's state: what a listing or a HeadObject says of it (a listing gives no version id)."""

    __slots__ = ("bucket", "key", "etag", "last_modified", "size", "version_id")

    def __init__(
        self, bucket: str, key: str, *, etag: str, last_modified: datetime, size: int, version_id: str | None = None
    ) -> None:
        self.bucket: Final = bucket
        self.key: Final = key
        self.etag: Final = etag  # without the quotes S3 puts around it, as notifications give it
        self.last_modified: Final = last_modified
        self.size: Final = size
        self.version_id: Final = version_id


class ListPage(Record):
    """One ListObjectsV2 answer: its objects, and the token of the next page (None on the last)."""

    __slots__ = ("objects", "next_token")

    def __init__(self, objects: tuple[StoredObject, ...], next_token: str | None) -> None:
        self.objects: Final = objects
        self.next_token: Final = next_token


class Written(Record):
    """What a PutObject answered: the new object's ETag and, in a versioned bucket, its version id."""

    __slots__ = ("bucket", "key", "etag", "version_id")

    def __init__(self, bucket: str, key: str, etag: str, version_id: str | None) -> None:
        self.bucket: Final = bucket
        self.key: Final = key
        self.etag: Final = etag
        self.version_id: Final = version_id


class ObjectStorageClient:
    """Lists, reads and writes objects through the S3 API; one instance (and Session) per container and thread.

    Like the Data Flow client it sends and classifies: what is retried is the policy's word (503
    SlowDown with backoff, as data), no attempt runs past the caller's deadline, and every failure
    is a StorageError whose message says the fix and never holds the secret or the token.
    """

    def __init__(
        self,
        endpoint: S3Endpoint,
        credentials: S3Credentials,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        policy: RetryPolicy = STORAGE_POLICY,
        clocks: Clocks | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.clocks = clocks or Clocks()
        self.credentials = credentials
        self.signer = S3SignerV4(credentials, endpoint.region, self.clocks.wall)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.policy = policy
        self.session, self.proxies = watched_session(endpoint.url)

    def list_objects(
        self, bucket: str, prefix: str, *, page_size: int = MAX_PAGE, deadline: float | None = None
    ) -> Iterator[StoredObject]:
        """Every object under `prefix`, in key order, page after page (ContinuationToken)."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            page = self.list_page(bucket, prefix, token=token, page_size=page_size, deadline=deadline)
            yield from page.objects
            if page.next_token is None:
                return
            if page.next_token in seen:
                raise StorageError(
                    "bad-response",
                    f"list s3://{bucket}/{prefix}: a continuation token came back twice",
                    kind="retryable",
                )
            seen.add(page.next_token)
            token = page.next_token

    def list_page(
        self,
        bucket: str,
        prefix: str,
        *,
        token: str | None = None,
        page_size: int = MAX_PAGE,
        deadline: float | None = None,
    ) -> ListPage:
        """One ListObjectsV2 page; keys come URL-encoded (EncodingType=url) so any byte survives the XML."""
        query = {"list-type": "2", "encoding-type": "url", "prefix": prefix, "max-keys": str(min(page_size, MAX_PAGE))}
        if token is not None:
            query["continuation-token"] = token
        where = f"list s3://{bucket}/{prefix}"
        answer = self._send("list-objects", self.endpoint.object_url(bucket), query, None, deadline, where)
        return parse_listing(bucket, answer, where)

    def head_object(self, bucket: str, key: str, *, deadline: float | None = None) -> StoredObject:
        """The object's state now: ETag, LastModified, size and (in a versioned bucket) its version id."""
        where = f"HeadObject s3://{bucket}/{key}"
        answer = self._send("head-object", self.endpoint.object_url(bucket, key), {}, None, deadline, where)
        headers = answer.headers
        return StoredObject(
            bucket,
            key,
            etag=headers.get("ETag", "").strip('"'),
            last_modified=http_time(headers.get("Last-Modified"), where),
            size=int(headers.get("Content-Length") or 0),
            version_id=headers.get("x-amz-version-id"),
        )

    def put_object(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        deadline: float | None = None,
    ) -> Written:
        """Writes `body` as `key` (whole, signed with its SHA-256): sent twice, it is the same object."""
        where = f"PutObject s3://{bucket}/{key}"
        url = self.endpoint.object_url(bucket, key)
        answer = self._send("put-object", url, {}, (body, content_type), deadline, where)
        return Written(bucket, key, answer.headers.get("ETag", "").strip('"'), answer.headers.get("x-amz-version-id"))

    def prepare(
        self, method: str, url: str, query: dict[str, str], body: tuple[bytes, str] | None
    ) -> requests.PreparedRequest:
        """The exact signed request that is sent; its query is encoded as SigV4 encodes it, so both agree."""
        prepared = requests.PreparedRequest()
        prepared.method = method
        encoded = "&".join(
            f"{uri_encode(k, keep_slash=False)}={uri_encode(v, keep_slash=False)}" for k, v in query.items()
        )
        prepared.url = url + (f"?{encoded}" if encoded else "")
        prepared.headers = CaseInsensitiveDict({"User-Agent": "dataflow-launcher"})
        prepared.body = None
        if body is not None:
            prepared.body, prepared.headers["Content-Type"] = body
            prepared.headers["Content-Length"] = str(len(body[0]))
        prepared.hooks = {"response": []}
        prepared._cookies = RequestsCookieJar()  # type: ignore[attr-defined]
        return self.signer.sign(prepared)

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self.clocks.monotonic()

    def _send(
        self,
        operation: StorageOperation,
        url: str,
        query: dict[str, str],
        body: tuple[bytes, str] | None,
        deadline: float | None,
        where: str,
    ) -> Answer:
        attempt = 0
        last_error: StorageError | None = None
        while True:
            remaining = self._remaining(deadline)
            if remaining is not None and remaining < MIN_ATTEMPT_S:
                raise last_error or StorageError("timeout", f"{where}: no time left to send it", kind="retryable")
            attempt += 1
            try:
                answer = self._attempt(operation, self.prepare(METHODS[operation], url, query, body), remaining, where)
            except StorageError as failure:
                last_error = failure.but(attempts=attempt)
                self._pause(attempt, deadline, None, last_error)
                continue
            if 200 <= answer.status < 300:
                return answer
            last_error = self._status_error(operation, answer, attempt, where)
            self._pause(attempt, deadline, answer, last_error)

    def _attempt(
        self, operation: StorageOperation, prepared: requests.PreparedRequest, remaining: float | None, where: str
    ) -> Answer:
        """One request, its whole answer read inside the time left (a dripping server is cut off)."""
        read_timeout = self.read_timeout if remaining is None else min(self.read_timeout, remaining)
        connect_timeout = self.connect_timeout if remaining is None else min(self.connect_timeout, remaining)
        limit = connect_timeout + read_timeout if remaining is None else remaining
        started = time.monotonic()
        with WATCHDOG.attempt(limit) as watch:
            try:
                response = self.session.send(
                    prepared,
                    stream=True,
                    timeout=(connect_timeout, read_timeout),
                    allow_redirects=False,
                    proxies=self.proxies,
                )
                content = response.content
            except requests.RequestException as exc:
                raise self._transport_error(operation, exc, watch, time.monotonic() - started, where) from exc
            if watch.cut_off:
                raise StorageError("timeout", f"{where}: no complete answer within {limit:.2f}s", kind="retryable")
        return Answer(response.status_code, response.reason or "", response.headers, content)

    def _transport_error(
        self, operation: StorageOperation, exc: requests.RequestException, watch: AttemptWatch, spent: float, where: str
    ) -> StorageError:
        https = self.endpoint.url.startswith("https:")
        if watch.cut_off:
            code, message = "timeout", f"no complete answer within {spent:.2f}s (the time left to the deadline)"
        elif watch.request_sent:
            code, message = "no-answer", f"no complete answer ({type(exc).__name__}, {spent:.2f}s)"
        else:
            code, message = unsent_failure(exc, watch, https, spent)
        kind = self.policy.transport_kind(operation, "ambiguous" if watch.request_sent else "retryable")
        return StorageError(code, f"{where}: {message}", kind=kind)

    def _status_error(self, operation: StorageOperation, answer: Answer, attempt: int, where: str) -> StorageError:
        code, said = error_from_xml(answer)
        fix = FIXES.get(code)
        region = answer.headers.get("x-amz-bucket-region")
        if region:
            fix = f"{fix or 'the bucket is elsewhere'} (the bucket's region is {region})"
        message = f"{where}: HTTP {answer.status} {code}" + (f": {said}" if said else "") + (f"; {fix}" if fix else "")
        return StorageError(
            code,
            self._scrubbed(message),
            kind=self.policy.status_kind(operation, answer.status),
            status=answer.status,
            attempts=attempt,
        )

    def _scrubbed(self, message: str) -> str:
        """The message without the secret or the token, whatever an S3-compatible server chose to echo."""
        for secret in (self.credentials.secret_key, self.credentials.session_token):
            if secret:
                message = message.replace(secret, "***")
        return message

    def _pause(self, attempt: int, deadline: float | None, answer: Answer | None, error: StorageError) -> None:
        """Backs off with full jitter, or raises `error` when the policy, attempts or time say stop."""
        if not self.policy.retries_now(error.kind, error.status, error.code) or self.policy.exhausted(attempt):
            raise error
        asked = retry_after_seconds(answer.headers.get("Retry-After"), self.clocks.wall()) if answer else None
        delay = self.policy.backoff(attempt, self.clocks.jitter, asked)
        remaining = self._remaining(deadline)
        if remaining is not None and delay + MIN_ATTEMPT_S > remaining:
            raise error
        log.info(
            "storage request retried", extra={"attempt": attempt, "error": str(error), "delayMs": round(delay * 1000)}
        )
        self.clocks.sleep(delay)


def _xml(answer: Answer, where: str) -> ET.Element:
    """The answer's XML. ElementTree resolves no external entity, and expat bounds entity expansion,
    so a hostile body cannot reach files or memory; it could only fail to parse."""
    try:
        return ET.fromstring(answer.content or b"")  # noqa: S314 (see the docstring)
    except ET.ParseError as exc:
        raise StorageError(
            "bad-response", f"{where}: the answer is not XML ({exc})", kind="retryable", status=answer.status
        ) from exc


def _local(tag: str) -> str:
    """An element's name without its namespace (AWS sends S3's; some S3-compatible stores send none)."""
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str | None:
    return next((child.text or "" for child in element if _local(child.tag) == name), None)


def error_from_xml(answer: Answer) -> tuple[str, str]:
    """(S3's error code, its message) from an error body; a HEAD's or an unreadable body's status stands in."""
    fallback = HEAD_CODES.get(answer.status, str(answer.status)), ""
    try:
        root = ET.fromstring(answer.content or b"")  # noqa: S314 (see _xml)
    except ET.ParseError:
        return fallback
    code = _child_text(root, "Code")
    return (code, " ".join((_child_text(root, "Message") or "").split())[:300]) if code else fallback


def parse_listing(bucket: str, answer: Answer, where: str) -> ListPage:
    """A ListObjectsV2 answer with EncodingType=url: keys decoded (S3 writes a space as '+', a '+' as %2B)."""
    root = _xml(answer, where)
    objects = []
    for item in (child for child in root if _local(child.tag) == "Contents"):
        key = _child_text(item, "Key")
        modified = _child_text(item, "LastModified")
        if key is None or modified is None:
            raise StorageError("bad-response", f"{where}: an entry without Key or LastModified", kind="retryable")
        objects.append(
            StoredObject(
                bucket,
                unquote_plus(key),
                etag=(_child_text(item, "ETag") or "").strip('"'),
                last_modified=iso_time(modified, where),
                size=int(_child_text(item, "Size") or 0),
            )
        )
    truncated = (_child_text(root, "IsTruncated") or "").lower() == "true"
    token = _child_text(root, "NextContinuationToken") if truncated else None
    if truncated and not token:
        raise StorageError("bad-response", f"{where}: a truncated page without a continuation token", kind="retryable")
    return ListPage(tuple(objects), token)


def iso_time(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise StorageError(
            "bad-response", f"{where}: LastModified {value[:40]!r} is no time", kind="retryable"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def http_time(value: str | None, where: str) -> datetime:
    try:
        return parsedate_to_datetime(value or "").astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError) as exc:
        raise StorageError("bad-response", f"{where}: Last-Modified {value!r} is no time", kind="retryable") from exc
