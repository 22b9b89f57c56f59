"""moto's S3 API on loopback, request authentication on: the real object storage of the tests and the bench."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime


class S3Server:
    """moto's S3 API on loopback with request authentication ON: a wrong signature is refused with 403."""

    def __init__(self) -> None:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.iam.models import iam_backends
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer
        from moto.s3.models import s3_backends

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
        self.s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        self.access_key = ""
        self.secret_key = ""

    @property
    def url(self) -> str:
        host, port = self.server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> S3Server:
        from moto import settings as moto_settings
        from moto.core.authorization import ActionAuthenticatorMixin

        self.server.start()
        # A user allowed every S3 action; its keys are the only ones the server then accepts.
        user = f"launcher-{id(self)}"
        self.iam.create_user("us-east-1", user)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        self.iam.put_user_policy(user, "s3", json.dumps(policy))
        key = self.iam.create_access_key(user)
        self.access_key, self.secret_key = key.access_key_id, key.secret_access_key
        # moto's documented switch: authenticate every request from now on (the default is never).
        self.previous_no_auth_count = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        return self

    def stop(self) -> None:
        from moto import settings as moto_settings

        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = self.previous_no_auth_count
        self.server.stop()

    def role_credentials(self) -> tuple[str, str, str]:
        """(key, secret, session token) of a role session allowed every S3 action, as Lambda's role gets them."""
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.sts.models import sts_backends

        name = f"launcher-role-{uuid.uuid4().hex[:8]}"
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role = self.iam.create_role(name, json.dumps(trust), "/", None, "", [], None)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        self.iam.put_role_policy(name, "s3", json.dumps(policy))
        session = sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assume_role("us-east-1", "launcher", role.arn, "", 900, "")
        return session.access_key_id, session.secret_access_key, session.session_token

    def put(self, bucket: str, key: str, body: bytes, *, modified: float | None = None) -> None:
        """An object as an upload leaves it; `modified` sets its LastModified (epoch seconds), as a multipart
        upload's start or a test's fake clock would have it."""
        stored = self.s3.put_object(bucket, key, body)
        if modified is not None:
            stored.last_modified = datetime.fromtimestamp(modified, UTC).replace(tzinfo=None)

    def environ(self) -> dict[str, str]:
        """The AWS environment a Lambda function signs with: this server's keys."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def bucket(self, name: str, keys: Mapping[str, bytes] | None = None) -> str:
        """A fresh bucket (named for the test, so no test sees another's) holding `keys`."""
        self.s3.create_bucket(name, "us-east-1")
        for key, body in (keys or {}).items():
            self.s3.put_object(name, key, body)
        return name
