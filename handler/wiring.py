"""Per-container wiring: one Data Flow client per thread, the shared signer, the pool, dry run."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from handler.clocks import Clocks
from handler.dataflow.client import CreateAnswer, DataflowClient, ExecutionRequest, describe_prepared
from handler.dataflow.retry import RetryPolicy
from handler.dataflow.signing import NcpSignatureV2
from handler.errors import StorageError
from handler.settings import Settings

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from requests import PreparedRequest

    from handler.dataflow.pacing import RateLimit
    from handler.events import Platform
    from handler.objects import ObjectStore
    from handler.storage.client import S3Endpoint
    from handler.storage.sigv4 import S3Credentials

    # What the exactly-once loop is given; a Protocol class costs about 0.1 ms at every cold start.
    class Submitter(Protocol):
        """What the exactly-once loop asks of Data Flow: create an execution, list a job's executions."""

        def create_execution(
            self, request: ExecutionRequest, *, deadline: float | None = None, headers: Mapping[str, str] | None = None
        ) -> CreateAnswer: ...

        def list_executions(
            self,
            job_id: str,
            *,
            page: int,
            limit: int,
            deadline: float | None = None,
            headers: Mapping[str, str] | None = None,
        ) -> dict[str, Any]: ...

        def get_execution(
            self,
            job_id: str,
            execution_id: str,
            *,
            deadline: float | None = None,
            headers: Mapping[str, str] | None = None,
        ) -> dict[str, Any]: ...

        def get_job(self, job_id: str, *, deadline: float | None = None) -> dict[str, Any]: ...

    # Builds the Submitter that real requests go through; tests pass one of their own (an in-memory fake).
    Connect = Callable[[Settings, DataflowClient], Submitter]

log = logging.getLogger(__name__)


