"""Runs an unpacked Cloud Functions zip the way the OpenWhisk Python launcher does (dry run, no network)."""

import contextlib
import importlib.util
import io
import json
import os
import sys

root = os.path.abspath(sys.argv[1])
activate = os.path.join(root, "virtualenv", "bin", "activate_this.py")
with open(activate, encoding="utf-8") as source:
    exec(compile(source.read(), activate, "exec"), {"__file__": activate})  # noqa: S102 - the launcher's own step
sys.path.insert(0, root)
spec = importlib.util.spec_from_file_location("action", os.path.join(root, "__main__.py"))
if spec is None or spec.loader is None:
    sys.exit("the zip has no loadable __main__.py")
action = importlib.util.module_from_spec(spec)
# The action's log records go to stdout (its logger takes the stream at import): kept here and shown only
# when the smoke test fails, so a passing build prints no raw logs.
logs = io.StringIO()
with contextlib.redirect_stdout(logs):
    spec.loader.exec_module(action)
    result = action.main({"DATAFLOW_JOB_ID": "SmokeJob1", "DATAFLOW_DRY_RUN": True, "schedule": "nightly"})
if result.get("dryRun") is not True or len(result.get("submitted", [])) != 1:
    sys.exit(f"unexpected result from the zip: {result}\nits log:\n{logs.getvalue()}")
if "boto3" in sys.modules:
    sys.exit("the zip imported boto3")
source_seen = json.dumps(result["submitted"][0]["source"])
print(f"smoke test of the zip passed on Python {sys.version.split()[0]}: {source_seen}")
