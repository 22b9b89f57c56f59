"""Issue 24, item 5: a group's file list written as a manifest (moto's S3 API, authentication on), its run
carrying the keys' fingerprint, against the emulator in each reading."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from emulator.s3_server import S3Server
from emulator.server import Emulator
from handler.launcher import Launcher
from handler.runs.execution import fingerprint, fingerprint_length
from handler.settings import parse_settings
from handler.wiring import Wiring
from tests.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    FakeClock,
    JsonLines,
    connected,
    lose_the_answer_and_the_lookup,
    result_of,
    sqs_batch,
    upload,
)
from tests.integration.test_route_sharp_edges import coalescing, problems_of

JOB = "ManifestJob1"
# 1,000 keys of 200 bytes: 200,999 bytes joined by ',' (the 262,144-byte budget holds at most 255 keys of 1024).
KEYS = [f"landing/{index:05d}-".ljust(200, "x") for index in range(1000)]


def manifested(api: Emulator, s3: S3Server, bucket: str, **settings: str) -> dict[str, str]:
    """A coalescing route that writes each group's keys to `bucket`/lists/ and passes the path as $manifest."""
    route = {
        "name": "batch",
        "match": {"source": "object", "bucket": "raw-data", "prefix": "landing/"},
        "jobId": JOB,
        "coalesce": {"parameter": "$files", "maxObjects": 5000, "manifest": f"s3a://{bucket}/lists/"},
        "parameters": {"$manifest": "{manifest}", "$count": "{count}"},
    }
    return connected(api.url, DATAFLOW_ROUTES=json.dumps([route]), DATAFLOW_STORAGE_ENDPOINT=s3.url, **settings)


def launcher_for(clock: FakeClock, s3: S3Server, **environ: str) -> Launcher:
    """A fresh container (its own memory) signing object storage as Lambda's role does, with the server's keys."""
    return Launcher(Wiring(clock.clocks(), environ=s3.environ() | environ))


def uploads(keys: list[str], clock: FakeClock) -> dict[str, Any]:
    return sqs_batch([upload(key, at=clock.wall() - 60) for key in keys])


def written(s3: S3Server, bucket: str) -> dict[str, bytes]:
    """Every object under the bucket's lists/ prefix, each key with its bytes."""
    listed, _, _, _, _ = s3.s3.list_object_versions(bucket, prefix="lists/")
    return {version.name: bytes(version.value) for version in listed}


@pytest.mark.parametrize("echo", ["object", "list"])
def test_a_group_past_the_parameter_budget_is_one_run_whose_manifest_lists_every_key_and_a_redelivery_starts_none(
    echo: str, s3_server: S3Server
) -> None:
    clock = FakeClock()
    bucket = s3_server.bucket(f"manifest-{uuid.uuid4().hex[:12]}")
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, echo=echo) as api:
        config = manifested(api, s3_server, bucket)
        result = result_of(launcher_for(clock, s3_server), config, uploads(KEYS, clock))
        [submitted] = result["submitted"]
        assert (submitted["objects"], result["failed"]) == (1000, [])
        [(name, body)] = written(s3_server, bucket).items()
        assert body.decode("utf-8").splitlines() == sorted(KEYS)
        [run] = api.all_executions()
        sent = run["parsedParameters"]
        assert (sent["$manifest"], sent["$count"]) == (f"{bucket}/{name}", "1000")
        assert name.startswith("lists/batch/") and name.endswith(".txt")
        assert sent["$files"] == fingerprint(KEYS) and len(sent["$files"]) == fingerprint_length(1000) < 262_144
        clock.advance(60)
        again = result_of(launcher_for(clock, s3_server), config, uploads(KEYS, clock))  # a fresh container
        assert (again["submitted"], again["failed"]) == ([], [])
        assert {skip["reason"] for skip in again["skipped"]} == {"duplicate"}
        assert len(again["skipped"]) + again["omitted"]["skipped"] == 1000
        assert len(api.all_executions()) == 1