class DryRunSubmitter:
    """Builds and signs each request exactly as it would be sent, logs it masked, sends nothing."""

    def __init__(self, client: DataflowClient, placeholder_credentials: bool) -> None:
        self.client = client
        self.placeholder_credentials = placeholder_credentials

    def create_execution(
        self, request: ExecutionRequest, *, deadline: float | None = None, headers: Mapping[str, str] | None = None
    ) -> CreateAnswer:
        self._log(self.client.prepare_create(request, headers))
        return CreateAnswer({}, 0, dry_run=True)

    def list_executions(
        self,
        job_id: str,
        *,
        page: int,
        limit: int,
        deadline: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A maxRunning count's listing, logged like a create and answered as a job with no runs."""
        self._log(self.client.prepare_list(job_id, page, limit, headers))
        return {"list": [], "count": 0, "page": page, "limit": limit}

    def get_execution(
        self,
        job_id: str,
        execution_id: str,
        *,
        deadline: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Never asked in a dry run (its listing is empty); answered as a run that echoes nothing."""
        return {"jobExecutionId": execution_id}

    def get_job(self, job_id: str, *, deadline: float | None = None) -> dict[str, Any]:
        """Never asked in a dry run (nothing is refused); answered as a job without a limit."""
        return {"jobId": job_id}

    def _log(self, prepared: PreparedRequest) -> None:
        log.info(
            "dry-run request",
            extra={"request": describe_prepared(prepared), "placeholderCredentials": self.placeholder_credentials},
        )


def _real(settings: Settings, client: DataflowClient) -> Submitter:
    return client


class Wiring:
    """What a warm container builds once and reuses: clients per thread, the signer, the pool.

    `connect` is the test seam: it receives the real client (so dry runs still sign) and returns
    what is actually sent through. A dry run wraps whatever it returns.
    """

    def __init__(
        self, clocks: Clocks | None = None, connect: Connect = _real, environ: Mapping[str, str] | None = None
    ) -> None:
        self.clocks = clocks or Clocks()
        self.connect = connect
        # Where the AWS role's keys and region are read: the process environment, as Lambda exports them.
        self.environ = os.environ if environ is None else environ
        self._threads = threading.local()
        self._lock = threading.Lock()
        self._auth: tuple[Settings, NcpSignatureV2] | None = None
        self._pace: tuple[float, RateLimit] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0

    def signer(self, settings: Settings) -> NcpSignatureV2:
        """The container's one signer for these settings: a clock offset it learns serves every thread."""
        with self._lock:
            if self._auth is None or self._auth[0] is not settings:
                self._auth = (settings, NcpSignatureV2(settings.credentials, self.clocks.wall))
            return self._auth[1]

    def pace(self, settings: Settings) -> RateLimit | None:
        """The container's one rate limit at DATAFLOW_RATE_LIMIT: every thread and invocation shares it."""
        if settings.rate_limit is None:
            return None
        from handler.dataflow.pacing import RateLimit  # imported here: only a container with a limit needs it

        with self._lock:
            if self._pace is None or self._pace[0] != settings.rate_limit:
                self._pace = (settings.rate_limit, RateLimit(settings.rate_limit, self.clocks))
            return self._pace[1]

    def submitter(self, settings: Settings) -> Submitter:
        """This thread's submitter: a requests.Session is not thread-safe, so each worker has its own."""
        held: tuple[Settings, Submitter] | None = getattr(self._threads, "submitter", None)
        if held is not None and held[0] is settings:
            return held[1]
        client = DataflowClient(
            settings.endpoint,
            settings.credentials,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            policy=RetryPolicy(attempts=settings.max_attempts),
            clocks=self.clocks,
            auth=self.signer(settings),
            pace=self.pace(settings),
        )
        sent = self.connect(settings, client)
        submitter = DryRunSubmitter(client, settings.credentials.placeholder) if settings.dry_run else sent
        self._threads.submitter = (settings, submitter)
        return submitter

    def objects(self, settings: Settings, platform: Platform) -> ObjectStore:
        """This thread's object storage: the platform's endpoint and keys unless settings name others.

        On AWS it signs with the execution role's keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
        AWS_SESSION_TOKEN, as Lambda exports them); on NAVER Cloud with the account's NCLOUD keys.
        """
        # Imported here: only sweeps and events without an object's state need object storage at all.
        from handler.objects import ObjectStore
        from handler.storage.client import ObjectStorageClient

        endpoint = storage_endpoint(settings, platform, self.environ)
        credentials = storage_credentials(settings, platform, self.environ)
        if not credentials.access_key or not credentials.secret_key:
            where = (
                "NCLOUD_ACCESS_KEY and NCLOUD_SECRET_KEY"
                if platform == "ncp"
                else "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the execution role's)"
            )
            raise StorageError("no-credentials", f"object storage needs {where}", kind="permanent")
        wanted = (id(settings), platform, credentials.access_key, credentials.session_token)
        held: tuple[object, ObjectStore] | None = getattr(self._threads, "objects", None)
        if held is not None and held[0] == wanted:
            return held[1]
        client = ObjectStorageClient(
            endpoint,
            credentials,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            clocks=self.clocks,
        )
        store = ObjectStore(client)
        self._threads.objects = (wanted, store)
        return store

    def pool(self, size: int) -> ThreadPoolExecutor:
        """Created once per warm container, used only when an invocation has several submissions."""
        # Imported here: a cold start with one submission never needs it.
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._pool is None or self._pool_size != size:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="submit")
                self._pool_size = size
            return self._pool


def storage_endpoint(settings: Settings, platform: Platform, environ: Mapping[str, str]) -> S3Endpoint:
    """DATAFLOW_STORAGE_ENDPOINT (path style) where set; else NCP Object Storage, or AWS S3 in the function's region."""
    from handler.storage.client import NCP_OBJECT_STORAGE, S3Endpoint, aws_s3

    if settings.storage_endpoint is not None:
        region = settings.storage_region or ("kr-standard" if platform == "ncp" else _aws_region(environ))
        return S3Endpoint(settings.storage_endpoint, region, path_style=True)
    if platform == "ncp":
        return NCP_OBJECT_STORAGE
    return aws_s3(settings.storage_region or _aws_region(environ))


def storage_credentials(settings: Settings, platform: Platform, environ: Mapping[str, str]) -> S3Credentials:
    from handler.storage.sigv4 import S3Credentials

    if platform == "ncp":
        return S3Credentials(settings.credentials.access_key, settings.credentials.secret_key)
    return S3Credentials(
        environ.get("AWS_ACCESS_KEY_ID", ""),
        environ.get("AWS_SECRET_ACCESS_KEY", ""),
        environ.get("AWS_SESSION_TOKEN") or None,
    )


def _aws_region(environ: Mapping[str, str]) -> str:
    return environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
