"""template.yaml through the real SAM transform, offline: every event source, the secret, the settings."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
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


def resolve(value: Any, parameters: Mapping[str, Any], template: Mapping[str, Any]) -> Any:
    """Evaluates the intrinsic functions the template's conditions use, for given parameter values."""
    if isinstance(value, dict) and len(value) == 1:
        [(name, argument)] = value.items()
        if name == "Ref":
            default = template["Parameters"].get(argument, {}).get("Default")
            return parameters.get(argument, default)
        if name == "Fn::Equals":
            left, right = (resolve(item, parameters, template) for item in argument)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not resolve(argument[0], parameters, template)
        if name == "Fn::Or":
            return any(resolve(item, parameters, template) for item in argument)
        if name == "Fn::And":
            return all(resolve(item, parameters, template) for item in argument)
        if name == "Condition":
            return resolve(template["Conditions"][argument], parameters, template)
    return value


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


def test_an_existing_bucket_is_an_optional_eventbridge_rule(translated: dict[str, Any]) -> None:
    rule = translated["Resources"]["ExistingBucketRule"]
    assert rule["Condition"] == "UseExistingBucket"
    assert rule["Properties"]["EventPattern"]["detail-type"] == ["Object Created"]
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["LauncherFunction", "Arn"]}
    assert translated["Resources"]["ExistingBucketPermission"]["Condition"] == "UseExistingBucket"
    assert not holds("UseExistingBucket", {}, translated)
    assert holds("UseExistingBucket", {"ExistingBucketName": "my-data"}, translated)


def test_each_schedule_is_a_scheduler_schedule_with_retries_a_dlq_and_the_input_the_handler_reads(
    translated: dict[str, Any],
) -> None:
    schedules = resources_of(translated, "AWS::Scheduler::Schedule")
    assert sorted(schedules) == ["Schedule1", "Schedule2", "Schedule3"]
    assert [schedules[name]["Condition"] for name in sorted(schedules)] == [
        "HasSchedule1",
        "HasSchedule2",
        "HasSchedule3",
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
    created = ("UploadBucket", "UploadQueue", "UploadQueuePolicy", "UploadDeadLetterQueue", "UploadsMapping")
    for name in (*created, "UploadQueueReadPolicy"):
        assert translated["Resources"][name]["Condition"] == "CreateBucket", name
    assert holds("CreateBucket", {"CreateUploadBucket": "false"}, translated) is False
    assert holds("CreateBucket", {}, translated) is True


def test_an_existing_bucket_named_replaces_the_new_one(translated: dict[str, Any]) -> None:
    existing = {"ExistingBucketName": "partner-drop"}
    assert holds("CreateBucket", existing, translated) is False
    assert holds("CreateBucket", existing | {"CreateUploadBucket": "true"}, translated) is False
    assert holds("UseExistingBucket", existing, translated) is True
    for name in ("UploadBucketName", "UploadQueueUrl", "UploadDeadLetterQueueArn"):
        assert translated["Outputs"][name]["Condition"] == "CreateBucket"


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
