"""template.yaml through the real SAM transform, offline: every event source, the secret, the settings."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from handler.settings import CONFIG_NAMES
from tests.conftest import ROOT

SECRET_ARN = "arn:aws:secretsmanager:ap-northeast-2:123456789012:secret:ncp-keys-AbCdEf"
LAYER_ARN = "arn:aws:lambda:ap-northeast-2:738900069198:layer:AWS-Parameters-and-Secrets-Lambda-Extension-Arm64:17"


class NoManagedPolicies:
    """The transform asks IAM for managed policy ARNs; offline, SAM's own names are all it needs."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    template["Resources"]["LauncherFunction"]["Properties"]["CodeUri"] = "s3://artifacts/launcher.zip"  # as sam package
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "ap-northeast-2")  # the transform needs a region, nothing else of AWS
        translated: dict[str, Any] = transform(template, {}, NoManagedPolicies())
    return translated


# What the pseudo parameters stand for in a rendering; AWS::NoValue removes the key or item that holds it.
NO_VALUE = object()
PSEUDO: dict[str, object] = {
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "launcher",
    "AWS::NoValue": NO_VALUE,
}


def resolve(value: Any, parameters: Mapping[str, Any], template: Mapping[str, Any]) -> Any:
    """Evaluates the intrinsic functions the template uses, for given parameter values; a resource is `<Name>`."""
    if isinstance(value, list):
        return [item for item in (resolve(item, parameters, template) for item in value) if item is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        [(name, argument)] = value.items()
        if name in INTRINSICS:
            return INTRINSICS[name](argument, parameters, template)
    rendered = {name: resolve(item, parameters, template) for name, item in value.items()}
    return {name: item for name, item in rendered.items() if item is not NO_VALUE}


def ref(name: str, parameters: Mapping[str, Any], template: Mapping[str, Any]) -> Any:
    if name in template["Parameters"]:
        return parameters.get(name, template["Parameters"][name].get("Default"))
    return PSEUDO.get(name, f"<{name}>")


def sub(argument: Any, parameters: Mapping[str, Any], template: Mapping[str, Any]) -> str:
    text, names = (argument, {}) if isinstance(argument, str) else argument

    def value(found: re.Match[str]) -> str:
        name = found[1]
        if name in names:
            return str(resolve(names[name], parameters, template))
        return f"<{name}>" if "." in name else str(ref(name, parameters, template))

    return re.sub(r"\$\{([^}!]+)\}", value, text)


def if_(argument: Any, parameters: Mapping[str, Any], template: Mapping[str, Any]) -> Any:
    condition, chosen, other = argument
    return resolve(chosen if holds(condition, parameters, template) else other, parameters, template)


INTRINSICS: dict[str, Callable[[Any, Mapping[str, Any], Mapping[str, Any]], Any]] = {
    "Ref": ref,
    "Fn::Sub": sub,
    "Fn::If": if_,
    "Fn::GetAtt": lambda argument, *_: f"<{argument if isinstance(argument, str) else '.'.join(argument)}>",
    "Fn::Equals": lambda argument, parameters, template: (
        len({str(resolve(item, parameters, template)) for item in argument}) == 1
    ),
    "Fn::Not": lambda argument, parameters, template: not resolve(argument[0], parameters, template),
    "Fn::Or": lambda argument, parameters, template: any(resolve(item, parameters, template) for item in argument),
    "Fn::And": lambda argument, parameters, template: all(resolve(item, parameters, template) for item in argument),
    "Condition": lambda argument, parameters, template: resolve(template["Conditions"][argument], parameters, template),
}


def holds(condition: str, parameters: Mapping[str, Any], template: Mapping[str, Any]) -> bool:
    return bool(resolve({"Condition": condition}, parameters, template))


def resources_of(template: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def test_uploads_reach_the_function_through_sqs_with_partial_batch_responses_and_a_redrive_dlq(
    translated: dict[str, Any],
) -> None:
    bucket = translated["Resources"]["UploadBucket"]["Properties"]
    [notification] = bucket["NotificationConfiguration"]["QueueConfigurations"]
    assert notification["Event"] == "s3:ObjectCreated:*"
    assert notification["Queue"] == {"Fn::GetAtt": ["UploadQueue", "Arn"]}
    [mapping] = resources_of(translated, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["UploadQueue", "Arn"]}
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["Properties"]["BatchSize"] == {"Ref": "BatchSize"}
    redrive = translated["Resources"]["UploadQueue"]["Properties"]["RedrivePolicy"]
    assert redrive == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["UploadDeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "MaxReceiveCount"},
    }


def test_an_existing_bucket_is_an_optional_eventbridge_rule_into_the_upload_queue(translated: dict[str, Any]) -> None:
    # Straight to the function, each upload was an invocation of its own: no batching window, no coalescing.
    rule = translated["Resources"]["ExistingBucketRule"]
    assert rule["Condition"] == "UseExistingBucket"
    assert rule["Properties"]["EventPattern"]["detail-type"] == ["Object Created"]
    assert [target["Arn"] for target in rule["Properties"]["Targets"]] == [{"Fn::GetAtt": ["UploadQueue", "Arn"]}]
    permissions = resources_of(translated, "AWS::Lambda::Permission").values()
    assert [p for p in permissions if p["Properties"]["Principal"] == "events.amazonaws.com"] == []
    assert not holds("UseExistingBucket", {}, translated)
    assert holds("UseExistingBucket", {"ExistingBucketName": "my-data"}, translated)


def test_an_existing_bucket_gets_the_new_bucket_s_queue_batches_partial_failures_and_dlq(
    translated: dict[str, Any],
) -> None:
    existing = {"ExistingBucketName": "partner-drop", "CreateUploadBucket": "false"}
    for name in (
        "UploadQueue",
        "UploadDeadLetterQueue",
        "UploadQueuePolicy",
        "UploadQueueReadPolicy",
        "UploadsMapping",
    ):
        assert translated["Resources"][name]["Condition"] == "HasUploadBucket", name
    assert holds("HasUploadBucket", existing, translated)
    mapping = resolve(translated["Resources"]["UploadsMapping"]["Properties"], existing, translated)
    assert mapping["EventSourceArn"] == "<UploadQueue.Arn>"
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 10 and mapping["MaximumBatchingWindowInSeconds"] == 0
    queue = resolve(translated["Resources"]["UploadQueue"]["Properties"], existing, translated)
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == "<UploadDeadLetterQueue.Arn>"


def test_the_upload_queue_admits_only_its_own_sender_the_rule_or_the_new_bucket(translated: dict[str, Any]) -> None:
    policy = translated["Resources"]["UploadQueuePolicy"]["Properties"]["PolicyDocument"]
    [from_rule] = resolve(policy, {"ExistingBucketName": "partner-drop"}, translated)["Statement"]
    assert from_rule == {
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": "<UploadQueue.Arn>",
        "Condition": {"ArnEquals": {"aws:SourceArn": "<ExistingBucketRule.Arn>"}},
    }
    [from_bucket] = resolve(policy, {}, translated)["Statement"]
    assert from_bucket["Principal"] == {"Service": "s3.amazonaws.com"}
    assert from_bucket["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_each_schedule_is_a_scheduler_schedule_with_retries_a_dlq_and_the_input_the_handler_reads(
    translated: dict[str, Any],
) -> None:
    schedules = resources_of(translated, "AWS::Scheduler::Schedule")
    assert sorted(schedules) == ["Schedule1", "Schedule2", "Schedule3", "Sweep"]
    assert [schedules[name]["Condition"] for name in sorted(schedules)] == [
        "HasSchedule1",
        "HasSchedule2",
        "HasSchedule3",
        "HasSweep",
    ]
    for name, parameter in (("Schedule1", "ScheduleName"), ("Schedule2", "Schedule2Name")):
        target = schedules[name]["Properties"]["Target"]
        assert target["Input"] == {
            "Fn::Sub": f'{{"schedule": "${{{parameter}}}", "time": "<aws.scheduler.scheduled-time>"}}'
        }
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600}
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}
    role = translated["Resources"][target["RoleArn"]["Fn::GetAtt"][0]]
    actions = [s["Action"] for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert actions == ["lambda:InvokeFunction", "sqs:SendMessage"]


def test_two_schedules_need_no_edit_and_the_rest_stay_off(translated: dict[str, Any]) -> None:
    two = {"ScheduleName": "nightly", "Schedule2Name": "hourly", "Schedule2Expression": "rate(1 hour)"}
    assert [holds(f"HasSchedule{n}", two, translated) for n in (1, 2, 3)] == [True, True, False]
    assert holds("HasSchedule", {"ScheduleName": ""}, translated) is False


def test_a_named_schedule_fires_without_a_second_switch_and_none_exists_unless_named(
    translated: dict[str, Any],
) -> None:
    # "Keep the rest" in the guided deploy: a nightly the user named fires, and a stack for uploads alone
    # never starts the default route's job on a clock.
    assert translated["Parameters"]["ScheduleState"]["Default"] == "ENABLED"
    assert holds("HasSchedule", {}, translated) is False
    assert holds("HasSchedule1", {"ScheduleName": "nightly"}, translated) is True
    for schedule in resources_of(translated, "AWS::Scheduler::Schedule").values():
        assert resolve(schedule["Properties"]["State"], {"ScheduleName": "nightly"}, translated) == "ENABLED"


def test_one_zone_drives_the_schedules_and_the_placeholders(translated: dict[str, Any]) -> None:
    # A schedule at 01:00 Asia/Seoul arrives as 16:00Z the day before: the placeholders must render in Seoul too.
    variables = translated["Resources"]["LauncherFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["DATAFLOW_TIMEZONE"] == {"Ref": "Timezone"}
    for schedule in resources_of(translated, "AWS::Scheduler::Schedule").values():
        assert schedule["Properties"]["ScheduleExpressionTimezone"] == {"Ref": "Timezone"}
    assert "ScheduleTimezone" not in translated["Parameters"] and "DataflowTimezone" not in translated["Parameters"]


def test_without_an_upload_bucket_nothing_of_it_is_created(translated: dict[str, Any]) -> None:
    assert translated["Resources"]["UploadBucket"]["Condition"] == "CreateBucket"
    queued = ("UploadQueue", "UploadQueuePolicy", "UploadDeadLetterQueue", "UploadsMapping", "UploadQueueReadPolicy")
    for name in (*queued, "UploadBucketReadPolicy"):
        assert translated["Resources"][name]["Condition"] == "HasUploadBucket", name
    assert holds("CreateBucket", {"CreateUploadBucket": "false"}, translated) is False
    assert holds("HasUploadBucket", {"CreateUploadBucket": "false"}, translated) is False
    assert holds("CreateBucket", {}, translated) is True
    assert holds("HasUploadBucket", {}, translated) is True


def test_an_existing_bucket_named_replaces_the_new_one(translated: dict[str, Any]) -> None:
    existing = {"ExistingBucketName": "partner-drop"}
    assert holds("CreateBucket", existing, translated) is False
    assert holds("CreateBucket", existing | {"CreateUploadBucket": "true"}, translated) is False
    assert holds("UseExistingBucket", existing, translated) is True
    assert translated["Outputs"]["UploadBucketName"]["Condition"] == "CreateBucket"
    for name in ("UploadQueueUrl", "UploadDeadLetterQueueArn"):
        assert translated["Outputs"][name]["Condition"] == "HasUploadBucket"


def test_failed_async_invocations_go_to_an_on_failure_queue(translated: dict[str, Any]) -> None:
    [config] = resources_of(translated, "AWS::Lambda::EventInvokeConfig").values()
    assert config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["FailedEventsQueue", "Arn"]
    }
    assert config["Properties"]["MaximumRetryAttempts"] == 2


def test_a_named_secret_adds_the_extension_layer_and_a_policy_on_that_one_secret(translated: dict[str, Any]) -> None:
    function = translated["Resources"]["LauncherFunction"]["Properties"]
    assert function["Layers"] == {
        "Fn::If": ["UseSecret", [{"Ref": "SecretsExtensionLayerArn"}], {"Ref": "AWS::NoValue"}]
    }
    policy = translated["Resources"]["SecretReadPolicy"]
    assert policy["Condition"] == "UseSecret"
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": {"Ref": "NcloudCredentialsSecretArn"},
    }
    assert holds(
        "UseSecret", {"NcloudCredentialsSecretArn": SECRET_ARN, "SecretsExtensionLayerArn": LAYER_ARN}, translated
    )
    assert not holds("UseSecret", {}, translated)
    variables = function["Environment"]["Variables"]
    # With a secret, no key reaches the environment in plain text.
    assert variables["NCLOUD_ACCESS_KEY"] == {"Fn::If": ["UseSecret", "", {"Ref": "NcloudAccessKey"}]}
    assert variables["NCLOUD_SECRET_KEY"] == {"Fn::If": ["UseSecret", "", {"Ref": "NcloudSecretKey"}]}


