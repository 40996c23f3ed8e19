#!/usr/bin/env python3
"""Local AWS emulator for end-to-end tests of the admin launcher.

moto's server provides the AWS APIs (ECS, EC2, CloudWatch Logs, Secrets
Manager); an in-process "ECS agent" thread owns the task lifecycle and really
runs each task's containers as local processes, shipping their output to
CloudWatch Logs the way the awslogs driver does.

Prints one JSON "ready" line on stdout, then serves until stdin reaches EOF or
SIGTERM/SIGINT arrives. Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import random
import re
import secrets as pysecrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import types
import time
import uuid
from datetime import datetime, timezone
from typing import Any

# The in-process boto3 clients used for setup need some credentials; moto
# accepts anything.
for _k, _v in (
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_SESSION_TOKEN", "testing"),
):
    os.environ.setdefault(_k, _v)

import boto3  # noqa: E402
from moto.backends import get_backend  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from moto.ecs import models as ecs_models  # noqa: E402
from moto.ecs.exceptions import EcsClientException, InvalidParameterException  # noqa: E402
from moto.ecs.exceptions import TaskDefinitionNotFoundException  # noqa: E402
from moto.ecs.responses import EC2ContainerServiceResponse  # noqa: E402
from moto.logs import models as logs_models  # noqa: E402
from moto.logs.exceptions import ResourceNotFoundException as LogsNotFound  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

import authorization  # noqa: E402  (beside this file)
import sessions  # noqa: E402

LOG = logging.getLogger("emulator")

ADMIN_IMAGE = "everruns-admin:local"
SHELL_IMAGE = "local/shell"
UNPULLABLE_PREFIX = "registry.invalid/"
CAPACITY_UNAVAILABLE = (
    "Capacity is unavailable at this time. Please try again later or in a different availability zone"
)

STOP_SEQUENCE = ["DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]

# awslogs limits: one event is at most 256 KiB minus 26 bytes of overhead,
# one batch at most 10,000 events or 1 MiB.
MAX_EVENT_BYTES = 262144 - 26
MAX_BATCH_EVENTS = 10000
MAX_BATCH_BYTES = 1048576

# A start that failed for want of a network interface in time: transient, ECS's
# stopped reason for it (the same task definition starts on another try).
ENI_TIMEOUT = (
    "ResourceInitializationError: failed to configure ENI: "
    "Timeout waiting for network interface provisioning to complete."
)

SECRET_NOT_FOUND = (
    "ResourceInitializationError: unable to pull secrets or registry auth: "
    "execution resource retrieval failed: unable to retrieve secret from asm: "
    "service call has been retried 1 time(s): ResourceNotFoundException: "
    "Secrets Manager can't find the specified secret."
)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def now_ms() -> int:
    return int(time.time() * 1000)


class StartFailure(Exception):
    """The task cannot reach RUNNING; carries ECS's wording."""

    def __init__(self, stopped_reason: str, container_reasons: dict[str, str]):
        super().__init__(stopped_reason)
        self.stopped_reason = stopped_reason
        self.container_reasons = container_reasons


class ContainerRun:
    def __init__(self, task: "AgentTask", defn: dict[str, Any]):
        self.task = task
        self.defn = defn
        self.name: str = defn.get("name", "")
        self.image: str = defn.get("image", "")
        self.essential: bool = bool(defn.get("essential", True))
        self.arn = (
            f"arn:aws:ecs:{task.region}:{task.account}:container/"
            f"{task.cluster_name}/{task.id}/{uuid.uuid4()}"
        )
        self.last_status = "PENDING"
        self.exit_code: int | None = None
        # ECS sometimes has no exit code for a container that ran (a lost host, a
        # Docker timeout): a container labelled emulator.loses-exit-code=true exits
        # without one in DescribeTasks.
        self.exit_code_lost = False
        self.reason: str | None = None
        self.runtime_id: str | None = None
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self.buf: list[tuple[int, str]] = []
        self.buf_lock = threading.Lock()
        self.last_flush = 0.0
        self.last_ts = 0
        self.exited_at: float | None = None  # main process gone, draining output
        self.finalized = False
        self.log_group: str | None = None
        self.log_stream: str | None = None
        # The process's environment and directory, for ECS Exec sessions in it.
        self.env: dict[str, str] = {}
        self.cwd: str | None = None
        self.override: dict[str, Any] = {}
        for o in (task.overrides.get("containerOverrides") or []):
            if o.get("name") == self.name:
                self.override = o

    # -- awslogs ---------------------------------------------------------
    def awslogs_options(self) -> dict[str, str] | None:
        lc = self.defn.get("logConfiguration") or {}
        if lc.get("logDriver") != "awslogs":
            return None
        return dict(lc.get("options") or {})

    def read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            ts = now_ms()
            line = raw[:-1] if raw.endswith(b"\n") else raw
            # The driver drops empty lines and splits oversized ones.
            while line:
                chunk, line = line[:MAX_EVENT_BYTES], line[MAX_EVENT_BYTES:]
                text = chunk.decode("utf-8", errors="replace")
                with self.buf_lock:
                    self.buf.append((ts, text))
        self.proc.stdout.close()

    def take_buffer(self) -> list[tuple[int, str]]:
        with self.buf_lock:
            out, self.buf = self.buf, []
        return out


