"""Both documented error bodies are read; anything else falls back to the status and the body's start."""

from __future__ import annotations

import pytest

from handler.dataflow.client import error_from_body


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            '{"error": {"errorCode": "200", "message": "Authentication Failed", "details": "bad signature"}}',
            ("200", "HTTP 401 Authentication Failed (gateway code 200; bad signature)"),
        ),
        (
            429,
            '{"error": {"errorCode": 420, "message": "Rate Limited"}}',
            ("420", "HTTP 429 Rate Limited (gateway code 420)"),
        ),
        (
            400,
            '{"errorType": "bad-state", "detail": "concurrency limit reached"}',
            ("bad-state", "concurrency limit reached"),
        ),
        (400, '{"errorType": "bad-parameter", "message": "numWorker"}', ("bad-parameter", "numWorker")),
        (502, "<html>\n  <body>Bad   Gateway</body>\n</html>", ("502", "<html> <body>Bad Gateway</body> </html>")),
        (500, "", ("500", "Internal Server Error")),
        (503, "[1, 2]", ("503", "[1, 2]")),
    ],
)
def test_error_bodies(status: int, body: str, expected: tuple[str, str]) -> None:
    assert error_from_body(status, "Internal Server Error", body) == expected


def test_long_bodies_are_cut_to_300_characters() -> None:
    code, message = error_from_body(500, "", "x" * 1000)
    assert code == "500"
    assert message == "x" * 300