def test_the_handler_resolves_to_an_importable_callable(translated: dict[str, Any]) -> None:
    module, _, name = translated["Resources"]["LauncherFunction"]["Properties"]["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def test_every_variable_the_template_sets_is_a_setting_and_every_required_one_is_set(
    translated: dict[str, Any],
) -> None:
    variables = translated["Resources"]["LauncherFunction"]["Properties"]["Environment"]["Variables"]
    unknown = [name for name in variables if name not in CONFIG_NAMES and not name.startswith("POWERTOOLS_")]
    assert unknown == []
    assert {"NCLOUD_ACCESS_KEY", "NCLOUD_SECRET_KEY", "NCLOUD_CREDENTIALS_SECRET"} <= set(variables)
    assert {"DATAFLOW_JOB_ID", "DATAFLOW_ROUTES"} <= set(variables)
    # Every setting a user may want is a parameter (the handler's own names, one for one).
    settable = {name for name in CONFIG_NAMES if name.startswith("DATAFLOW_")} - {"DATAFLOW_CALLER_HEADER"}
    assert settable <= set(variables), settable - set(variables)


def test_rules_refuse_a_secret_without_the_layer_and_keys_without_both_halves(translated: dict[str, Any]) -> None:
    rules = translated["Rules"]

    def refused(parameters: dict[str, str]) -> list[str]:
        failed = []
        for name, rule in rules.items():
            if resolve(rule.get("RuleCondition", True), parameters, translated):
                failed += [
                    name for assertion in rule["Assertions"] if not resolve(assertion["Assert"], parameters, translated)
                ]
        return failed

    job = {"DataflowJobId": "J1"}
    assert refused(job | {"NcloudCredentialsSecretArn": SECRET_ARN}) == ["SecretNeedsTheExtension"]
    assert refused(job | {"NcloudCredentialsSecretArn": SECRET_ARN, "SecretsExtensionLayerArn": LAYER_ARN}) == []
    assert refused(job | {"NcloudAccessKey": "AK"}) == ["KeysWithoutSecret"]
    assert refused(job | {"NcloudAccessKey": "AK", "NcloudSecretKey": "SK"}) == []
    keys = {"NcloudAccessKey": "AK", "NcloudSecretKey": "SK"}
    assert refused(keys) == ["OneTarget"]
    assert refused(keys | job | {"DataflowRoutes": "@routes.json"}) == ["OneTarget"]


