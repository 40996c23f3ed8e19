#!/usr/bin/env python3
"""Self-test of the local AWS emulator (stack.py), driven through boto3.

Starts the stack as a subprocess on a free port, runs tasks concurrently and
checks the lifecycle, logs, exit codes, stop handling and API gaps the stack
patches. Exits non-zero on the first failure; always tears the stack down.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

for _k, _v in (
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_SESSION_TOKEN", "testing"),
):
    os.environ[_k] = _v

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GRACE = 2.0
STATE_ORDER = [
    "PROVISIONING", "PENDING", "ACTIVATING", "RUNNING",
    "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED",
]
FAILURES: list[str] = []


def check(cond: bool, what: str) -> None:
    if cond:
        print(f"ok   {what}", file=sys.stderr)
    else:
        print(f"FAIL {what}", file=sys.stderr)
        FAILURES.append(what)


def start_stack(stderr_file: Any) -> tuple[subprocess.Popen, dict[str, Any]]:
    proc = subprocess.Popen(
        [
            sys.executable, os.path.join(HERE, "stack.py"),
            "--port", "0",
            "--companion", "/usr/bin/env",
            "--database-url", "postgres://selftest@127.0.0.1:1/selftest",
            "--encryption-key", "k1:" + "A" * 43 + "=",
            "--stop-grace-seconds", str(GRACE),
            "--log-batch-seconds", "0.2",
            "--state-delay-seconds", "0.1",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready:
        raise RuntimeError("stack did not print its ready line within 30 s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("stack exited before it was ready")
    return proc, json.loads(line)


def stop_stack(proc: subprocess.Popen) -> int | None:
    try:
        if proc.stdin:
            proc.stdin.close()  # stdin EOF is the shutdown signal
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


class Watch:
    """Follows one task with DescribeTasks and records every state seen."""

    def __init__(self, name: str, task: dict[str, Any]):
        self.name = name
        self.arn = task["taskArn"]
        self.id = self.arn.split("/")[-1]
        self.first = task
        self.states = [task["lastStatus"]]
        self.last = task
        self.seen: list[dict[str, Any]] = [task]

    def update(self, task: dict[str, Any]) -> None:
        self.last = task
        self.seen.append(task)
        if task["lastStatus"] != self.states[-1]:
            self.states.append(task["lastStatus"])

    @property
    def done(self) -> bool:
        return self.last["lastStatus"] == "STOPPED"


def container(task: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in task["containers"] if c["name"] == name)


def read_stream(logs: Any, group: str, stream: str) -> tuple[list[str], int]:
    """Reads a whole stream the way a follower must: until the token repeats."""
    messages: list[str] = []
    token = None
    biggest_page = 0
    while True:
        kw: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        if token:
            kw["nextToken"] = token
        page = logs.get_log_events(**kw)
        biggest_page = max(biggest_page, len(page["events"]))
        messages += [e["message"] for e in page["events"]]
        if page["nextForwardToken"] == token:
            return messages, biggest_page
        token = page["nextForwardToken"]


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def states_in_order(states: list[str]) -> bool:
    idx = [STATE_ORDER.index(s) for s in states]
    return idx == sorted(idx)


def run(ready: dict[str, Any]) -> None:
    check(ready.get("ready") is True, "ready line says ready")
    check(len(ready.get("subnets", [])) == 2 and ready.get("security_group", "").startswith("sg-"),
          "ready line has two subnets and a security group")
    kw = {
        "endpoint_url": ready["endpoint"],
        "region_name": ready["region"],
        "config": Config(retries={"max_attempts": 1}),
    }
    ecs = boto3.client("ecs", **kw)
    logs = boto3.client("logs", **kw)
    cluster = ready["cluster"]
    group = ready["log_group"]
    net = {"awsvpcConfiguration": {
        "subnets": ready["subnets"], "securityGroups": [ready["security_group"]],
        "assignPublicIp": "DISABLED"}}

    def run_task(family: str, command: list[str] | None = None, started_by: str | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {
            "cluster": cluster, "taskDefinition": family, "launchType": "FARGATE",
            "networkConfiguration": net,
        }
        if command is not None:
            args["overrides"] = {"containerOverrides": [{"name": "admin", "command": command}]}
        if started_by:
            args["startedBy"] = started_by
        res = ecs.run_task(**args)
        assert not res["failures"], res["failures"]
        return res["tasks"][0]

    # Everything starts at once so the whole test stays fast.
    watches = {
        "lines": Watch("lines", run_task(
            "everruns-admin-generic",
            ["sh", "-c", "for i in $(seq 1 20000); do echo line $i; done; exit 42"])),
        "printf": Watch("printf", run_task(
            "everruns-admin-generic", ["printf", "%s\\n", "two  spaces", "*"])),
        "companion": Watch("companion", run_task("everruns-admin")),
        "badsecret": Watch("badsecret", run_task("everruns-admin-badsecret")),
        "badimage": Watch("badimage", run_task("everruns-admin-badimage")),
        "sleep": Watch("sleep", run_task("everruns-admin-generic", ["sleep", "60"], started_by="selftest-sleep")),
        "stubborn": Watch("stubborn", run_task(
            "everruns-admin-generic", ["sh", "-c", "trap '' TERM; echo ignoring TERM; sleep 60"])),
        "early": Watch("early", run_task("everruns-admin-generic", ["sleep", "60"])),
        "onpath": Watch("onpath", run_task("everruns-admin-generic", ["everruns-admin", "ON_PATH=yes"])),
        "ticks": Watch("ticks", run_task(
            "everruns-admin-generic", ["sh", "-c", "for i in $(seq 1 40); do echo tick $i; sleep 0.02; done"])),
    }
    # A live follower on "ticks", the way the launcher tails while the task runs.
    follow: dict[str, Any] = {"token": None, "msgs": [], "missing": 0, "empty": 0, "done": False}

    def follow_ticks() -> None:
        if follow["done"]:
            return
        kw2: dict[str, Any] = {"logGroupName": group, "logStreamName": f"admin/admin/{watches['ticks'].id}",
                               "startFromHead": True}
        if follow["token"]:
            kw2["nextToken"] = follow["token"]
        try:
            page = logs.get_log_events(**kw2)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ResourceNotFoundException", e.response
            follow["missing"] += 1
            return
        follow["msgs"] += [e["message"] for e in page["events"]]
        if not page["events"]:
            follow["empty"] += 1
        repeated = page["nextForwardToken"] == follow["token"]
        follow["token"] = page["nextForwardToken"]
        # Only once the container's exit code is known is the stream complete.
        if repeated and watches["ticks"].done:
            follow["done"] = True

    # RunTask reply: a fresh task, nothing has run.
    first = watches["lines"].first
    check(first["lastStatus"] == "PROVISIONING" and first["desiredStatus"] == "RUNNING",
          "RunTask reply is PROVISIONING / desired RUNNING")
    check(all("exitCode" not in c for c in first["containers"]), "no exitCode before the container ran")
    check("stoppedReason" not in first and "stopCode" not in first, "no empty stoppedReason/stopCode")
    check("startedBy" not in first, "unset startedBy is omitted, not an empty string")
    check(watches["sleep"].first.get("startedBy") == "selftest-sleep", "startedBy is kept when set")
    check(isinstance(first.get("createdAt"), object) and "createdAt" in first, "createdAt present")
    check(all(isinstance(c.get("cpu"), str) and isinstance(c.get("memory"), str) for c in first["containers"]),
          "containers[].cpu/memory are strings in RunTask")
    check(first["containers"][0]["name"] == "sidecar", "generic family lists the sidecar first")

    # StopTask before the container runs.
    stopped_early = ecs.stop_task(cluster=cluster, task=watches["early"].arn, reason="too soon")["task"]
    check(stopped_early["desiredStatus"] == "STOPPED", "StopTask sets desiredStatus STOPPED at once")

    # Wait for "sleep"/"stubborn" to run, then stop them.
    stop_sent: dict[str, float] = {}

    def poll() -> None:
        pending = [w for w in watches.values() if not w.done]
        if not pending:
            return
        res = ecs.describe_tasks(cluster=cluster, tasks=[w.arn for w in pending])
        by_arn = {t["taskArn"]: t for t in res["tasks"]}
        for w in pending:
            if w.arn in by_arn:
                w.update(by_arn[w.arn])
        for name in ("sleep", "stubborn"):
            w = watches[name]
            if name not in stop_sent and container(w.last, "admin")["lastStatus"] == "RUNNING":
                if name == "sleep":
                    listed = ecs.list_tasks(cluster=cluster)["taskArns"]
                    check(w.arn in listed, "ListTasks (default RUNNING) lists a running task")
                    mine = ecs.list_tasks(cluster=cluster, startedBy="selftest-sleep")["taskArns"]
                    check(mine == [w.arn], "ListTasks startedBy filter")
                    check("exitCode" not in container(w.last, "admin"), "no exitCode while running")
                    check(bool(container(w.last, "admin").get("runtimeId")), "running container has a runtimeId")
                    check("startedAt" in w.last, "startedAt present when RUNNING")
                ecs.stop_task(cluster=cluster, task=w.arn, reason=f"selftest stop {name}")
                stop_sent[name] = time.time()

    deadline = time.time() + 45
    while time.time() < deadline and not (all(w.done for w in watches.values()) and follow["done"]):
        poll()
        follow_ticks()
        time.sleep(0.05)
    stop_done = {n: time.time() for n in stop_sent}
    for w in watches.values():
        check(w.done, f"{w.name}: reached STOPPED (states {w.states})")
        check(states_in_order(w.states), f"{w.name}: states in lifecycle order")
        check(w.last["desiredStatus"] == "STOPPED", f"{w.name}: desiredStatus STOPPED")
        check("stoppedAt" in w.last and "stoppingAt" in w.last, f"{w.name}: stop timestamps present")
    if FAILURES:
        return

    # 20,000 lines, exit 42, named container.
    w = watches["lines"]
    check({"PENDING", "ACTIVATING", "RUNNING", "STOPPED"} <= set(w.states), "lines: saw PENDING, ACTIVATING, RUNNING")
    check(w.last["containers"][0]["name"] == "sidecar" and w.last["containers"][0].get("exitCode") == 0,
          "lines: containers[0] is the sidecar, exit 0")
    check(container(w.last, "admin").get("exitCode") == 42, "lines: admin exitCode 42")
    check(w.last.get("stopCode") == "EssentialContainerExited", "lines: stopCode EssentialContainerExited")
    check(w.last.get("stoppedReason") == "Essential container in task exited", "lines: stoppedReason")
    for key in ("createdAt", "pullStartedAt", "pullStoppedAt", "startedAt", "stoppingAt",
                "executionStoppedAt", "stoppedAt"):
        check(key in w.last, f"lines: {key} present")
    check(all(isinstance(c.get("cpu"), str) and isinstance(c.get("memory"), str)
              for t in w.seen for c in t["containers"]), "containers[].cpu/memory are strings in DescribeTasks")
    exit_seen_before_stop = [t for t in w.seen if "exitCode" in container(t, "admin")]
    check(all(container(t, "admin")["lastStatus"] == "STOPPED" for t in exit_seen_before_stop),
          "exitCode only appears once the container STOPPED")
    msgs, biggest = read_stream(logs, group, f"admin/admin/{w.id}")
    check(len(msgs) == 20000, f"lines: 20000 events in admin/admin/<id> (got {len(msgs)})")
    check(msgs == [f"line {i}" for i in range(1, 20001)], "lines: all lines in order")
    check(biggest <= 10000, f"lines: GetLogEvents pages hold at most 10,000 events (max {biggest})")
    side, _ = read_stream(logs, group, f"admin/sidecar/{w.id}")
    check(side == ["sidecar started"], "lines: sidecar logs to its own stream")
    # At the end, the forward token must come back unchanged, also with a limit.
    p0 = logs.get_log_events(logGroupName=group, logStreamName=f"admin/admin/{w.id}",
                             startFromHead=True, limit=10000)
    p1 = logs.get_log_events(logGroupName=group, logStreamName=f"admin/admin/{w.id}",
                             startFromHead=True, limit=9999, nextToken=p0["nextForwardToken"])
    p2 = logs.get_log_events(logGroupName=group, logStreamName=f"admin/admin/{w.id}",
                             startFromHead=True, nextToken=p1["nextForwardToken"])
    p3 = logs.get_log_events(logGroupName=group, logStreamName=f"admin/admin/{w.id}",
                             startFromHead=True, nextToken=p2["nextForwardToken"])
    check([e["message"] for e in p2["events"]] == ["line 20000"] and p3["events"] == []
          and p3["nextForwardToken"] == p2["nextForwardToken"], "forward token repeats at the end")

    # Live tail: every line exactly once, in order.
    check(follow["done"] and follow["msgs"] == [f"tick {i}" for i in range(1, 41)],
          f"ticks: live follower got every line once, in order "
          f"(missing-stream {follow['missing']}, empty pages {follow['empty']})")

    # Arguments byte for byte.
    w = watches["printf"]
    msgs, _ = read_stream(logs, group, f"admin/admin/{w.id}")
    check(msgs == ["two  spaces", "*"], f"printf: exact arguments (got {msgs})")
    check(container(w.last, "admin").get("exitCode") == 0, "printf: exit 0")

    # The companion image gets the secrets injected (the companion here is env).
    w = watches["companion"]
    msgs, _ = read_stream(logs, group, f"admin/admin/{w.id}")
    env = dict(m.split("=", 1) for m in msgs if "=" in m)
    check(env.get("DATABASE_URL") == "postgres://selftest@127.0.0.1:1/selftest", "companion: DATABASE_URL from secret")
    check(env.get("SECRETS_ENCRYPTION_KEY", "").startswith("k1:"), "companion: SECRETS_ENCRYPTION_KEY from secret")
    check("SECRETS_ENCRYPTION_KEY_PREVIOUS" not in env, "companion: no previous key when not given")
    check(env.get("RUST_LOG") == "info", "companion: RUST_LOG from the task definition")
    check(container(w.last, "admin").get("exitCode") == 0, "companion: exit 0")

    # Every container sees the companion on PATH as everruns-admin (here: env).
    w = watches["onpath"]
    msgs, _ = read_stream(logs, group, f"admin/admin/{w.id}")
    check("ON_PATH=yes" in msgs and container(w.last, "admin").get("exitCode") == 0,
          "the companion is on PATH as everruns-admin")

    # Start failures.
    w = watches["badsecret"]
    check(w.last.get("stopCode") == "TaskFailedToStart", "badsecret: TaskFailedToStart")
    check(w.last.get("stoppedReason", "").startswith("ResourceInitializationError: unable to pull secrets"),
          "badsecret: ResourceInitializationError")
    check(all("exitCode" not in c for c in w.last["containers"]), "badsecret: no exitCode")
    check("RUNNING" not in w.states, "badsecret: never RUNNING")
    w = watches["badimage"]
    check(w.last.get("stopCode") == "TaskFailedToStart", "badimage: TaskFailedToStart")
    check(container(w.last, "admin").get("reason", "").startswith("CannotPullContainerError:"),
          "badimage: CannotPullContainerError")
    check(all("exitCode" not in c for c in w.last["containers"]), "badimage: no exitCode")

    # StopTask.
    w = watches["sleep"]
    check(w.last.get("stopCode") == "UserInitiated", "sleep: UserInitiated")
    check(w.last.get("stoppedReason") == "selftest stop sleep", "sleep: stoppedReason is the given reason")
    check(container(w.last, "admin").get("exitCode") == 143, "sleep: exit 143 after SIGTERM")
    check(stop_done["sleep"] - stop_sent["sleep"] < GRACE + 2, "sleep: stopped within the grace")
    w = watches["stubborn"]
    check(container(w.last, "admin").get("exitCode") == 137, "stubborn: SIGKILL after the grace, exit 137")
    check(stop_done["stubborn"] - stop_sent["stubborn"] >= GRACE, "stubborn: waited the grace")
    w = watches["early"]
    check(w.last.get("stopCode") == "UserInitiated" and w.last.get("stoppedReason") == "too soon",
          "early stop: UserInitiated with reason")
    check(all("exitCode" not in c for c in w.last["containers"]), "early stop: no exitCode")
    check("RUNNING" not in w.states, "early stop: never RUNNING")

    # ListTasks with desiredStatus.
    running = ecs.list_tasks(cluster=cluster)["taskArns"]
    stopped = ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"]
    check(watches["sleep"].arn not in running, "ListTasks RUNNING omits stopped tasks")
    check({x.arn for x in watches.values()} <= set(stopped), "ListTasks STOPPED lists stopped tasks")

    # Unknown tasks.
    bogus = "0123456789abcdef0123456789abcdef"
    res = ecs.describe_tasks(cluster=cluster, tasks=[bogus, watches["printf"].arn])
    check([f["reason"] for f in res["failures"]] == ["MISSING"] and bogus in res["failures"][0]["arn"]
          and len(res["tasks"]) == 1, "DescribeTasks unknown id -> failures MISSING")
    try:
        ecs.stop_task(cluster=cluster, task=bogus)
        check(False, "StopTask unknown task fails")
    except ClientError as e:
        check(e.response["Error"]["Code"] == "InvalidParameterException"
              and e.response["ResponseMetadata"]["HTTPStatusCode"] == 400,
              f"StopTask unknown task -> 400 InvalidParameterException ({e.response['Error']})")
    try:
        logs.get_log_events(logGroupName=group, logStreamName="admin/admin/" + bogus, startFromHead=True)
        check(False, "GetLogEvents on a missing stream fails")
    except ClientError as e:
        check(e.response["Error"]["Code"] == "ResourceNotFoundException", "GetLogEvents missing stream -> ResourceNotFoundException")
    try:
        ecs.run_task(cluster=cluster, taskDefinition="everruns-admin-generic", launchType="FARGATE",
                     networkConfiguration=net,
                     overrides={"containerOverrides": [{"name": "nope", "command": ["true"]}]})
        check(False, "RunTask with an unknown override container fails")
    except ClientError as e:
        check(e.response["Error"]["Code"] == "InvalidParameterException", "RunTask unknown override container -> InvalidParameterException")


def main() -> int:
    started = time.time()
    with tempfile.TemporaryFile() as errlog:
        proc = None
        try:
            proc, ready = start_stack(errlog)
            run(ready)
        except Exception as e:  # any crash is a failure too
            import traceback
            traceback.print_exc()
            FAILURES.append(f"exception: {e!r}")
        finally:
            if proc is not None:
                rc = stop_stack(proc)
                check(rc == 0, f"stack exits 0 on stdin EOF (rc={rc})")
        if FAILURES:
            errlog.seek(0)
            tail = errlog.read().decode(errors="replace").splitlines()[-60:]
            print("---- stack stderr (tail) ----", file=sys.stderr)
            print("\n".join(tail), file=sys.stderr)
    elapsed = time.time() - started
    if FAILURES:
        print(f"\n{len(FAILURES)} check(s) failed in {elapsed:.1f}s:", file=sys.stderr)
        for f in FAILURES:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print(f"\nall checks passed in {elapsed:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
