"""Sweeps of object storage: moto's S3 API (authentication on) listed, the emulator's runs checked, in each reading."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from emulator.s3_server import S3Server
from emulator.server import Emulator
from handler.errors import ConfigError
from handler.launcher import Launcher
from handler.settings import parse_settings
from handler.wiring import Wiring
from tests.conftest import ACCESS_KEY, SECRET_KEY, FakeClock, JsonLines, cli, connected, result_of, sqs_batch, upload

HOUR = 3600.0


def sweeping(emulator: Emulator, s3: S3Server, bucket: str, **route: Any) -> dict[str, str]:
    """A per-file route on `bucket`'s landing/ prefix, swept, and the storage at moto's address."""
    routes = [
        {
            "name": "files",
            "match": {"bucket": bucket, "prefix": "landing/", "suffix": ".csv"},
            "jobId": "FilesJob1",
            "parameters": {"$path": "{bucket}/{key}"},
            "sweep": {"quietSeconds": 120},
        }
        | route
    ]
    return connected(emulator.url, DATAFLOW_ROUTES=json.dumps(routes), DATAFLOW_STORAGE_ENDPOINT=s3.url)


def launcher_for(clock: FakeClock, s3: S3Server) -> Launcher:
    """A fresh container (its own memory) signing object storage with the server's keys, as Lambda's role."""
    return Launcher(Wiring(clock.clocks(), environ=s3.environ()))


def stored(s3: S3Server, bucket: str, key: str, *, modified: float) -> str:
    """Uploads `key` modified at `modified`; its ETag as a notification would carry it."""
    s3.put(bucket, key, f"{key}-{uuid.uuid4()}".encode(), modified=modified)
    return str(getattr(s3.s3.get_object(bucket, key), "etag", "")).strip('"')


def notified(bucket: str, key: str, etag: str, at: float) -> dict[str, Any]:
    event = upload(key, at=at, etag=etag)
    event["Records"][0]["s3"]["bucket"]["name"] = bucket
    return event


def fresh_bucket(s3: S3Server) -> str:
    return s3.bucket(f"sweep-{uuid.uuid4().hex[:12]}")


def started_paths(emulator: Emulator) -> list[str]:
    return sorted(run["parsedParameters"]["$path"] for run in emulator.all_executions())


def test_a_sweep_starts_the_file_whose_notification_was_lost_and_never_the_one_that_ran(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server, logs: JsonLines
) -> None:
    bucket = fresh_bucket(s3_server)
    config = sweeping(emulator, s3_server, bucket)
    now = clock.wall()
    ran = stored(s3_server, bucket, "landing/a.csv", modified=now - 600)
    stored(s3_server, bucket, "landing/b.csv", modified=now - 590)  # its notification never arrived
    stored(s3_server, bucket, "landing/c.json", modified=now - 580)  # not the route's
    assert result_of(launcher_for(clock, s3_server), config, notified(bucket, "landing/a.csv", ran, now - 600))[
        "submitted"
    ]
    clock.advance(30)
    result = result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
    assert started_paths(emulator) == [f"{bucket}/landing/a.csv", f"{bucket}/landing/b.csv"]
    [summary] = result["sweeps"]
    assert {name: summary[name] for name in ("listed", "unmatched", "sent", "covered", "started", "runs")} == {
        "listed": 3,
        "unmatched": 1,
        "sent": 2,
        "covered": 1,
        "started": 1,
        "runs": 1,
    }
    [submitted] = result["submitted"]
    assert submitted["source"] == {
        "kind": "object",
        "bucket": bucket,
        "key": "landing/b.csv",
        "eventName": "ObjectCreated:*",
        "sweep": "files",
    }
    logs.lines.clear()
    again = result_of(launcher_for(clock, s3_server), config, {"sweep": "*"})
    assert again["submitted"] == [] and again["sweeps"][0]["covered"] == 2
    assert len(emulator.all_executions()) == 2
    # Files that ran are counted in the sweep's record, not logged one by one at INFO every sweep.
    assert [record["message"] for record in logs.records] == ["invocation finished", "sweep finished"]


def test_a_late_notification_after_the_sweep_started_its_file_is_a_duplicate(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server
) -> None:
    # The notification and the listing share the object's identity (bucket, key, ETag), dedupParameter too.
    bucket = fresh_bucket(s3_server)
    config = sweeping(emulator, s3_server, bucket, dedupParameter="$dedup")
    now = clock.wall()
    etag = stored(s3_server, bucket, "landing/a.csv", modified=now - 600)
    assert result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})["sweeps"][0]["started"] == 1
    clock.advance(3 * HOUR)  # a trigger re-enabled, a dead-letter queue replayed
    late = result_of(launcher_for(clock, s3_server), config, notified(bucket, "landing/a.csv", etag, now - 599))
    assert [skip["reason"] for skip in late["skipped"]] == ["duplicate"]
    assert len(emulator.all_executions()) == 1


def test_a_file_still_arriving_waits_for_the_next_sweep_and_a_long_upload_is_not_lost(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server
) -> None:
    bucket = fresh_bucket(s3_server)
    config = sweeping(emulator, s3_server, bucket)
    now = clock.wall()
    stored(s3_server, bucket, "landing/new.csv", modified=now - 30)
    first = result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
    assert first["submitted"] == [] and first["sweeps"][0]["newer"] == 1
    # A multipart upload started an hour ago completes now: S3 gives it its start as LastModified, older than
    # the first sweep, and a sweep that listed only since its last one would never see it.
    stored(s3_server, bucket, "landing/long.csv", modified=now - HOUR)
    clock.advance(300)
    second = result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
    assert started_paths(emulator) == [f"{bucket}/landing/long.csv", f"{bucket}/landing/new.csv"]
    assert second["sweeps"][0]["started"] == 2


def test_a_folder_waits_for_its_completion_marker(emulator: Emulator, clock: FakeClock, s3_server: S3Server) -> None:
    bucket = fresh_bucket(s3_server)
    config = sweeping(emulator, s3_server, bucket, sweep={"quietSeconds": 0, "marker": "_SUCCESS"})
    now = clock.wall()
    stored(s3_server, bucket, "landing/dt=1/a.csv", modified=now - 600)
    stored(s3_server, bucket, "landing/dt=2/b.csv", modified=now - 600)
    stored(s3_server, bucket, "landing/dt=2/_SUCCESS", modified=now - 500)
    first = result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
    assert started_paths(emulator) == [f"{bucket}/landing/dt=2/b.csv"]
    assert first["sweeps"][0]["waiting"] == 1
    stored(s3_server, bucket, "landing/dt=1/_SUCCESS", modified=now - 10)
    result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
    assert started_paths(emulator) == [f"{bucket}/landing/dt=1/a.csv", f"{bucket}/landing/dt=2/b.csv"]


def test_a_coalescing_route_coalesces_what_a_sweep_lists_and_covers_it_after(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server
) -> None:
    bucket = fresh_bucket(s3_server)
    coalesce = {"parameter": "$files", "maxObjects": 2}
    config = sweeping(emulator, s3_server, bucket, parameters={"$bucket": "{bucket}"}, coalesce=coalesce)
    now = clock.wall()
    for index in range(5):
        stored(s3_server, bucket, f"landing/{index}.csv", modified=now - 600 + index)
    first = result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
    lists = sorted(run["parsedParameters"]["$files"] for run in emulator.all_executions())
    assert lists == ["landing/0.csv,landing/1.csv", "landing/2.csv,landing/3.csv", "landing/4.csv"]
    assert {name: first["sweeps"][0][name] for name in ("runs", "started")} == {"runs": 3, "started": 5}
    again = result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
    assert again["submitted"] == [] and again["sweeps"][0]["covered"] == 5


def test_where_runs_echo_nothing_a_sweep_starts_only_what_it_can_prove_new(
    clock: FakeClock, s3_server: S3Server
) -> None:
    with Emulator({ACCESS_KEY: SECRET_KEY}, clock=clock.wall, echo="none") as api:
        bucket = fresh_bucket(s3_server)
        config = sweeping(api, s3_server, bucket)
        now = clock.wall()
        stored(s3_server, bucket, "landing/a.csv", modified=now - 600)
        first = result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
        assert first["sweeps"][0]["started"] == 1  # the job had no runs: nothing to mistake it for
        clock.advance(60)
        second = result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
        assert second["submitted"] == [] and second["sweeps"][0]["unproven"] == 1
        assert [skip["reason"] for skip in second["skipped"]] == ["unproven"]
        assert len(api.all_executions()) == 1


def test_a_sweep_reaches_no_further_back_than_the_duplicate_check_reads(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server
) -> None:
    bucket = fresh_bucket(s3_server)
    config = sweeping(emulator, s3_server, bucket)
    now = clock.wall()
    stored(s3_server, bucket, "landing/old.csv", modified=now - 30 * HOUR)
    asked = {"sweep": "files", "since": datetime.fromtimestamp(now - 48 * HOUR, UTC).isoformat()}
    result = result_of(launcher_for(clock, s3_server), config, asked)
    [summary] = result["sweeps"]
    assert summary["older"] == 1 and "clamped" in summary and emulator.all_executions() == []


def test_a_listing_refused_fails_the_sweep_with_the_fix_and_no_secret(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server
) -> None:
    bucket = fresh_bucket(s3_server)
    config = sweeping(emulator, s3_server, bucket)
    wrong = s3_server.environ() | {"AWS_SECRET_ACCESS_KEY": "not-the-secret-key-0123456789"}
    result = result_of(Launcher(Wiring(clock.clocks(), environ=wrong)), config, {"sweep": "files"})
    [failed] = result["failed"]
    assert failed["code"] == "SignatureDoesNotMatch" and failed["retryable"] is False
    assert "not-the-secret-key" not in json.dumps(result)
    assert result["sweeps"][0]["error"].startswith("SignatureDoesNotMatch")


@pytest.mark.parametrize(
    ("event", "said"),
    [
        ({"sweep": "nope"}, "no route named 'nope'"),
        ({"sweep": ""}, "event.sweep is empty"),
        ({"sweep": "files", "since": "2026-11-27T00:00:00Z", "until": "2026-11-26T00:00:00Z"}, "is not before"),
    ],
)
def test_a_sweep_request_that_names_nothing_listable_says_why(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server, event: dict[str, Any], said: str
) -> None:
    config = sweeping(emulator, s3_server, "any-bucket")
    result = result_of(launcher_for(clock, s3_server), config, event)
    [failed] = result["failed"]
    assert said in failed["error"]


def test_notifications_in_one_sqs_batch_share_the_identity_a_sweep_computes(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server
) -> None:
    # Two notifications of one upload (S3 delivers at least once) in one batch start one run.
    bucket = fresh_bucket(s3_server)
    config = sweeping(emulator, s3_server, bucket)
    now = clock.wall()
    etag = stored(s3_server, bucket, "landing/a.csv", modified=now - 60)
    event = notified(bucket, "landing/a.csv", etag, now - 60)
    result_of(launcher_for(clock, s3_server), config, sqs_batch([event, event]))
    assert len(emulator.all_executions()) == 1


def test_explain_one_upload_reads_its_state_and_finds_the_run_of_a_dedup_parameter_route(
    s3_server: S3Server, tmp_path: Path
) -> None:
    # A hostile review of issue 23: explain --bucket/--key said "absent" for a file that ran on a route with a
    # dedupParameter (the upload it built had no ETag, so its key was not the notification's).
    with Emulator({ACCESS_KEY: SECRET_KEY}) as api:  # the real clock: the commands sign with it
        bucket = fresh_bucket(s3_server)
        environ = sweeping(api, s3_server, bucket, dedupParameter="$dedup") | s3_server.environ()
        etag = stored(s3_server, bucket, "landing/a b.csv", modified=time.time())
        event = tmp_path / "event.json"
        event.write_text(json.dumps(notified(bucket, "landing/a b.csv", etag, time.time())), encoding="utf-8")
        assert cli("invoke", str(event), env=environ).returncode == 0
        [run] = api.all_executions()
        done = cli("explain", "--bucket", bucket, "--key", "landing/a b.csv", "--json", env=environ)
    assert done.returncode == 0, done.stderr
    [verdict] = json.loads(done.stdout)["records"][0]["routes"]
    assert verdict["service"] == f"found {run['jobExecutionId']}"


def test_an_object_backfill_runs_the_files_of_its_range_that_no_run_covers_and_resumes(
    s3_server: S3Server, tmp_path: Path
) -> None:
    # Issue 24, item 7: `backfill` of an object route lists the objects modified in the range instead of
    # refusing or sending empty parameters; run again, it starts nothing.
    with Emulator({ACCESS_KEY: SECRET_KEY}) as api:  # the real clock: the commands sign with it
        bucket = fresh_bucket(s3_server)
        now = time.time()
        route = {"match": {"source": "object", "bucket": bucket, "prefix": "landing/", "suffix": ".csv"}}
        environ = sweeping(api, s3_server, bucket, **route) | s3_server.environ()
        ran = stored(s3_server, bucket, "landing/ran.csv", modified=now - 3 * HOUR)
        stored(s3_server, bucket, "landing/lost-1.csv", modified=now - 2 * HOUR)
        stored(s3_server, bucket, "landing/lost-2.csv", modified=now - 2 * HOUR)
        stored(s3_server, bucket, "landing/before.csv", modified=now - 30 * HOUR)
        event = tmp_path / "event.json"
        event.write_text(json.dumps(notified(bucket, "landing/ran.csv", ran, now - 3 * HOUR)), encoding="utf-8")
        assert cli("invoke", str(event), env=environ).returncode == 0
        span = (datetime.fromtimestamp(now - 4 * HOUR, UTC).isoformat(), datetime.fromtimestamp(now, UTC).isoformat())
        asked = ("backfill", "--route", "files", "--from", span[0], "--to", span[1])
        dry = cli(*asked, "--dry-run", env=environ)
        assert dry.returncode == 0 and len(api.all_executions()) == 1  # a dry run starts nothing
        # A dry run reads no runs (it sends nothing, lists included): it shows every file the range would send on.
        assert sorted(line.split()[-1] for line in dry.stdout.splitlines() if "dry-run" in line) == [
            "landing/lost-1.csv",
            "landing/lost-2.csv",
            "landing/ran.csv",
        ]
        assert "a dry run reads no runs" in dry.stderr
        done = cli(*asked, env=environ)
        assert done.returncode == 0, done.stdout + done.stderr
        assert started_paths(api) == sorted(f"{bucket}/landing/{name}.csv" for name in ("ran", "lost-1", "lost-2"))
        assert "4 listed, 3 sent, 1 covered, 0 unproven, 2 runs, 2 started" in done.stdout
        again = cli(*asked, env=environ)
        assert "3 covered" in again.stdout and len(api.all_executions()) == 3


def test_a_route_served_by_its_sweep_alone_takes_no_notification_from_a_shared_bucket_trigger(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server
) -> None:
    # A newcomer's second trial: on NAVER Cloud a bucket's trigger (set for a per-file route) also delivered the
    # coalescing route's files, one run per file; with sweep.only those wait for the sweep, which coalesces them.
    bucket = fresh_bucket(s3_server)
    coalescing = {
        "coalesce": {"parameter": "$files", "maxObjects": 10},
        "parameters": {"$bucket": "{bucket}"},
        "sweep": {"quietSeconds": 0, "only": True},
    }
    config = sweeping(emulator, s3_server, bucket, **coalescing)
    now = clock.wall()
    etags = [stored(s3_server, bucket, f"landing/{index}.csv", modified=now - 60) for index in range(3)]
    for index, etag in enumerate(etags):
        result = result_of(
            launcher_for(clock, s3_server),
            config,
            notified(bucket, f"landing/{index}.csv", etag, now - 60),
            platform="ncp",
        )
        [skip] = result["skipped"]
        assert skip["reason"] == "no-route"
    assert emulator.all_executions() == []
    result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
    [run] = emulator.all_executions()
    assert run["parsedParameters"]["$files"] == "landing/0.csv,landing/1.csv,landing/2.csv"


def test_an_ncp_payload_without_its_own_time_is_identified_by_the_objects_state(s3_server: S3Server) -> None:
    # Issue 24, item 6: two activations of the same flat payload 7 s apart started two runs (without a time or
    # an ETag it was identified by its arrival); the object's own ETag and LastModified now identify it.
    clock = FakeClock()
    bucket = fresh_bucket(s3_server)
    with Emulator({s3_server.access_key: s3_server.secret_key}, clock=clock.wall) as api:
        config = sweeping(api, s3_server, bucket, dedupParameter="$dedup")
        config |= {"NCLOUD_ACCESS_KEY": s3_server.access_key, "NCLOUD_SECRET_KEY": s3_server.secret_key}
        stored(s3_server, bucket, "landing/a.csv", modified=clock.wall() - 30)
        flat = {"bucketName": bucket, "objectName": "landing/a.csv", "eventType": "ObjectCreated:PUT"}
        first = result_of(Launcher(Wiring(clock.clocks(), environ={})), config, flat, platform="ncp")
        clock.advance(7)
        replay = result_of(Launcher(Wiring(clock.clocks(), environ={})), config, flat, platform="ncp")
        assert len(first["submitted"]) == 1 and [skip["reason"] for skip in replay["skipped"]] == ["duplicate"]
        clock.advance(60)
        stored(s3_server, bucket, "landing/a.csv", modified=clock.wall() - 1)  # a new upload of the key
        again = result_of(Launcher(Wiring(clock.clocks(), environ={})), config, flat, platform="ncp")
        assert len(again["submitted"]) == 1 and len(api.all_executions()) == 2


# A hostile review of issue 24: each test below failed on the change it reviewed.


def test_identical_bytes_uploaded_again_an_hour_later_run_again_in_a_warm_container(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server
) -> None:
    # The object's identity leaves out its time; the container's memory took the second upload of the same bytes
    # for a redelivery of the first.
    bucket = fresh_bucket(s3_server)
    config = sweeping(emulator, s3_server, bucket)
    warm = launcher_for(clock, s3_server)
    etag = "0123456789abcdef0123456789abcdef"
    assert result_of(warm, config, notified(bucket, "landing/a.csv", etag, clock.wall() - 60))["submitted"]
    assert result_of(warm, config, notified(bucket, "landing/a.csv", etag, clock.wall() - 60))["skipped"]
    clock.advance(HOUR)
    assert result_of(warm, config, notified(bucket, "landing/a.csv", etag, clock.wall() - 60))["submitted"]
    assert len(emulator.all_executions()) == 2


def test_a_sweep_recognises_the_run_of_a_route_whose_events_are_written_in_lower_case(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server
) -> None:
    bucket = fresh_bucket(s3_server)
    match = {"bucket": bucket, "prefix": "landing/", "suffix": ".csv", "events": ["objectcreated:*"]}
    config = sweeping(emulator, s3_server, bucket, dedupParameter="$dedup", match=match)
    now = clock.wall()
    etag = stored(s3_server, bucket, "landing/a.csv", modified=now - 600)
    assert result_of(launcher_for(clock, s3_server), config, notified(bucket, "landing/a.csv", etag, now - 600))[
        "submitted"
    ]
    clock.advance(30)
    result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
    assert started_paths(emulator) == [f"{bucket}/landing/a.csv"]


def test_files_whose_completion_marker_arrives_after_the_look_back_are_still_started(
    emulator: Emulator, clock: FakeClock, s3_server: S3Server
) -> None:
    # A folder's files are released when its marker lands: timed by their own LastModified, they had fallen out
    # of the look-back by then and never ran.
    bucket = fresh_bucket(s3_server)
    sweep = {"quietSeconds": 120, "lookBackHours": 2, "marker": "_SUCCESS"}
    config = sweeping(emulator, s3_server, bucket, sweep=sweep)
    stored(s3_server, bucket, "landing/dt=1/a.csv", modified=clock.wall() - 1.5 * HOUR)
    held = result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
    assert held["sweeps"][0]["waiting"] == 1
    clock.advance(HOUR)
    stored(s3_server, bucket, "landing/dt=1/_SUCCESS", modified=clock.wall() - 300)
    result_of(launcher_for(clock, s3_server), config, {"sweep": "files"})
    assert started_paths(emulator) == [f"{bucket}/landing/dt=1/a.csv"]


def test_two_routes_of_a_job_that_write_one_file_list_parameter_two_ways_are_refused() -> None:
    # A manifest route and a plain coalescing route sharing "$files" on one job: the job's runs are read one way
    # per parameter, so one route's runs covered nothing and its sweep (or a redelivery) ran them again.
    routes = [
        {"name": "plain", "match": {"bucket": "b", "prefix": "in/"}, "jobId": "J", "coalesce": {"parameter": "$files"}},
        {
            "name": "batch",
            "match": {"bucket": "b", "prefix": "other/"},
            "jobId": "J",
            "coalesce": {"parameter": "$files", "maxObjects": 5000, "manifest": "lists/m/"},
            "parameters": {"$manifest": "{manifest}"},
        },
    ]
    with pytest.raises(ConfigError) as refused:
        parse_settings({"DATAFLOW_ROUTES": json.dumps(routes), "DATAFLOW_DRY_RUN": "true"})
    assert "$files of job J is also route plain's file list, written another way" in str(refused.value)
    routes[1]["coalesce"]["parameter"] = "$batch"  # type: ignore[index]
    assert len(parse_settings({"DATAFLOW_ROUTES": json.dumps(routes), "DATAFLOW_DRY_RUN": "true"}).routes) == 2