def test_with_routes_the_uploads_are_filtered_in_one_place_only(translated: dict[str, Any]) -> None:
    # The template's filter and a route's match.prefix could disagree, and uploads outside the template's
    # would never reach the function: with routes, the routes filter alone.
    rules = translated["Rules"]

    def refused(parameters: dict[str, str]) -> list[str]:
        return [
            name
            for name, rule in rules.items()
            if resolve(rule.get("RuleCondition", True), parameters, translated)
            and not all(resolve(check["Assert"], parameters, translated) for check in rule["Assertions"])
        ]

    keys = {"NcloudAccessKey": "AK", "NcloudSecretKey": "SK"}
    routes = keys | {"DataflowRoutes": "@routes.json"}
    assert refused(routes | {"UploadPrefix": "incoming/"}) == ["OneKeyFilter"]
    assert refused(routes | {"UploadSuffix": ".csv"}) == ["OneKeyFilter"]
    assert refused(routes) == []
    assert refused(keys | {"DataflowJobId": "J1", "UploadPrefix": "incoming/", "UploadSuffix": ".csv"}) == []
    assert "filter in the routes" in rules["OneKeyFilter"]["Assertions"][0]["AssertDescription"]


def test_the_function_may_read_the_upload_queue_and_no_other(translated: dict[str, Any]) -> None:
    role = translated["Resources"]["LauncherFunctionRole"]["Properties"]
    assert "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole" not in role["ManagedPolicyArns"]
    policies = [body["Properties"] for body in resources_of(translated, "AWS::IAM::Policy").values()]
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"] if "sqs:ReceiveMessage" in s["Action"]]
    assert [s["Resource"] for s in statements] == [{"Fn::GetAtt": ["UploadQueue", "Arn"]}]