def test_a_retry_after_a_lost_create_answer_writes_the_same_manifest_object(s3_server: S3Server) -> None:
    clock = FakeClock()
    bucket = s3_server.bucket(f"manifest-{uuid.uuid4().hex[:12]}")
    s3_server.s3.put_bucket_versioning(bucket, "Enabled")
    keys = KEYS[:300]
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        config = manifested(api, s3_server, bucket)
        # The create's answer is lost before it ran, and no lookup can settle it: the group fails, kept.
        lose_the_answer_and_the_lookup(api, execute=False)
        first = result_of(launcher_for(clock, s3_server), config, uploads(keys, clock))
        assert first["submitted"] == [] and {entry["code"] for entry in first["failed"]} == {"unknown-outcome"}
        clock.advance(60)
        retried = result_of(launcher_for(clock, s3_server), config, uploads(keys, clock))
        assert [entry["objects"] for entry in retried["submitted"]] == [300]
    listed, _, _, _, _ = s3_server.s3.list_object_versions(bucket, prefix="lists/")
    assert len(listed) == 2 and len({version.name for version in listed}) == 1  # one object, written twice
    assert len({bytes(version.value) for version in listed}) == 1
    [run] = api.all_executions()
    assert run["parsedParameters"]["$manifest"] == f"{bucket}/{listed[0].name}"


def test_a_dry_run_writes_no_manifest_and_says_what_it_would_write(s3_server: S3Server, logs: JsonLines) -> None:
    clock = FakeClock()
    bucket = s3_server.bucket(f"manifest-{uuid.uuid4().hex[:12]}")
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        config = manifested(api, s3_server, bucket, DATAFLOW_DRY_RUN="true")
        result = result_of(launcher_for(clock, s3_server), config, uploads(KEYS[:3], clock))
        assert api.all_executions() == []
    [submitted] = result["submitted"]
    path = submitted["request"]["parameters"]["$manifest"]
    assert written(s3_server, bucket) == {}
    [said] = [record for record in logs.records if record["message"] == "dry run: manifest not written"]
    assert (said["manifest"], said["count"]) == (path, 3)


def test_a_refused_manifest_write_fails_the_group_retryable_with_its_fix_and_no_secret(
    s3_server: S3Server, logs: JsonLines
) -> None:
    clock = FakeClock()
    bucket = s3_server.bucket(f"manifest-{uuid.uuid4().hex[:12]}")
    wrong = "wrong-secret-never-shown"
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall) as api:
        config = manifested(api, s3_server, bucket)
        launcher = launcher_for(clock, s3_server, AWS_SECRET_ACCESS_KEY=wrong)
        result = result_of(launcher, config, uploads(KEYS[:3], clock))
        assert api.all_executions() == []  # never a run without its manifest
    assert result["submitted"] == [] and result["batchItemFailures"] == [
        {"itemIdentifier": f"m{index}"} for index in range(3)
    ]
    assert {(entry["code"], entry["retryable"]) for entry in result["failed"]} == {("manifest-failed", True)}
    error = result["failed"][0]["error"]
    assert "SignatureDoesNotMatch" in error and "the secret key does not match the access key" in error
    assert "nothing was sent" in error
    assert wrong not in json.dumps(result) and wrong not in logs.text and written(s3_server, bucket) == {}


def test_on_ncp_the_manifest_is_written_with_the_accounts_keys(s3_server: S3Server) -> None:
    # NAVER Cloud signs object storage with the NCLOUD keys (as it signs Data Flow); no AWS role keys exist there.
    clock = FakeClock()
    bucket = s3_server.bucket(f"manifest-{uuid.uuid4().hex[:12]}")
    keys = {s3_server.access_key: s3_server.secret_key}
    with Emulator(keys, clock=clock.wall) as api:
        config = manifested(api, s3_server, bucket)
        config |= {"NCLOUD_ACCESS_KEY": s3_server.access_key, "NCLOUD_SECRET_KEY": s3_server.secret_key}
        launcher = Launcher(Wiring(clock.clocks(), environ={}))
        records = [upload(key, at=clock.wall() - 60)["Records"][0] for key in KEYS[:3]]
        result = result_of(launcher, config, {"Records": records}, platform="ncp")
        assert [entry["objects"] for entry in result["submitted"]] == [3]
        assert len(api.all_executions()) == 1
    [body] = written(s3_server, bucket).values()
    assert body.decode("utf-8").splitlines() == sorted(KEYS[:3])


