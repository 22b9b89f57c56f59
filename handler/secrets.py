"""NCP keys from AWS Secrets Manager through the Parameters and Secrets Lambda Extension, without an SDK."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote

from handler.errors import ConfigError, Problem

SECRET_SETTING = "NCLOUD_CREDENTIALS_SECRET"  # noqa: S105 - the name of a setting
KEY_NAMES = ("NCLOUD_ACCESS_KEY", "NCLOUD_SECRET_KEY")
DEFAULT_PORT = "2773"
# The extension answers "not ready" (or refuses connections) for a moment after a cold start.
ATTEMPTS = 5
FIRST_PAUSE_S = 0.1
TIMEOUT_S = 2.0


class SecretReader:
    """Reads one secret per warm container and keeps the keys; never shows a value in an error."""

    def __init__(self, environ: Mapping[str, str], sleep: Callable[[float], None] = time.sleep) -> None:
        self.environ = environ
        self.sleep = sleep
        self._cache: dict[str, tuple[str, str]] = {}

    def keys(self, secret_id: str) -> tuple[str, str]:
        if secret_id not in self._cache:
            self._cache[secret_id] = self._fetch(secret_id)
        return self._cache[secret_id]

    def _fetch(self, secret_id: str) -> tuple[str, str]:
        port = self.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT") or DEFAULT_PORT
        if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise _problem(secret_id, f"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT is not a port number ({port!r})")
        headers = {"X-Aws-Parameters-Secrets-Token": self.environ.get("AWS_SESSION_TOKEN", "")}
        path = f"/secretsmanager/get?secretId={quote(secret_id, safe='')}"
        reason = "no answer"
        for attempt in range(ATTEMPTS):
            if attempt:
                self.sleep(FIRST_PAUSE_S * 2 ** (attempt - 1))
            connection = http.client.HTTPConnection("localhost", int(port), timeout=TIMEOUT_S)
            try:
                connection.request("GET", path, headers=headers)
                answer = connection.getresponse()
                body = answer.read()
            except OSError as exc:
                reason = f"the extension on localhost:{port} did not answer ({type(exc).__name__}); is its layer added?"
                continue
            finally:
                connection.close()
            if answer.status == 200:
                return _keys_from(body, secret_id)
            reason = f"the extension answered HTTP {answer.status}: {_snippet(body)}"
            if answer.status in (401, 403, 404):
                break  # no token, no permission, or no such secret: waiting will not help
        raise _problem(secret_id, reason)


def _keys_from(body: bytes, secret_id: str) -> tuple[str, str]:
    try:
        answer = json.loads(body)
        secret = json.loads(answer["SecretString"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _problem(secret_id, "its SecretString is not a JSON object (a binary or plain-text secret?)") from exc
    if not isinstance(secret, dict):
        raise _problem(secret_id, "its SecretString is not a JSON object")
    missing = [name for name in KEY_NAMES if not isinstance(secret.get(name), str) or not secret[name]]
    if missing:
        raise _problem(secret_id, f"its SecretString has no {' or '.join(missing)} (JSON object keys, string values)")
    return secret["NCLOUD_ACCESS_KEY"], secret["NCLOUD_SECRET_KEY"]


def _snippet(body: bytes) -> str:
    # The extension's error bodies are short messages; a 200 body (the secret) never reaches here.
    return " ".join(body[:200].decode("utf-8", "replace").split()) or "(empty)"


def _problem(secret_id: str, reason: str) -> ConfigError:
    return ConfigError([Problem(SECRET_SETTING, f"cannot read secret {secret_id!r}: {reason}")])
