"""Object storage over the S3 API: a SigV4 signer written here and a client over requests (no SDK)."""

from __future__ import annotations