class AgentTask:
    def __init__(self, agent: "Agent", moto_task: Any, td: Any, params: dict[str, Any]):
        self.agent = agent
        self.moto_task = moto_task
        self.td = td
        self.arn: str = moto_task.task_arn
        self.id: str = moto_task.id
        self.account: str = moto_task._account_id
        self.region: str = moto_task.region_name
        self.cluster_name: str = moto_task.cluster_name
        self.cluster_arn: str = moto_task.cluster_arn
        self.overrides: dict[str, Any] = dict(params.get("overrides") or {})
        self.overrides.setdefault("containerOverrides", [])
        self.overrides.setdefault("inferenceAcceleratorOverrides", [])
        self.started_by: str = params.get("startedBy") or ""
        self.group: str = moto_task.group
        self.launch_type: str = params.get("launchType") or "FARGATE"
        self.capacity_provider: str | None = params.get("capacityProviderName")
        self.platform_version: str = params.get("platformVersion") or "1.4.0"
        self.tags: list[dict[str, str]] = params.get("tags") or []
        self.enable_exec: bool = bool(params.get("enableExecuteCommand"))
        self.attachments = moto_task.attachments
        self.last_status = "PROVISIONING"
        self.desired_status = "RUNNING"
        self.stop_code: str | None = None
        self.stopped_reason: str | None = None
        self.version = 1
        self.times: dict[str, float] = {"createdAt": time.time()}
        self.containers = [ContainerRun(self, d) for d in td.container_definitions]
        self.phase = "starting"  # starting -> running -> finishing -> stopped
        self.queue = ["PENDING", "ACTIVATING", "RUNNING"]
        self.next_at = time.time() + agent.delay("PROVISIONING")
        self.kill_at: float | None = None
        self.workdir: str | None = None
        self.sync_moto()

    def set_status(self, status: str) -> None:
        self.last_status = status
        self.version += 1
        self.sync_moto()
        LOG.info("task %s: %s", self.id, status)

    def sync_moto(self) -> None:
        # Keep moto's own model coherent for any API we do not take over.
        self.moto_task.status = self.last_status
        self.moto_task.desired_status = self.desired_status
        self.moto_task.stopped_reason = self.stopped_reason or ""

    def container(self, name: str) -> ContainerRun | None:
        return next((c for c in self.containers if c.name == name), None)

    # -- rendering -------------------------------------------------------
    def render(self, include_tags: bool = False) -> dict[str, Any]:
        td = self.td
        d: dict[str, Any] = {
            "taskArn": self.arn,
            "clusterArn": self.cluster_arn,
            "taskDefinitionArn": td.arn,
            "lastStatus": self.last_status,
            "desiredStatus": self.desired_status,
            "cpu": str(td.cpu) if td.cpu is not None else None,
            "memory": str(td.memory) if td.memory is not None else None,
            "launchType": self.launch_type,
            "platformVersion": self.platform_version,
            "platformFamily": "Linux",
            "group": self.group,
            "overrides": self.overrides,
            "attachments": self.attachments,
            "availabilityZone": f"{self.region}a",
            "healthStatus": "UNKNOWN",
            "version": self.version,
            "enableExecuteCommand": self.enable_exec,
            "ephemeralStorage": {"sizeInGiB": 20},
            "containers": [self.render_container(c) for c in self.containers],
        }
        if self.capacity_provider:
            d["capacityProviderName"] = self.capacity_provider
        if "connectivityAt" in self.times:
            d["connectivity"] = "CONNECTED"
        # Real ECS omits these rather than sending empty strings.
        if self.started_by:
            d["startedBy"] = self.started_by
        if self.stop_code:
            d["stopCode"] = self.stop_code
        if self.stopped_reason:
            d["stoppedReason"] = self.stopped_reason
        for key, ts in self.times.items():
            d[key] = utc(ts)
        if include_tags:
            d["tags"] = self.tags
        return d

    def render_container(self, c: ContainerRun) -> dict[str, Any]:
        d: dict[str, Any] = {
            "containerArn": c.arn,
            "taskArn": self.arn,
            "name": c.name,
            "image": c.image,
            "lastStatus": c.last_status,
            "healthStatus": "UNKNOWN",
            # The API models these as strings; the Rust SDK insists.
            "cpu": str(c.defn.get("cpu", 0)),
            "networkInterfaces": [],
        }
        if c.defn.get("memory") is not None:
            d["memory"] = str(c.defn["memory"])
        if c.defn.get("memoryReservation") is not None:
            d["memoryReservation"] = str(c.defn["memoryReservation"])
        if self.attachments:
            details = {x["name"]: x["value"] for x in self.attachments[0]["details"]}
            d["networkInterfaces"] = [
                {
                    "attachmentId": self.attachments[0]["id"],
                    "privateIpv4Address": details.get("privateIPv4Address"),
                }
            ]
        if c.runtime_id:
            d["runtimeId"] = c.runtime_id
        if c.exit_code is not None and not c.exit_code_lost:
            d["exitCode"] = c.exit_code
        if c.reason:
            d["reason"] = c.reason
        if self.enable_exec:
            agent_status = {"PENDING": "PENDING", "RUNNING": "RUNNING"}.get(
                c.last_status, "STOPPED"
            )
            agent_d: dict[str, Any] = {"name": "ExecuteCommandAgent", "lastStatus": agent_status}
            if "startedAt" in self.times:
                agent_d["lastStartedAt"] = utc(self.times["startedAt"])
            d["managedAgents"] = [agent_d]
        return d


