"""The IAM request context of each API call the emulator serves, written as JSON lines
so that a test can evaluate the shipped policies against what a command really asked.

moto enforces no identity policy with resource ARNs and conditions, so the emulator
does not decide; it records what AWS would evaluate, as the Service Authorization
Reference documents each action: the action, one resource ARN (a call on several
resources gives one line each) and the condition keys of the request. The test's
evaluator then applies each policy. An action this module does not know is recorded
with `"unmodelled": true`, so that a new call cannot pass unseen.

Documented facts this follows, where moto has nothing to say:
- RunTask is authorised on the task definition's ARN with `ecs:cluster`; it also needs
  `iam:PassRole` (with `iam:PassedToService`) for each role the task will have, and,
  when it sets tags, `ecs:TagResource` on the new task with `ecs:CreateAction`.
- StopTask and ExecuteCommand are authorised on the task with its tags as
  `ecs:ResourceTag/KEY` (and `aws:ResourceTag/KEY`); ExecuteCommand also on the
  cluster, with `ecs:container-name`.
- StartSession is authorised on the target (for an ECS task, the task's ARN) and on
  the document (`arn:aws:ssm:REGION::document/NAME` for AWS's own documents).
- ListTasks has no resource-level permission (`*`, narrowed by `ecs:cluster`), nor do
  Describe/RegisterTaskDefinition, EC2's Describe calls; GetLogEvents is authorised on
  the log stream's ARN, DescribeLogStreams on the log group's.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any, Callable
from urllib.parse import parse_qs

from moto.backends import get_backend

ECS_TARGET = "AmazonEC2ContainerServiceV20141113"
SERVICES_BY_TARGET = {
    ECS_TARGET: "ecs",
    "Logs_20140328": "logs",
    "secretsmanager": "secretsmanager",
    "AmazonEC2ContainerRegistry_V20150921": "ecr",
    "AmazonSSM": "ssm",
}
# Calls that need no permission.
UNAUTHORISED = {"sts:GetCallerIdentity"}


def install(path: str | None, denied: set[str],
            tags_of: Callable[[str, str], list[dict[str, str]] | None]) -> None:
    """Appends each call's request contexts to `path` and refuses, as IAM does, a call
    needing an action in `denied`; `tags_of(cluster, task)` gives a task's tags (None
    for a task the emulator does not know)."""
    from moto.server import DomainDispatcherApplication

    lock = threading.Lock()
    original = DomainDispatcherApplication.__call__

    def recording(self: Any, environ: dict, start_response: Any) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            lines = contexts(environ, body, tags_of)
        except Exception as e:  # a context that cannot be built is a test failure
            lines = [{"action": "unknown", "resource": "*", "context": {}, "unmodelled": True,
                      "error": repr(e)}]
        if lines and path:
            with lock, open(path, "a") as f:
                for line in lines:
                    f.write(json.dumps(line, sort_keys=True) + "\n")
        refused = next((line for line in lines if line["action"] in denied), None)
        if refused:
            return access_denied(environ, refused, start_response)
        return original(self, environ, start_response)

    DomainDispatcherApplication.__call__ = recording


def access_denied(environ: dict, line: dict[str, Any], start_response: Any) -> list[bytes]:
    """The refusal AWS sends: AccessDeniedException (JSON protocols, HTTP 400), or EC2's
    UnauthorizedOperation (XML, HTTP 403)."""
    action, resource = line["action"], line["resource"]
    if environ.get("HTTP_X_AMZ_TARGET"):
        message = (f"User: arn:aws:sts::123456789012:assumed-role/operator/session is not authorized "
                   f"to perform: {action} on resource: {resource} because no identity-based policy "
                   f"allows the {action} action")
        body = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
        status, headers = "400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"),
                                              ("x-amzn-ErrorType", "AccessDeniedException")]
    else:
        body = ("<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not "
                "authorized to perform this operation.</Message></Error></Errors>"
                "<RequestID>emulated</RequestID></Response>").encode()
        status, headers = "403 Forbidden", [("Content-Type", "text/xml")]
    start_response(status, headers + [("Content-Length", str(len(body)))])
    return [body]


def credential_scope(environ: dict) -> tuple[str, str]:
    """The access key id and region of a SigV4-signed request."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = auth.split("Credential=", 1)[-1].split(",", 1)[0].split("/")
    return (scope[0], scope[2]) if len(scope) > 2 else ("", "us-east-1")


