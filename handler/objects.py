"""Every question the launcher asks of object storage: what a sweep lists, an object's own state."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from handler.errors import RequestError
from handler.events import Batch, Delivery, ObjectTrigger
from handler.routes import DEFAULT_SWEEP, Route
from handler.sweep import Listed, select, span_of, unlisted

if TYPE_CHECKING:
    from handler.events import SweepTrigger
    from handler.planning import Manifest
    from handler.storage.client import ObjectStorageClient

log = logging.getLogger(__name__)


class ObjectStore:
    """One container's view of object storage through the S3 API; no command lists or reads it another way."""

    def __init__(self, client: ObjectStorageClient) -> None:
        self.client: Final = client

    def swept(self, route: Route, trigger: SweepTrigger, window: timedelta, deadline: float | None) -> Listed:
        """The route's objects in the sweep's span that it matches and that no marker holds back."""
        sweep = route.sweep or DEFAULT_SWEEP
        bucket, prefix = route.match.bucket or "", route.match.prefix or ""
        span = span_of(trigger, sweep, window)
        try:
            stored = list(self.client.list_objects(bucket, prefix, deadline=deadline))
        except RequestError as exc:
            return unlisted(route, trigger, window, exc)
        objects, counts = select(route, sweep, stored, span)
        return Listed(route, bucket, prefix, span, objects=tuple(objects), counts=counts)

    def identified(self, trigger: ObjectTrigger, deadline: float | None) -> ObjectTrigger:
        """An upload's event with the object's own state where the event carries neither ETag nor time (NCP's
        flat payload): its ETag and LastModified identify it, so a replay is a duplicate and a new upload of
        the key a new run. Where the object cannot be read, the event stays as it came (and the log says why)."""
        try:
            head = self.client.head_object(trigger.bucket, trigger.key, deadline=deadline)
        except RequestError as exc:
            log.warning(
                "the object's own state could not be read: identified by its arrival",
                extra={"bucket": trigger.bucket, "key": trigger.key, "error": str(exc)},
            )
            return trigger
        return ObjectTrigger(
            trigger.bucket,
            trigger.key,
            trigger.event_name,
            head.last_modified,
            size=head.size,
            etag=head.etag,
            version_id=head.version_id or trigger.version_id,
            event_id=trigger.event_id,
        )

    def write(self, manifest: Manifest, deadline: float | None) -> None:
        """A coalesced group's manifest, one key a line: written again, it is the same object."""
        self.client.put_object(
            manifest.bucket, manifest.key, manifest.body(), content_type="text/plain; charset=utf-8", deadline=deadline
        )


def with_state(batch: Batch, store: ObjectStore, deadline: float | None) -> Batch:
    """The batch with each upload's event that needs the object's state given it."""
    deliveries = tuple(
        Delivery(
            tuple(
                store.identified(trigger, deadline)
                if isinstance(trigger, ObjectTrigger) and trigger.needs_state()
                else trigger
                for trigger in delivery.triggers
            ),
            delivery.message_id,
        )
        for delivery in batch.deliveries
    )
    return Batch(deliveries, batch.from_sqs)