class Agent:
    def __init__(self, args: argparse.Namespace):
        self.lock = threading.RLock()
        self.tasks: dict[str, AgentTask] = {}
        self.client_tokens: dict[tuple[str, str, str], list[str]] = {}
        self.state_delay: float = args.state_delay_seconds
        self.state_delays: dict[str, float] = args.state_delays
        self.log_batch: float = args.log_batch_seconds
        self.final_flush_delay: float = args.final_flush_delay_seconds
        self.stop_grace: float = args.stop_grace_seconds
        self.capacity_failures: int = args.capacity_failures
        self.start_failures: int = args.start_failures
        self.forget_after: float = args.forget_stopped_after_seconds
        self.spot_after: float | None = args.spot_interruption_after_seconds
        self.companion: str = os.path.abspath(args.companion) if os.sep in args.companion else args.companion
        self.admin_entrypoint: str = args.admin_image_entrypoint
        # The admin image under each name it can be pulled by: the local one, and its
        # tag pushed to the emulated ECR. Any other image cannot be pulled.
        self.admin_images: set[str] = {ADMIN_IMAGE}
        self.sessions = sessions.Sessions(self.find)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="ecs-agent", daemon=True)
        self.tmpdir = tempfile.mkdtemp(prefix="ecs-emulator-")
        # The admin image's filesystem: the companion installed on PATH under
        # its own name, so a command override may name it either way.
        self.image_bin = os.path.join(self.tmpdir, "bin")
        os.makedirs(self.image_bin)
        companion_path = shutil.which(self.companion) or self.companion
        os.symlink(companion_path, os.path.join(self.image_bin, "everruns-admin"))

    # -- backends ----------------------------------------------------------
    @staticmethod
    def backend(service: str, account: str, region: str) -> Any:
        return get_backend(service)[account][region]

    def delay(self, status: str) -> float:
        """How long a task stays in `status` (Fargate: DEPROVISIONING takes longest)."""
        return self.state_delays.get(status, self.state_delay)

    # -- main loop -----------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def loop(self) -> None:
        while not self.stop_event.is_set():
            with self.lock:
                now = time.time()
                for t in list(self.tasks.values()):
                    try:
                        self.step(t, now)
                    except Exception:  # keep the agent alive whatever happens
                        LOG.exception("agent step failed for task %s", t.id)
            self.stop_event.wait(0.02)

    def shutdown(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)
        with self.lock:
            for t in self.tasks.values():
                for c in t.containers:
                    if c.proc is not None and c.proc.poll() is None:
                        self.kill_group(c, signal.SIGKILL)
            for t in self.tasks.values():
                for c in t.containers:
                    if c.proc is not None:
                        try:
                            c.proc.wait(timeout=5)
                        except subprocess.TimeoutExpired:
                            pass
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def step(self, t: AgentTask, now: float) -> None:
        for c in t.containers:
            if c.exited_at is not None and not c.finalized:
                self.finalize_logs(c, now)
        if t.phase == "starting":
            if now < t.next_at:
                return
            nxt = t.queue.pop(0)
            t.next_at = now + self.delay(nxt)
            if nxt == "PENDING":
                t.times["pullStartedAt"] = now
                t.times["connectivityAt"] = now
                t.set_status("PENDING")
            elif nxt == "ACTIVATING":
                try:
                    self.check_start(t)
                except StartFailure as f:
                    self.fail_start(t, f, now)
                    return
                t.times["pullStoppedAt"] = now
                t.set_status("ACTIVATING")
            elif nxt == "RUNNING":
                try:
                    self.start_containers(t, now)
                except StartFailure as f:
                    self.fail_start(t, f, now)
                    return
                t.times["startedAt"] = now
                t.phase = "running"
                t.set_status("RUNNING")
        elif t.phase == "running":
            self.step_running(t, now)
        elif t.phase == "finishing":
            if now < t.next_at:
                return
            if t.queue[0] == "STOPPED" and any(
                c.exited_at is not None and not c.finalized for c in t.containers
            ):
                return  # Fargate releases the task after the log driver is done.
            nxt = t.queue.pop(0)
            t.next_at = now + self.delay(nxt)
            if nxt == "STOPPED":
                t.times["stoppedAt"] = now
                t.phase = "stopped"
            t.set_status(nxt)

    def step_running(self, t: AgentTask, now: float) -> None:
        if (
            self.spot_after is not None
            and t.capacity_provider == "FARGATE_SPOT"
            and t.desired_status != "STOPPED"
            and now - t.times.get("startedAt", now) >= self.spot_after
        ):
            # AWS takes the Spot capacity back: SIGTERM now, SIGKILL after the stop timeout.
            LOG.info("task %s: Spot interruption", t.id)
            t.stop_code = "SpotInterruption"
            t.stopped_reason = "Your Spot Task was interrupted."
            self.begin_stop(t, now)
        for c in t.containers:
            if c.exit_code is not None or c.proc is None:
                continue
            if c.proc.poll() is not None:
                self.container_exited(t, c, now)
            elif now - c.last_flush >= self.log_batch:
                self.flush(c)
                c.last_flush = now
        if t.desired_status == "STOPPED" and t.kill_at is not None and now >= t.kill_at:
            t.kill_at = None
            for c in t.containers:
                if c.proc is not None and c.exited_at is None:
                    LOG.info("task %s: SIGKILL %s after grace", t.id, c.name)
                    self.kill_group(c, signal.SIGKILL)
        if all(c.exit_code is not None for c in t.containers):
            t.times["executionStoppedAt"] = now
            t.times.setdefault("stoppingAt", now)
            t.desired_status = "STOPPED"
            idx = STOP_SEQUENCE.index(t.last_status) + 1 if t.last_status in STOP_SEQUENCE else 0
            t.queue = STOP_SEQUENCE[idx:]
            t.phase = "finishing"
            t.next_at = now + self.delay(t.last_status)
            t.sync_moto()

    def container_exited(self, t: AgentTask, c: ContainerRun, now: float) -> None:
        # As on Fargate, the exit code is visible at once; the awslogs driver's last
        # batch is sent afterwards (finalize_logs).
        c.exited_at = now
        # Like a container's PID 1 exiting: whatever it left behind dies.
        self.kill_group(c, signal.SIGKILL)
        rc = c.proc.returncode if c.proc is not None else None
        if rc is not None:
            c.exit_code = 128 - rc if rc < 0 else rc
        if (c.defn.get("dockerLabels") or {}).get("emulator.loses-exit-code") == "true":
            c.exit_code_lost = True
            c.reason = "DockerTimeoutError: Could not transition to stopped; timed out after waiting 1m0s"
        c.last_status = "STOPPED"
        t.version += 1
        LOG.info("task %s: container %s exited with %s", t.id, c.name, c.exit_code)
        if c.essential and t.desired_status != "STOPPED":
            t.stop_code = "EssentialContainerExited"
            t.stopped_reason = "Essential container in task exited"
            self.begin_stop(t, now)

    def finalize_logs(self, c: ContainerRun, now: float) -> None:
        # The last batch leaves --final-flush-delay-seconds after the exit, once the
        # output pipe is drained (or after 2 s more, for orphans holding it open).
        assert c.exited_at is not None
        if now < c.exited_at + self.final_flush_delay:
            return
        drained = c.reader is None or not c.reader.is_alive()
        if drained or now - c.exited_at > self.final_flush_delay + 2.0:
            self.flush(c)
            c.finalized = True

    def begin_stop(self, t: AgentTask, now: float) -> None:
        t.desired_status = "STOPPED"
        t.times.setdefault("stoppingAt", now)
        running = [c for c in t.containers if c.proc is not None and c.exited_at is None]
        if running:
            t.set_status("DEACTIVATING")
            for c in running:
                self.signal_main(c, signal.SIGTERM)
            t.kill_at = now + self.stop_grace
        t.sync_moto()

    def stop_task(self, t: AgentTask, reason: str | None) -> None:
        if t.desired_status == "STOPPED":
            return
        now = time.time()
        t.stop_code = "UserInitiated"
        t.stopped_reason = reason or "Task stopped by user"
        if t.phase == "starting":
            t.desired_status = "STOPPED"
            t.times["stoppingAt"] = now
            t.times["executionStoppedAt"] = now
            for c in t.containers:
                c.last_status = "STOPPED"
            t.phase = "finishing"
            t.queue = ["STOPPING", "DEPROVISIONING", "STOPPED"]
            t.next_at = now + self.state_delay
            t.version += 1
            t.sync_moto()
        else:
            self.begin_stop(t, now)

    def fail_start(self, t: AgentTask, f: StartFailure, now: float) -> None:
        LOG.info("task %s: failed to start: %s", t.id, f.stopped_reason)
        t.desired_status = "STOPPED"
        t.stop_code = "TaskFailedToStart"
        t.stopped_reason = f.stopped_reason
        for c in t.containers:
            if c.proc is not None and c.proc.poll() is None:
                self.kill_group(c, signal.SIGKILL)
            c.last_status = "STOPPED"
            c.reason = f.container_reasons.get(c.name)
        t.times["stoppingAt"] = now
        t.times["executionStoppedAt"] = now
        t.phase = "finishing"
        t.queue = ["DEPROVISIONING", "STOPPED"]
        t.next_at = now + self.state_delay
        t.version += 1
        t.sync_moto()

    # -- starting --------------------------------------------------------
    def check_start(self, t: AgentTask) -> None:
        if self.start_failures > 0:
            self.start_failures -= 1
            raise StartFailure(ENI_TIMEOUT, {})
        for c in t.containers:
            for s in c.defn.get("secrets") or []:
                self.resolve_secret(t, s["valueFrom"])
        for c in t.containers:
            if self.entrypoint_for(c.image) is None:
                msg = (
                    "CannotPullContainerError: pull image manifest has been retried 1 time(s): "
                    f"failed to resolve ref {self.qualified_ref(c.image)}: not found"
                )
                raise StartFailure(msg, {c.name: msg})
        logs = self.backend("logs", t.account, t.region)
        for c in t.containers:
            opts = c.awslogs_options()
            if opts is None:
                continue
            group = opts.get("awslogs-group", "")
            if group not in logs.groups and opts.get("awslogs-create-group") != "true":
                msg = (
                    "ResourceInitializationError: failed to validate logger args: "
                    "create stream has been retried 1 times: failed to create Cloudwatch "
                    "log stream: ResourceNotFoundException: The specified log group does "
                    "not exist. : exit status 1"
                )
                raise StartFailure(msg, {c.name: msg})

    @staticmethod
    def qualified_ref(image: str) -> str:
        return image if ":" in image.rsplit("/", 1)[-1] else image + ":latest"

    def entrypoint_for(self, image: str) -> list[str] | None:
        """The image's entrypoint, or None when the image cannot be pulled."""
        if image in self.admin_images:
            return [self.companion] if self.admin_entrypoint == "companion" else []
        if image == SHELL_IMAGE:
            return []
        return None

    def resolve_secret(self, t: AgentTask, value_from: str) -> str:
        if value_from.startswith("arn:") and ":ssm:" in value_from:
            return self.resolve_ssm(t, value_from)
        if not value_from.startswith("arn:"):
            # ECS reads plain names from Parameter Store; fall back to Secrets
            # Manager names for convenience.
            ssm = self.backend("ssm", t.account, t.region)
            if ssm.get_parameter(value_from) is not None:
                return self.resolve_ssm(t, value_from)
        parts = value_from.split(":")
        secret_id = ":".join(parts[:7]) if value_from.startswith("arn:") else value_from
        json_key = parts[7] if value_from.startswith("arn:") and len(parts) > 7 else ""
        stage = parts[8] if len(parts) > 8 else ""
        version = parts[9] if len(parts) > 9 else ""
        sm = self.backend("secretsmanager", t.account, t.region)
        try:
            res = sm.get_secret_value(secret_id, version or None, stage or None)
        except Exception:
            raise StartFailure(SECRET_NOT_FOUND, {c.name: SECRET_NOT_FOUND for c in t.containers})
        value = res.get("SecretString")
        if value is None and res.get("SecretBinary") is not None:
            b = res["SecretBinary"]
            value = base64.b64decode(b).decode("utf-8", "replace") if isinstance(b, str) else b.decode()
        if json_key:
            try:
                value = json.loads(value)[json_key]
                if not isinstance(value, str):
                    value = json.dumps(value)
            except Exception:
                msg = (
                    "ResourceInitializationError: unable to pull secrets or registry auth: "
                    "execution resource retrieval failed: unable to retrieve secret from asm: "
                    f"retrieved secret from Secrets Manager did not contain json key {json_key}"
                )
                raise StartFailure(msg, {c.name: msg for c in t.containers})
        return value or ""

    def resolve_ssm(self, t: AgentTask, value_from: str) -> str:
        name = value_from.split(":parameter", 1)[1] if value_from.startswith("arn:") else value_from
        ssm = self.backend("ssm", t.account, t.region)
        p = ssm.get_parameter(name)
        if p is None:
            msg = (
                "ResourceInitializationError: unable to pull secrets or registry auth: "
                "execution resource retrieval failed: unable to retrieve secrets from ssm: "
                f"service call has been retried 1 time(s): invalid parameters: {name}"
            )
            raise StartFailure(msg, {c.name: msg for c in t.containers})
        return p.value

    def build_process(self, t: AgentTask, c: ContainerRun) -> tuple[list[str], dict[str, str]]:
        entry = c.defn.get("entryPoint")
        if entry is None:
            entry = self.entrypoint_for(c.image) or []
        command = c.override.get("command")
        if command is None:
            command = c.defn.get("command") or []
        argv = list(entry) + list(command)
        env = {
            "PATH": self.image_bin + os.pathsep
            + os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": t.workdir or "/",
            "LANG": "C.UTF-8",
            "HOSTNAME": f"ip-10-0-1-{random.randint(2, 254)}.ec2.internal",
            "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
            "AWS_REGION": t.region,
            "AWS_DEFAULT_REGION": t.region,
        }
        for kv in c.defn.get("environment") or []:
            env[kv["name"]] = kv.get("value", "")
        for kv in c.override.get("environment") or []:
            env[kv["name"]] = kv.get("value", "")
        for s in c.defn.get("secrets") or []:
            env[s["name"]] = self.resolve_secret(t, s["valueFrom"])
        return argv, env

    def start_containers(self, t: AgentTask, now: float) -> None:
        t.workdir = tempfile.mkdtemp(prefix=f"{t.id}-", dir=self.tmpdir)
        logs = self.backend("logs", t.account, t.region)
        for c in t.containers:
            argv, env = self.build_process(t, c)
            if not argv:
                msg = (
                    "CannotCreateContainerError: Error response from daemon: "
                    "No command specified"
                )
                raise StartFailure(msg, {c.name: msg})
            opts = c.awslogs_options()
            if opts is not None:
                c.log_group = opts.get("awslogs-group")
                prefix = opts.get("awslogs-stream-prefix")
                # The driver's naming; without a prefix it uses the container id.
                c.log_stream = f"{prefix}/{c.name}/{t.id}" if prefix else uuid.uuid4().hex
                if c.log_group not in logs.groups:
                    logs.create_log_group(c.log_group, {})
                logs.ensure_log_stream(c.log_group, c.log_stream)
            cwd = c.defn.get("workingDirectory")
            if not cwd or not os.path.isdir(cwd):
                cwd = t.workdir
            c.env, c.cwd = env, cwd
            try:
                c.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,  # own process group, like a container
                    close_fds=True,
                )
            except OSError as e:
                msg = (
                    "CannotStartContainerError: ResourceInitializationError: failed to "
                    "create new container runtime task: failed to create shim task: OCI "
                    "runtime create failed: runc create failed: unable to start container "
                    f'process: exec: "{argv[0]}": {e.strerror or e}: unknown'
                )
                raise StartFailure(msg, {c.name: msg})
            LOG.info("task %s: started %s (pid %s): %r", t.id, c.name, c.proc.pid, argv)
            c.runtime_id = f"{t.id}-{random.randint(10**9, 4 * 10**9)}"
            c.last_status = "RUNNING"
            c.last_flush = now
            c.reader = threading.Thread(target=c.read_output, name=f"logs-{c.name}", daemon=True)
            c.reader.start()

    # -- processes -------------------------------------------------------
    @staticmethod
    def signal_main(c: ContainerRun, sig: int) -> None:
        # `docker stop` signals the container's PID 1 only.
        try:
            if c.proc is not None:
                c.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    @staticmethod
    def kill_group(c: ContainerRun, sig: int) -> None:
        if c.proc is None:
            return
        try:
            os.killpg(c.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # -- logs ------------------------------------------------------------
    def flush(self, c: ContainerRun) -> None:
        lines = c.take_buffer()
        if not lines or c.log_group is None or c.log_stream is None:
            return
        logs = self.backend("logs", c.task.account, c.task.region)
        batch: list[dict[str, Any]] = []
        size = 0
        for ts, msg in lines:
            # CloudWatch orders by timestamp: never let one go backwards.
            ts = max(ts, c.last_ts)
            c.last_ts = ts
            ev_size = len(msg.encode("utf-8")) + 26
            if batch and (len(batch) >= MAX_BATCH_EVENTS or size + ev_size > MAX_BATCH_BYTES):
                logs.put_log_events(c.log_group, c.log_stream, batch)
                batch, size = [], 0
            batch.append({"timestamp": ts, "message": msg})
            size += ev_size
        if batch:
            logs.put_log_events(c.log_group, c.log_stream, batch)

    # -- API handlers ------------------------------------------------------
    def forgotten(self, t: AgentTask) -> bool:
        """ECS describes a stopped task for about an hour, then answers MISSING."""
        stopped = t.times.get("stoppedAt")
        return stopped is not None and time.time() - stopped > self.forget_after

    def find(self, cluster_name: str, ref: str) -> AgentTask | None:
        task_id = ref.split("/")[-1]
        for t in self.tasks.values():
            if t.cluster_name == cluster_name and (t.arn == ref or t.id == task_id):
                return None if self.forgotten(t) else t
        return None

    def api_run_task(self, resp: EC2ContainerServiceResponse) -> ActionResult:
        backend = resp.ecs_backend
        cluster_str = resp._get_param("cluster", "default")
        td_str = resp._get_param("taskDefinition")
        count = resp._get_int_param("count", 1)
        overrides = resp._get_param("overrides") or {}
        started_by = resp._get_param("startedBy")
        client_token = resp._get_param("clientToken")
        launch_type = resp._get_param("launchType")
        cps = resp._get_param("capacityProviderStrategy") or []
        net = resp._get_param("networkConfiguration")
        with self.lock:
            cluster = backend._get_cluster(cluster_str)
            if started_by is not None and not re.fullmatch(r"[A-Za-z0-9_/-]{1,128}", started_by):
                raise InvalidParameterException(
                    "startedBy may contain up to 128 letters (uppercase and lowercase), "
                    "numbers, hyphens, forward slashes and underscores."
                )
            if client_token is not None and len(client_token) > 64:
                raise InvalidParameterException("clientToken must be at most 64 characters.")
            if not 1 <= count <= 10:
                raise InvalidParameterException("count must be between 1 and 10.")
            token_key = (backend.account_id, backend.region_name, client_token or "")
            if client_token and token_key in self.client_tokens:
                tasks = [self.tasks[a] for a in self.client_tokens[token_key]]
                return ActionResult({"tasks": [t.render() for t in tasks], "failures": []})
            td = backend.describe_task_definition(td_str)
            if td.status != "ACTIVE":
                # ECS runs no new task from a deregistered revision.
                raise EcsClientException("TaskDefinition is inactive")
            if len(json.dumps(overrides, separators=(",", ":"))) > 8192:
                raise InvalidParameterException("Container Overrides length must be at most 8192")
            names = {d.get("name") for d in td.container_definitions}
            for o in overrides.get("containerOverrides") or []:
                if o.get("name") not in names:
                    raise InvalidParameterException(
                        f"Override for container named {o.get('name')} is not a container "
                        "in the TaskDefinition."
                    )
            capacity_provider = None
            fargate_cp = [s for s in cps if s.get("capacityProvider") in ("FARGATE", "FARGATE_SPOT")]
            if launch_type and cps:
                raise InvalidParameterException(
                    "Specifying both a launch type and capacity provider strategy is not supported."
                )
            if fargate_cp:
                capacity_provider = fargate_cp[0]["capacityProvider"]
                launch_type = "FARGATE"
            if launch_type != "FARGATE":
                if launch_type not in (None, "EC2", "EXTERNAL"):
                    raise InvalidParameterException("launch type should be one of [EC2,FARGATE,EXTERNAL]")
                if not backend.container_instances.get(cluster.name):
                    # Real ECS answers 200 with a failure here.
                    return ActionResult(
                        {
                            "tasks": [],
                            "failures": [{"arn": cluster.arn, "reason": "No Container Instances were found in your cluster."}],
                        }
                    )
            else:
                if "FARGATE" not in (td.requires_compatibilities or []):
                    raise InvalidParameterException(
                        "Task definition does not support launch_type FARGATE."
                    )
                self.validate_network(backend, net)
            if self.capacity_failures > 0:
                # As Fargate answers when a zone has no capacity: no task, a failure.
                self.capacity_failures -= 1
                return ActionResult({"tasks": [], "failures": [{"reason": CAPACITY_UNAVAILABLE}]})
            moto_tasks = backend.run_task(
                cluster_str,
                td_str,
                count,
                overrides,
                started_by,
                resp._get_param("tags"),
                launch_type,
                net,
                resp._get_param("group"),
                resp._get_param("platformVersion"),
            )
            params = {
                "overrides": overrides,
                "startedBy": started_by,
                "launchType": launch_type,
                "capacityProviderName": capacity_provider,
                "platformVersion": resp._get_param("platformVersion"),
                "tags": resp._get_param("tags"),
                "enableExecuteCommand": resp._get_param("enableExecuteCommand"),
            }
            created = []
            for mt in moto_tasks:
                t = AgentTask(self, mt, td, params)
                self.tasks[t.arn] = t
                created.append(t)
                LOG.info("task %s: created from %s", t.id, td.arn)
            if client_token:
                self.client_tokens[token_key] = [t.arn for t in created]
            return ActionResult({"tasks": [t.render() for t in created], "failures": []})

    @staticmethod
    def validate_network(backend: Any, net: dict[str, Any] | None) -> None:
        if not net or not net.get("awsvpcConfiguration"):
            raise InvalidParameterException(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified."
            )
        cfg = net["awsvpcConfiguration"]
        subnets = cfg.get("subnets") or []
        if not subnets:
            raise InvalidParameterException("subnets can not be empty.")
        ec2 = get_backend("ec2")[backend.account_id][backend.region_name]
        vpcs = {}
        for s in subnets:
            try:
                vpcs[s] = ec2.get_subnet(s).vpc_id
            except Exception:
                raise InvalidParameterException(
                    f"Error retrieving subnet information for [{s}]: The subnet ID '{s}' does not exist (ECS)"
                )
        for g in cfg.get("securityGroups") or []:
            group = ec2.get_security_group_from_id(g)
            if group is None:
                raise InvalidParameterException(
                    f"Error retrieving security group information for [{g}]: The security group '{g}' does not exist (ECS)"
                )
            for s, vpc in vpcs.items():
                if group.vpc_id != vpc:
                    raise InvalidParameterException(
                        f"Security group {g} and subnet {s} belong to different networks."
                    )
        if cfg.get("assignPublicIp", "DISABLED") not in ("ENABLED", "DISABLED"):
            raise InvalidParameterException("assignPublicIp must be ENABLED or DISABLED.")

    def api_describe_tasks(self, resp: EC2ContainerServiceResponse) -> ActionResult:
        backend = resp.ecs_backend
        cluster_str = resp._get_param("cluster", "default")
        refs = resp._get_param("tasks", []) or []
        include_tags = "TAGS" in (resp._get_param("include", []) or [])
        with self.lock:
            cluster = backend._get_cluster(cluster_str)
            if not refs:
                raise InvalidParameterException("Tasks cannot be empty.")
            if len(refs) > 100:
                raise InvalidParameterException("Tasks cannot have more than 100 elements.")
            tasks, failures = [], []
            for ref in refs:
                t = self.find(cluster.name, ref)
                if t is None:
                    arn = ref if ref.startswith("arn:") else (
                        f"arn:aws:ecs:{backend.region_name}:{backend.account_id}:task/{cluster.name}/{ref}"
                    )
                    failures.append({"arn": arn, "reason": "MISSING"})
                else:
                    tasks.append(t.render(include_tags))
            return ActionResult({"tasks": tasks, "failures": failures})

    def api_stop_task(self, resp: EC2ContainerServiceResponse) -> ActionResult:
        backend = resp.ecs_backend
        cluster_str = resp._get_param("cluster", "default")
        ref = resp._get_param("task")
        reason = resp._get_param("reason")
        with self.lock:
            cluster = backend._get_cluster(cluster_str)
            t = self.find(cluster.name, ref or "") if ref else None
            if t is None:
                raise InvalidParameterException("The referenced task was not found.")
            self.stop_task(t, reason)
            return ActionResult({"task": t.render()})

    def api_execute_command(self, resp: EC2ContainerServiceResponse) -> ActionResult:
        """Opens no session: answers as ECS does for a task started with
        enableExecuteCommand whose agent runs, so that a stand-in plugin can be handed
        the session; refuses as ECS does otherwise."""
        backend = resp.ecs_backend
        cluster = backend._get_cluster(resp._get_param("cluster", "default"))
        ref = resp._get_param("task") or ""
        name = resp._get_param("container")
        with self.lock:
            t = self.find(cluster.name, ref)
            if t is None:
                raise InvalidParameterException("The specified task was not found.")
            if not t.enable_exec or t.last_status != "RUNNING":
                raise InvalidParameterException(
                    "The execute command failed because execute command was not enabled when the task was run "
                    "or the execute command agent isn't running.")
            c = t.container(name) if name else t.containers[0]
            if c is None:
                raise InvalidParameterException(f"The container {name} was not found.")
            session = self.sessions.open_exec(t, c, resp._get_param("command") or "")
            return ActionResult({
                "clusterArn": t.cluster_arn,
                "containerArn": c.arn,
                "containerName": c.name,
                "interactive": True,
                "taskArn": t.arn,
                "session": {
                    "sessionId": session,
                    "streamUrl": f"wss://ssmmessages.{t.region}.amazonaws.com/v1/data-channel/{session}",
                    "tokenValue": "emulated-token",
                },
            })

    def tags_of(self, cluster_name: str, ref: str) -> list[dict[str, str]] | None:
        with self.lock:
            t = self.find(cluster_name, ref)
            return list(t.tags) if t else None

    def api_list_tasks(self, resp: EC2ContainerServiceResponse) -> ActionResult:
        backend = resp.ecs_backend
        cluster_str = resp._get_param("cluster", "default")
        family = resp._get_param("family")
        started_by = resp._get_param("startedBy")
        desired = resp._get_param("desiredStatus") or "RUNNING"
        launch_type = resp._get_param("launchType")
        max_results = resp._get_int_param("maxResults", 100)
        next_token = resp._get_param("nextToken")
        if desired not in ("RUNNING", "PENDING", "STOPPED"):
            raise InvalidParameterException("desiredStatus must be one of RUNNING, PENDING, STOPPED.")
        if not 1 <= max_results <= 100:
            raise InvalidParameterException("maxResults must be between 1 and 100.")
        with self.lock:
            cluster = backend._get_cluster(cluster_str)
            arns = []
            for t in self.tasks.values():
                if t.cluster_name != cluster.name or self.forgotten(t):
                    continue
                # PENDING selects tasks the agent still wants running too.
                want = "STOPPED" if desired == "STOPPED" else "RUNNING"
                if t.desired_status != want:
                    continue
                if family and t.td.family != family.split("/")[-1].split(":")[0]:
                    continue
                if started_by and t.started_by != started_by:
                    continue
                if launch_type and t.launch_type != launch_type:
                    continue
                arns.append(t.arn)
            start = 0
            if next_token:
                try:
                    start = int(base64.b64decode(next_token).decode())
                except Exception:
                    raise InvalidParameterException("Invalid nextToken.")
            page = arns[start : start + max_results]
            result: dict[str, Any] = {"taskArns": page}
            if start + max_results < len(arns):
                result["nextToken"] = base64.b64encode(str(start + max_results).encode()).decode()
            return ActionResult(result)


def install_patches(agent: Agent) -> None:
    # The agent owns the lifecycle; moto must not advance tasks on Describe.
    ecs_models.Task.advance = lambda self: None

    EC2ContainerServiceResponse.run_task = lambda self: agent.api_run_task(self)
    EC2ContainerServiceResponse.describe_tasks = lambda self: agent.api_describe_tasks(self)
    EC2ContainerServiceResponse.stop_task = lambda self: agent.api_stop_task(self)
    EC2ContainerServiceResponse.list_tasks = lambda self: agent.api_list_tasks(self)
    EC2ContainerServiceResponse.execute_command = lambda self: agent.api_execute_command(self)

    def describe_task_definition(self: Any, task_definition_str: str) -> Any:
        # A family alone means its latest ACTIVE revision (moto takes the latest of any
        # status); a deregistered (INACTIVE) revision named exactly is still described.
        name = task_definition_str.split("/")[-1]
        if ":" in name:
            family, rev = name.split(":", 1)
            revisions = self.task_definitions.get(family) or {}
            if not rev.isdigit() or int(rev) not in revisions:
                raise TaskDefinitionNotFoundException()
            return revisions[int(rev)]
        active = [r for r, d in (self.task_definitions.get(name) or {}).items() if d.status == "ACTIVE"]
        if not active:
            raise TaskDefinitionNotFoundException()
        return self.task_definitions[name][max(active)]

    ecs_models.EC2ContainerServiceBackend.describe_task_definition = describe_task_definition

    orig_group_get = logs_models.LogGroup.get_log_events

    def group_get_log_events(self: Any, log_stream_name: str, *a: Any, **kw: Any) -> Any:
        # moto blames the group for a missing stream; CloudWatch names the stream.
        if log_stream_name not in self.streams:
            raise LogsNotFound("The specified log stream does not exist.")
        return orig_group_get(self, log_stream_name, *a, **kw)

    logs_models.LogGroup.get_log_events = group_get_log_events

    orig_backend_get = logs_models.LogsBackend.get_log_events

    def backend_get_log_events(self: Any, *a: Any, **kw: Any) -> Any:
        # Read a consistent snapshot while the agent appends.
        with agent.lock:
            return orig_backend_get(self, *a, **kw)

    logs_models.LogsBackend.get_log_events = backend_get_log_events

    orig_requirements = ecs_models.EC2ContainerServiceBackend._calculate_task_resource_requirements

    def task_resource_requirements(task_definition: Any) -> Any:
        # Fargate containers may leave cpu/memory to the task level; moto would add
        # None. Count those as 0 on copies, leaving the stored definition as registered.
        containers = [
            {**c, **{k: 0 for k in ("cpu", "memory", "memoryReservation") if c.get(k) is None}}
            for c in task_definition.container_definitions
        ]
        return orig_requirements(types.SimpleNamespace(container_definitions=containers))

    ecs_models.EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(
        task_resource_requirements
    )


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def setup_resources(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    region = args.region
    kw = {"endpoint_url": endpoint, "region_name": region}
    ec2 = boto3.client("ec2", **kw)
    ecs = boto3.client("ecs", **kw)
    logs = boto3.client("logs", **kw)
    sm = boto3.client("secretsmanager", **kw)
    sts = boto3.client("sts", **kw)
    ecr = boto3.client("ecr", **kw)
    account = sts.get_caller_identity()["Account"]

    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{region}{az}")["Subnet"]["SubnetId"]
        for cidr, az in (("10.0.1.0/24", "a"), ("10.0.2.0/24", "b"))
    ]
    sg = ec2.create_security_group(
        GroupName="everruns-admin", Description="everruns admin tasks", VpcId=vpc_id
    )["GroupId"]

    # A group of another VPC: RunTask refuses it with these subnets.
    other_vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    foreign_sg = ec2.create_security_group(
        GroupName="elsewhere", Description="a group of another VPC", VpcId=other_vpc
    )["GroupId"]

    ecs.create_cluster(clusterName="everruns")
    # The application's own service, whose network `--from-service` copies: its own
    # subnet and security group, so a test can tell them from the admin defaults.
    api_sg = ec2.create_security_group(
        GroupName="everruns-api", Description="everruns api", VpcId=vpc_id
    )["GroupId"]
    log_group = "/ecs/everruns-admin"
    logs.create_log_group(logGroupName=log_group)

    def secret(name: str, value: str) -> str:
        return sm.create_secret(Name=name, SecretString=value)["ARN"]

    secret_arns = {
        "DATABASE_URL": secret("everruns/database-url", args.database_url),
        "SECRETS_ENCRYPTION_KEY": secret("everruns/encryption-key", args.encryption_key),
    }
    if args.encryption_key_previous:
        secret_arns["SECRETS_ENCRYPTION_KEY_PREVIOUS"] = secret(
            "everruns/encryption-key-previous", args.encryption_key_previous
        )

    awslogs = {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": log_group,
            "awslogs-region": region,
            "awslogs-stream-prefix": "admin",
        },
    }
    execution_role = f"arn:aws:iam::{account}:role/everruns-admin-execution"

    def register(family: str, containers: list[dict[str, Any]], **more: Any) -> None:
        ecs.register_task_definition(
            family=family,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            executionRoleArn=execution_role,
            containerDefinitions=containers,
            **more,
        )

    def admin_container(image: str, secrets_map: dict[str, str]) -> dict[str, Any]:
        return {
            "name": "admin",
            "image": image,
            "essential": True,
            "memory": 512,
            "logConfiguration": awslogs,
            "environment": [{"name": "RUST_LOG", "value": "info"}],
            "secrets": [{"name": k, "valueFrom": v} for k, v in secrets_map.items()],
        }

    register("everruns-admin", [admin_container(ADMIN_IMAGE, secret_arns)])
    ecs.create_service(
        cluster="everruns",
        serviceName="everruns-api",
        taskDefinition="everruns-admin",
        desiredCount=0,
        launchType="FARGATE",
        platformVersion="1.4.0",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": [subnets[1]],
                "securityGroups": [api_sg],
                "assignPublicIp": "DISABLED",
            }
        },
    )
    # A service on EC2 in bridge mode: it has no awsvpc configuration to copy.
    ecs.create_service(
        cluster="everruns", serviceName="everruns-bridge", taskDefinition="everruns-admin", desiredCount=0
    )
    register(
        "everruns-admin-generic",
        [
            # Listed first on purpose: callers must pick the container by name.
            {
                "name": "sidecar",
                "image": SHELL_IMAGE,
                "essential": False,
                "memory": 128,
                "command": ["sh", "-c", "echo sidecar started"],
                "logConfiguration": awslogs,
            },
            {
                "name": "admin",
                "image": SHELL_IMAGE,
                "essential": True,
                "memory": 384,
                "command": ["sh", "-c", "echo no command given"],
                "logConfiguration": awslogs,
            },
        ],
    )
    bad = dict(secret_arns)
    bad["SECRETS_ENCRYPTION_KEY"] = (
        f"arn:aws:secretsmanager:{region}:{account}:secret:everruns/does-not-exist-AbCdEf"
    )
    register("everruns-admin-badsecret", [admin_container(ADMIN_IMAGE, bad)])
    # The admin image pushed to ECR as tag v1; a second definition names a tag that
    # was never pushed (it cannot be pulled); a third was deregistered (INACTIVE).
    repository = ecr.create_repository(repositoryName="everruns-admin")["repository"]["repositoryUri"]
    ecr.put_image(
        repositoryName="everruns-admin",
        imageTag="v1",
        imageManifest=json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": "sha256:" + "0" * 64},
                "layers": [],
            }
        ),
    )
    ecr_image = f"{repository}:v1"
    register("everruns-admin-ecr", [admin_container(ecr_image, secret_arns)])
    register("everruns-admin-unpushed", [admin_container(f"{repository}:never-pushed", secret_arns)])
    register("everruns-admin-retired", [admin_container(ADMIN_IMAGE, secret_arns)])
    # As the shipped template makes it: a task role for ECS Exec's agent, and an init
    # process to reap what sessions leave (`shell`, `tunnel`).
    register(
        "everruns-admin-exec",
        [{**admin_container(ADMIN_IMAGE, secret_arns), "linuxParameters": {"initProcessEnabled": True}}],
        taskRoleArn=f"arn:aws:iam::{account}:role/everruns-admin-task",
    )
    # Containers that run and exit, but whose exit code ECS loses.
    loses_exit_code = {"emulator.loses-exit-code": "true"}
    register(
        "everruns-admin-lost-exit",
        [{**admin_container(ADMIN_IMAGE, secret_arns), "dockerLabels": loses_exit_code}],
    )
    register(
        "everruns-admin-generic-lost-exit",
        [
            {
                "name": "admin",
                "image": SHELL_IMAGE,
                "essential": True,
                "memory": 384,
                "logConfiguration": awslogs,
                "dockerLabels": loses_exit_code,
            }
        ],
    )
    ecs.deregister_task_definition(taskDefinition="everruns-admin-retired:1")
    register(
        "everruns-admin-badimage",
        [admin_container(UNPULLABLE_PREFIX + "does-not-exist:latest", secret_arns)],
    )
    return {
        "ready": True,
        "endpoint": endpoint,
        "region": region,
        "cluster": "everruns",
        "subnets": subnets,
        "security_group": sg,
        "service": {"name": "everruns-api", "subnets": [subnets[1]], "security_group": api_sg},
        "log_group": log_group,
        "ecr_image": ecr_image,
        "foreign_security_group": foreign_sg,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    here = os.path.dirname(os.path.abspath(__file__))
    default_companion = os.path.normpath(os.path.join(here, "..", "..", "target", "debug", "everruns-admin"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1 (0: pick a free one)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--companion", default=default_companion,
                   help="entrypoint of image everruns-admin:local (default: the crate's debug build)")
    p.add_argument("--admin-image-entrypoint", choices=("companion", "none"), default="companion",
                   help="ENTRYPOINT of image everruns-admin:local: the companion (default), or none "
                        "(the command override must name the program; the companion is on PATH "
                        "as everruns-admin either way)")
    p.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/everruns")
    p.add_argument("--encryption-key", default=None,
                   help="value of everruns/encryption-key (default: a random key 'local:<base64>')")
    p.add_argument("--encryption-key-previous", default=None,
                   help="value of everruns/encryption-key-previous (secret created only if given)")
    p.add_argument("--log-batch-seconds", type=float, default=0.2,
                   help="awslogs flush interval (real ECS: 5)")
    p.add_argument("--capacity-failures", type=int, default=0,
                   help="answer the first N valid RunTasks with a capacity failure and no task")
    p.add_argument("--start-failures", type=int, default=0,
                   help="stop the first N tasks that would start with TaskFailedToStart "
                        "(ResourceInitializationError: an ENI that was not provisioned in time)")
    p.add_argument("--forget-stopped-after-seconds", type=float, default=3600.0,
                   help="describe and list a stopped task for this long, then answer MISSING "
                        "as ECS does after about an hour")
    p.add_argument("--spot-interruption-after-seconds", type=float, default=None,
                   help="interrupt a task on FARGATE_SPOT this long after it started "
                        "(stop code SpotInterruption, SIGTERM to its containers)")
    p.add_argument("--throttle", action="append", default=[], metavar="OPERATION=PER_SECOND",
                   help="answer calls to OPERATION beyond PER_SECOND with ThrottlingException, "
                        "e.g. GetLogEvents=10; repeatable")
    p.add_argument("--stop-grace-seconds", type=float, default=30.0,
                   help="SIGTERM to SIGKILL delay on stop (ECS stopTimeout default: 30)")
    p.add_argument("--state-delay-seconds", type=float, default=0.15,
                   help="time between task lifecycle states")
    p.add_argument("--state-delay", action="append", default=[], metavar="STATE=SECONDS",
                   help="time spent in one lifecycle state, e.g. DEPROVISIONING=30 (Fargate: "
                        "tens of seconds); repeatable")
    p.add_argument("--final-flush-delay-seconds", type=float, default=0.5,
                   help="how long after a container exits its last log batch is sent "
                        "(its exit code is visible at once, as on Fargate)")
    p.add_argument("--stall-while-exists", default=None, metavar="FILE",
                   help="while FILE exists, every API request is held unanswered (an endpoint "
                        "that accepts connections and never answers)")
    p.add_argument("--ignore-stdin", action="store_true",
                   help="do not exit on stdin EOF (for running detached; stop with SIGTERM)")
    p.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    p.add_argument("--request-counts", default=None, metavar="FILE",
                   help="keep a JSON object of API calls by action (X-Amz-Target) in FILE")
    p.add_argument("--authorization-log", default=None, metavar="FILE",
                   help="append the IAM request context of every API call to FILE, one JSON "
                        "line per action and resource (see authorization.py)")
    p.add_argument("--deny", action="append", default=[], metavar="ACTION",
                   help="refuse every call needing this IAM action (repeatable, e.g. "
                        "ecs:StopTask) with AccessDeniedException, as IAM does")
    args = p.parse_args(argv)
    args.throttles = {}
    for item in args.throttle:
        op, _, rate = item.partition("=")
        try:
            args.throttles[op] = float(rate)
        except ValueError:
            p.error(f"--throttle {item!r}: use OPERATION=PER_SECOND")
    args.state_delays = {}
    for item in args.state_delay:
        state, _, seconds = item.partition("=")
        if state not in ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", *STOP_SEQUENCE):
            p.error(f"--state-delay {item!r}: unknown state {state!r}")
        try:
            args.state_delays[state] = float(seconds)
        except ValueError:
            p.error(f"--state-delay {item!r}: use STATE=SECONDS")
    if args.encryption_key is None:
        args.encryption_key = "local:" + base64.b64encode(pysecrets.token_bytes(32)).decode()
    return args


def install_request_counter(path: str) -> None:
    """Counts API calls by action into a JSON file: the launcher's benchmark reads it to
    report how many calls a follower makes per minute."""
    from moto.server import DomainDispatcherApplication

    counts: dict[str, int] = {}
    lock = threading.Lock()
    original = DomainDispatcherApplication.__call__

    def counting(self: Any, environ: dict, start_response: Any) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        action = target.rsplit(".", 1)[-1] if target else "other"
        with lock:
            counts[action] = counts.get(action, 0) + 1
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(counts, f)
            os.replace(tmp, path)
        return original(self, environ, start_response)

    DomainDispatcherApplication.__call__ = counting


def install_throttle(rates: dict[str, float]) -> None:
    """Refuses calls to an operation beyond its rate (a token bucket of one second's
    calls) with ThrottlingException, as AWS does past an API's quota."""
    from moto.server import DomainDispatcherApplication

    original = DomainDispatcherApplication.__call__
    lock = threading.Lock()
    buckets = {op: [rate, time.monotonic()] for op, rate in rates.items()}

    def throttling(self: Any, environ: dict, start_response: Any) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        op = target.rsplit(".", 1)[-1] if target else ""
        if op in buckets:
            rate = rates[op]
            with lock:
                tokens, at = buckets[op]
                now = time.monotonic()
                tokens = min(rate, tokens + (now - at) * rate)
                allowed = tokens >= 1.0
                buckets[op] = [tokens - 1.0 if allowed else tokens, now]
            if not allowed:
                LOG.info("throttled %s", op)
                body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
                start_response("400 Bad Request", [
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("x-amzn-ErrorType", "ThrottlingException"),
                    ("Content-Length", str(len(body))),
                ])
                return [body]
        return original(self, environ, start_response)

    DomainDispatcherApplication.__call__ = throttling


def install_stall(path: str) -> None:
    """Holds every request unanswered while `path` exists: the connection is accepted and
    nothing comes back, as from an endpoint behind a broken proxy or VPN."""
    from moto.server import DomainDispatcherApplication

    original = DomainDispatcherApplication.__call__

    def stalling(self: Any, environ: dict, start_response: Any) -> Any:
        while os.path.exists(path):
            time.sleep(0.05)
        return original(self, environ, start_response)

    DomainDispatcherApplication.__call__ = stalling


def main() -> int:
    args = parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="emulator %(asctime)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    if args.port != 0 and not port_is_free(args.port):
        # ThreadedMotoServer would wait forever on a port it cannot bind.
        print(f"emulator: port {args.port} on 127.0.0.1 is already in use", file=sys.stderr)
        return 2

    agent = Agent(args)
    install_patches(agent)
    if args.throttles:
        install_throttle(args.throttles)
    if args.request_counts:
        install_request_counter(args.request_counts)
    if args.stall_while_exists:
        install_stall(args.stall_while_exists)
    agent.sessions.install(lambda environ: authorization.credential_scope(environ)[0])
    if args.authorization_log or args.deny:
        authorization.install(args.authorization_log, set(args.deny), agent.tags_of)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://127.0.0.1:{port}"

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        ready = setup_resources(endpoint, args)
        agent.admin_images.add(ready["ecr_image"])
        agent.start()
        sys.stdout.write(json.dumps(ready, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        LOG.info("ready on %s", endpoint)

        if not args.ignore_stdin:
            def watch_stdin() -> None:
                # Raw reads: a daemon thread blocked inside the buffered reader
                # would abort interpreter shutdown.
                try:
                    while os.read(sys.stdin.fileno(), 65536):
                        pass
                except Exception:
                    pass
                stop.set()

            threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()

        while not stop.wait(0.5):
            pass
        LOG.info("shutting down")
    finally:
        agent.shutdown()
        server.stop()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Daemon threads (HTTP handlers, log readers) must not delay or break exit.
    os._exit(code)