def contexts(environ: dict, body: bytes, tags_of: Callable) -> list[dict[str, Any]]:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        prefix, operation = target.rsplit(".", 1)
        service = SERVICES_BY_TARGET.get(prefix, prefix.lower())
        params = json.loads(body or b"{}")
    else:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        operation = form.get("Action", "")
        service = "sts" if operation == "GetCallerIdentity" else "ec2"
        params = form
    if not operation or f"{service}:{operation}" in UNAUTHORISED:
        return []
    principal, region = credential_scope(environ)
    account = "123456789012"
    requests = Requests(service, operation, params, region, account, tags_of)
    lines = requests.build()
    for line in lines:
        line["principal"] = principal
        line["operation"] = operation
    return lines


class Requests:
    def __init__(self, service: str, operation: str, params: dict[str, Any], region: str,
                 account: str, tags_of: Callable) -> None:
        self.service, self.operation, self.params = service, operation, params
        self.region, self.account, self.tags_of = region, account, tags_of
        self.out: list[dict[str, Any]] = []

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def add(self, action: str, resource: str, context: dict[str, Any] | None = None, **extra: Any) -> None:
        self.out.append({"action": action, "resource": resource, "context": context or {}, **extra})

    # -- ECS ------------------------------------------------------------------
    def cluster_name(self) -> str:
        cluster = self.params.get("cluster") or "default"
        return cluster.split("/")[-1]

    def cluster_arn(self) -> str:
        return self.arn("ecs", f"cluster/{self.cluster_name()}")

    def task_arn(self, ref: str) -> str:
        return ref if ref.startswith("arn:") else self.arn("ecs", f"task/{self.cluster_name()}/{ref}")

    def tag_context(self, ref: str) -> dict[str, Any]:
        tags = self.tags_of(self.cluster_name(), ref) or []
        context: dict[str, Any] = {}
        for tag in tags:
            context[f"ecs:ResourceTag/{tag['key']}"] = tag["value"]
            context[f"aws:ResourceTag/{tag['key']}"] = tag["value"]
        return context

    def pass_roles(self, roles: list[str | None]) -> None:
        for role in sorted({r for r in roles if r}):
            self.add("iam:PassRole", role, {"iam:PassedToService": "ecs-tasks.amazonaws.com"})

    def tag_on_create(self, resource: str, tags: list[dict[str, str]]) -> None:
        if not tags:
            return
        context: dict[str, Any] = {"ecs:CreateAction": self.operation,
                                   "aws:TagKeys": [t["key"] for t in tags]}
        for tag in tags:
            context[f"aws:RequestTag/{tag['key']}"] = tag["value"]
        self.add("ecs:TagResource", resource, context)

    def ecs(self) -> None:
        op, p = self.operation, self.params
        cluster = {"ecs:cluster": self.cluster_arn()}
        if op == "RunTask":
            backend = get_backend("ecs")[self.account][self.region]
            td = backend.describe_task_definition(p["taskDefinition"])
            self.add("ecs:RunTask", td.arn, cluster)
            overrides = p.get("overrides") or {}
            self.pass_roles([td.execution_role_arn, td.task_role_arn,
                             overrides.get("taskRoleArn"), overrides.get("executionRoleArn")])
            # The new task's id is not known before the call; any id of the cluster.
            self.tag_on_create(self.task_arn("new-task"), p.get("tags") or [])
        elif op == "RegisterTaskDefinition":
            self.add("ecs:RegisterTaskDefinition", "*")
            self.pass_roles([p.get("taskRoleArn"), p.get("executionRoleArn")])
            self.tag_on_create(self.arn("ecs", f"task-definition/{p.get('family')}:new"), p.get("tags") or [])
        elif op == "DescribeTasks":
            for ref in p.get("tasks") or []:
                self.add("ecs:DescribeTasks", self.task_arn(ref), cluster)
        elif op == "StopTask":
            ref = p.get("task") or ""
            self.add("ecs:StopTask", self.task_arn(ref), {**cluster, **self.tag_context(ref)})
        elif op == "ExecuteCommand":
            ref = p.get("task") or ""
            request = {**cluster, "ecs:container-name": p.get("container") or "",
                       "ecs:task": self.task_arn(ref)}
            self.add("ecs:ExecuteCommand", self.cluster_arn(), request)
            self.add("ecs:ExecuteCommand", self.task_arn(ref), {**request, **self.tag_context(ref)})
        elif op == "ListTasks":
            self.add("ecs:ListTasks", "*", cluster)
        elif op == "DescribeClusters":
            for c in p.get("clusters") or ["default"]:
                self.add("ecs:DescribeClusters",
                         c if c.startswith("arn:") else self.arn("ecs", f"cluster/{c}"))
        elif op == "DescribeServices":
            for s in p.get("services") or []:
                arn = s if s.startswith("arn:") else self.arn("ecs", f"service/{self.cluster_name()}/{s}")
                self.add("ecs:DescribeServices", arn, cluster)
        elif op == "DescribeTaskDefinition":
            self.add("ecs:DescribeTaskDefinition", "*")
        else:
            self.add(f"ecs:{op}", "*", unmodelled=True)

    # -- the others -------------------------------------------------------------
    def logs(self) -> None:
        op, p = self.operation, self.params
        group = p.get("logGroupName") or ""
        if op in ("GetLogEvents",):
            self.add(f"logs:{op}", self.arn("logs", f"log-group:{group}:log-stream:{p.get('logStreamName')}"))
        elif op in ("DescribeLogStreams", "FilterLogEvents"):
            self.add(f"logs:{op}", self.arn("logs", f"log-group:{group}"))
        elif op == "DescribeLogGroups":
            self.add("logs:DescribeLogGroups", self.arn("logs", "log-group:*"))
        else:
            self.add(f"logs:{op}", "*", unmodelled=True)

    def secretsmanager(self) -> None:
        op, p = self.operation, self.params
        if op in ("DescribeSecret", "GetSecretValue", "PutSecretValue"):
            backend = get_backend("secretsmanager")[self.account][self.region]
            secret_id = p.get("SecretId") or ""
            try:
                arn = backend.describe_secret(secret_id).arn
            except Exception:
                arn = secret_id if secret_id.startswith("arn:") else self.arn("secretsmanager", f"secret:{secret_id}")
            self.add(f"secretsmanager:{op}", arn)
        else:
            self.add(f"secretsmanager:{op}", "*", unmodelled=True)

    def ssm(self) -> None:
        op, p = self.operation, self.params
        if op == "StartSession":
            target = p.get("Target") or ""
            # ecs:<cluster>_<task-id>_<runtime-id>
            cluster, _, rest = target.removeprefix("ecs:").partition("_")
            task = rest.partition("_")[0]
            self.add("ssm:StartSession", self.arn("ecs", f"task/{cluster}/{task}"))
            document = p.get("DocumentName") or "SSM-SessionManagerRunShell"
            self.add("ssm:StartSession", f"arn:aws:ssm:{self.region}::document/{document}")
        elif op == "TerminateSession":
            self.add("ssm:TerminateSession", self.arn("ssm", f"session/{p.get('SessionId')}"))
        else:
            self.add(f"ssm:{op}", "*", unmodelled=True)

    def build(self) -> list[dict[str, Any]]:
        if self.service == "ecs":
            self.ecs()
        elif self.service == "logs":
            self.logs()
        elif self.service == "secretsmanager":
            self.secretsmanager()
        elif self.service == "ssm":
            self.ssm()
        elif self.service == "ecr" and self.operation == "DescribeImages":
            self.add("ecr:DescribeImages", self.arn("ecr", f"repository/{self.params.get('repositoryName')}"))
        elif self.service == "ec2" and self.operation in ("DescribeSubnets", "DescribeSecurityGroups",
                                                          "DescribeNetworkInterfaces"):
            self.add(f"ec2:{self.operation}", "*")
        else:
            self.add(f"{self.service}:{self.operation}", "*", unmodelled=True)
        return self.out
