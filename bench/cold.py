"""One cold start, run as a fresh process by bench/submit.py: `cold.py MODE [DIR]`, configured by environment."""

# Only the standard library before the measured imports: whatever this file loads is charged to every mode.
import json
import os
import sys
import time

MODE = sys.argv[1]
EVENT = json.loads(os.environ["BENCH_EVENT"])


class Context:
    """The attributes of a Lambda context that the handler and Powertools read."""

    function_name = "dataflow-launcher"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:dataflow-launcher"
    aws_request_id = "0c7f9c3e-cold"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def reference() -> int:
    """The smallest program doing the same job: import requests and Logger, sign, post once, log once."""
    import base64
    import hashlib
    import hmac

    import requests
    from aws_lambda_powertools import Logger

    logger = Logger(service="reference")
    access, secret = os.environ["NCLOUD_ACCESS_KEY"], os.environ["NCLOUD_SECRET_KEY"]
    path = f"/api/v1/jobs/{os.environ['DATAFLOW_JOB_ID']}/executions"
    timestamp = str(int(time.time() * 1000))
    message = f"POST {path}\n{timestamp}\n{access}".encode()
    signature = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()
    headers = {
        "x-ncp-apigw-timestamp": timestamp,
        "x-ncp-iam-access-key": access,
        "x-ncp-apigw-signature-v2": signature,
        "Content-Type": "application/json",
    }
    body = json.dumps({"parameters": {"$input": "raw-data/incoming/orders/2026-11-28.csv"}})
    answer = requests.post(os.environ["DATAFLOW_ENDPOINT"] + path, data=body, headers=headers, timeout=10)
    answer.raise_for_status()
    logger.info("submitted", extra={"jobExecutionId": answer.json()["jobExecutionId"]})
    return 1


def lambda_handler(root: str) -> int:
    sys.path.insert(0, root)  # where the Lambda runtime puts /var/task
    from handler.app import lambda_handler as handle

    return len(handle(EVENT, Context())["submitted"])


def ncp_action(root: str) -> int:
    # What the OpenWhisk Python launcher does with an unpacked zip: activate, import __main__, call main(args).
    import importlib.util

    activate = os.path.join(root, "virtualenv", "bin", "activate_this.py")
    with open(activate, encoding="utf-8") as source:
        exec(compile(source.read(), activate, "exec"), {"__file__": activate})  # noqa: S102 - the launcher's step
    sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location("__main__action", os.path.join(root, "__main__.py"))
    assert spec is not None
    assert spec.loader is not None
    action = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(action)
    return len(action.main(EVENT)["submitted"])


if __name__ == "__main__":
    if MODE == "reference":
        submitted = reference()
    elif MODE == "ncp":
        submitted = ncp_action(sys.argv[2])
    else:
        submitted = lambda_handler(sys.argv[2])
    if submitted != 1:
        sys.exit(f"{MODE}: expected one submission, got {submitted}")
    # The platform answers here; the interpreter's teardown that follows is nobody's wait.
    os.write(int(os.environ["BENCH_SERVED_FD"]), b"served\n")
    with open("/proc/self/status", encoding="ascii") as status:  # VmHWM: this process's peak resident set
        peak = next((line.split()[1] for line in status if line.startswith("VmHWM:")), "0")
    sys.stderr.write(f"peak-rss-kb={peak}\n")