def refused_by(parameters: Mapping[str, str], template: Mapping[str, Any]) -> list[str]:
    """The template rules a deploy with these parameters fails."""
    return [
        name
        for name, rule in template["Rules"].items()
        if resolve(rule.get("RuleCondition", True), parameters, template)
        and not all(resolve(check["Assert"], parameters, template) for check in rule["Assertions"])
    ]


def statements_of(translated: Mapping[str, Any], parameters: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every statement the function's role holds with these parameters (inline and attached policies)."""
    role = translated["Resources"]["LauncherFunctionRole"]["Properties"]
    documents = [policy["PolicyDocument"] for policy in role.get("Policies", [])]
    for body in resources_of(translated, "AWS::IAM::Policy").values():
        if "Condition" not in body or holds(body["Condition"], parameters, translated):
            documents.append(body["Properties"]["PolicyDocument"])
    return [s for document in documents for s in resolve(document, parameters, translated)["Statement"]]


def s3_grants(translated: Mapping[str, Any], parameters: Mapping[str, str]) -> list[dict[str, Any]]:
    return [s for s in statements_of(translated, parameters) if str(s["Action"]).startswith("s3:")]


def test_a_sweep_schedule_is_optional_and_sweeps_every_route_that_has_a_sweep_option(
    translated: dict[str, Any],
) -> None:
    sweep = translated["Resources"]["Sweep"]
    assert sweep["Condition"] == "HasSweep"
    assert translated["Parameters"]["SweepSchedule"]["Default"] == ""
    assert not holds("HasSweep", {}, translated)
    every_five = {"SweepSchedule": "rate(5 minutes)"}
    assert holds("HasSweep", every_five, translated)
    # A stack with a sweep and no named schedule still needs the role that lets Scheduler invoke the function.
    assert translated["Resources"]["SchedulerRole"]["Condition"] == "UsesScheduler"
    assert holds("UsesScheduler", every_five, translated) and not holds("UsesScheduler", {}, translated)
    properties = resolve(sweep["Properties"], every_five | {"ScheduleState": "DISABLED"}, translated)
    assert properties["ScheduleExpression"] == "rate(5 minutes)"
    assert properties["State"] == "ENABLED"  # pausing the jobs on a clock does not stop files from running
    target = properties["Target"]
    assert json.loads(target["Input"]) == {"sweep": "*"}
    assert (target["Arn"], target["RoleArn"]) == ("<LauncherFunction.Arn>", "<SchedulerRole.Arn>")
    assert target["DeadLetterConfig"] == {"Arn": "<ScheduleDeadLetterQueue.Arn>"}


def test_the_sweep_schedule_takes_a_rate_or_a_cron_and_refuses_anything_else(translated: dict[str, Any]) -> None:
    pattern = translated["Parameters"]["SweepSchedule"]["AllowedPattern"]
    for good in ("", "rate(5 minutes)", "rate(15 minutes)", "cron(0/5 * * * ? *)"):
        assert re.fullmatch(pattern, good), good
    for bad in ("5 minutes", "every 5 minutes", "rate 5 minutes"):
        assert not re.fullmatch(pattern, bad), bad
    assert "rate(5 minutes)" in translated["Parameters"]["SweepSchedule"]["ConstraintDescription"]


def test_the_function_may_list_the_upload_bucket_and_head_its_objects_and_nothing_wider(
    translated: dict[str, Any],
) -> None:
    listing, heading = s3_grants(translated, {"ExistingBucketName": "partner-drop"})
    assert listing == {
        "Sid": "ListForTheSweep",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::partner-drop",
    }
    assert heading == {
        "Sid": "HeadObjectForEventsWithoutAnETag",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::partner-drop/*",
    }
    new_bucket = s3_grants(translated, {})
    assert [s["Resource"] for s in new_bucket] == ["arn:aws:s3:::<UploadBucket>", "arn:aws:s3:::<UploadBucket>/*"]
    assert s3_grants(translated, {"CreateUploadBucket": "false"}) == []


def test_a_known_prefix_scopes_the_listing_and_the_reads(translated: dict[str, Any]) -> None:
    for parameters in (
        {"ExistingBucketName": "partner-drop", "ReadPrefix": "landing/"},  # routes
        {"ExistingBucketName": "partner-drop", "UploadPrefix": "landing/"},  # DataflowJobId's filter
    ):
        listing, heading = s3_grants(translated, parameters)
        assert listing["Condition"] == {"StringLike": {"s3:prefix": "landing/*"}}, parameters
        assert heading["Resource"] == "arn:aws:s3:::partner-drop/landing/*", parameters
    both = {"DataflowJobId": "J1", "UploadPrefix": "in/", "ReadPrefix": "landing/"}
    assert refused_by(both | {"NcloudAccessKey": "AK", "NcloudSecretKey": "SK"}, translated) == ["OneReadScope"]


def test_the_function_may_write_only_under_the_manifest_prefix_and_only_when_one_is_given(
    translated: dict[str, Any],
) -> None:
    existing = {"ExistingBucketName": "partner-drop"}
    assert [s for s in s3_grants(translated, existing) if s["Action"] == "s3:PutObject"] == []
    [writing] = [
        s for s in s3_grants(translated, existing | {"ManifestPrefix": "manifests/"}) if s["Action"] == "s3:PutObject"
    ]
    assert writing["Resource"] == "arn:aws:s3:::partner-drop/manifests/*"
    assert translated["Resources"]["ManifestWritePolicy"]["Condition"] == "WritesManifests"
    assert not re.fullmatch(translated["Parameters"]["ManifestPrefix"]["AllowedPattern"], "/manifests/")


def test_no_policy_grants_an_s3_wildcard_or_any_wildcard_action(translated: dict[str, Any]) -> None:
    everything = {"ExistingBucketName": "partner-drop", "ManifestPrefix": "m/", "SweepSchedule": "rate(5 minutes)"}
    for parameters in ({}, everything, everything | {"ReadPrefix": "landing/"}):
        actions = []
        for statement in statements_of(translated, parameters):
            action = statement["Action"]
            actions += action if isinstance(action, list) else [action]
        assert not [a for a in actions if "*" in a], actions
        assert {"s3:ListBucket", "s3:GetObject"} <= set(actions)
    assert "s3:PutObject" not in str(statements_of(translated, {}))


def test_a_sweep_or_object_access_without_a_bucket_is_refused(translated: dict[str, Any]) -> None:
    base = {"DataflowRoutes": "@routes.json", "NcloudAccessKey": "AK", "NcloudSecretKey": "SK"}
    no_bucket = base | {"CreateUploadBucket": "false"}
    for alone in ({"SweepSchedule": "rate(5 minutes)"}, {"ReadPrefix": "in/"}, {"ManifestPrefix": "m/"}):
        assert refused_by(no_bucket | alone, translated) == ["ObjectAccessNeedsABucket"], alone
        assert refused_by(base | alone, translated) == [], alone
        assert refused_by(no_bucket | alone | {"ExistingBucketName": "partner-drop"}, translated) == [], alone
    assert "set ExistingBucketName" in str(translated["Rules"]["ObjectAccessNeedsABucket"])


def test_the_template_passes_cfn_lint() -> None:
    from cfnlint.api import lint_file  # type: ignore[import-untyped]  # cfn-lint ships no type information

    assert [str(match) for match in lint_file(ROOT / "template.yaml")] == []


def test_an_update_that_stops_creating_the_upload_bucket_keeps_it_and_its_queue(translated: dict[str, Any]) -> None:
    # A hostile review of issue 23: a stack deployed with a created bucket, updated with ExistingBucketName, lost
    # its bucket (and, before the existing bucket went through the queue, its queued uploads) on the update.
    both = {"CreateUploadBucket": "true", "ExistingBucketName": "partner-drop"}
    assert not holds("CreateBucket", both, translated)
    bucket = translated["Resources"]["UploadBucket"]
    assert (bucket.get("DeletionPolicy"), bucket.get("UpdateReplacePolicy")) == ("Retain", "Retain")
    queue = translated["Resources"]["UploadQueue"]
    assert "Condition" not in queue or holds(queue["Condition"], both, translated)  # it stays