# Where the route is validated: the fingerprint's budget, and what a manifest does not go with.


def test_validate_accepts_thousands_of_keys_a_group_with_a_manifest_and_refuses_them_without() -> None:
    with_manifest = {"maxObjects": 5000, "manifest": "lake/lists/"}
    parse_settings({"DATAFLOW_DRY_RUN": "true", "DATAFLOW_ROUTES": json.dumps([coalescing(**with_manifest)])})
    assert problems_of(coalescing(maxObjects=5000))[0].startswith(
        "DATAFLOW_ROUTES[batch].coalesce.maxObjects: 5000 keys of up to 1024 bytes make the parameter up to 5124999"
    )
    assert problems_of(coalescing(maxObjects=24_576, manifest="lake/lists/")) == [
        "DATAFLOW_ROUTES[batch].coalesce.maxObjects: the fingerprint of 24576 keys takes 262147 bytes, past the "
        "262144-byte budget of one parameter; with a manifest maxObjects may be at most 24575"
    ]
    accepted = coalescing(maxObjects=24_575, manifest="lake/lists/")
    parse_settings({"DATAFLOW_DRY_RUN": "true", "DATAFLOW_ROUTES": json.dumps([accepted])})


def test_the_manifest_placeholder_without_a_manifest_is_refused_with_its_fix() -> None:
    route = coalescing() | {"parameters": {"$list": "{manifest}"}}
    assert problems_of(route) == [
        "DATAFLOW_ROUTES[batch].parameters.$list: {manifest} is the path of a coalesced group's file list: set "
        "coalesce.manifest ('bucket/prefix/') on a coalescing route to write one"
    ]
    per_file = {"name": "one", "match": {"source": "object"}, "jobId": "J1", "parameters": {"$list": "{manifest}"}}
    assert [problem.split(": ", 1)[1][:38] for problem in problems_of(per_file)] == [
        "{manifest} is the path of a coalesced "
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"manifest": "lake/lists/", "separator": "|"},
            "coalesce.separator: does not go with manifest: the manifest lists one key a line and $files carries "
            "their fingerprint (8 bytes a key); drop it and bound groups with maxObjects",
        ),
        (
            {"manifest": "lake/lists/", "maxBytes": 100_000},
            "coalesce.maxBytes: does not go with manifest: the manifest lists one key a line and $files carries "
            "their fingerprint (8 bytes a key); drop it and bound groups with maxObjects",
        ),
        (
            {"manifest": "gs://lake/lists/"},
            "coalesce.manifest: 'gs://lake/lists/' names gs:// storage; manifest is 'bucket/prefix/' in the object "
            "storage the route watches (s3://, s3a:// and s3n:// are read as that)",
        ),
        (
            {"manifest": ""},
            "coalesce.manifest: must be 'bucket/prefix/' where each group's file list is written, got string ''",
        ),
    ],
)
def test_what_a_manifest_cannot_go_with_is_refused_naming_the_option(spec: dict[str, Any], expected: str) -> None:
    assert problems_of(coalescing(**spec)) == [f"DATAFLOW_ROUTES[batch].{expected}"]


def test_a_manifest_under_the_prefix_its_route_watches_is_refused_unless_the_suffix_rules_it_out() -> None:
    watched = coalescing(manifest="S3A://raw-data/in/lists") | {"match": {"source": "object", "prefix": "in/"}}
    [problem] = problems_of(watched)
    assert problem.startswith(
        "DATAFLOW_ROUTES[batch]: its job writes under raw-data/in/lists/ (coalesce.manifest, where each group's file "
        "list is written), which this route watches"
    )
    csv_only = watched | {"match": {"source": "object", "prefix": "in/", "suffix": ".csv"}}
    parse_settings({"DATAFLOW_DRY_RUN": "true", "DATAFLOW_ROUTES": json.dumps([csv_only])})
    allowed = watched | {"allowRecursion": True}
    [route] = parse_settings({"DATAFLOW_DRY_RUN": "true", "DATAFLOW_ROUTES": json.dumps([allowed])}).routes
    assert route.writes("raw-data", "in/lists/batch/0a1b.txt") and not route.writes("raw-data", "in/a.csv")
