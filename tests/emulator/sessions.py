"""Session Manager as the emulator plays it: the sessions that ECS ExecuteCommand and
SSM StartSession open, and what the stand-in plugin beside this file needs to carry
them.

AWS hands a session to the session-manager-plugin as a WebSocket URL and a token; the
SSM agent inside the task runs the command or opens the connection. Here the emulator
keeps each session's record instead, and the stand-in plugin fetches it from
`GET /_emulator/sessions/<session-id>` on the endpoint it is given (the plugin's last
argument; `DELETE` closes it, as the plugin's data channel does on Ctrl-C), then runs the command in the container's environment or forwards the port
itself. A session ends when it is terminated or when its task stops running, as the
agent's channel closes with the task.

Documented facts this follows, where moto has nothing:
- StartSession with target `ecs:<cluster>_<task-id>_<container-runtime-id>` needs the
  task's ExecuteCommandAgent running; otherwise TargetNotConnected.
- `AWS-StartPortForwardingSessionToRemoteHost` takes `host` and `portNumber` (and
  optionally `localPortNumber`), each a list of one string.
- Session ids are the caller's name, a dash and a hex suffix; TerminateSession returns
  the id, also for a session that has ended already.
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from typing import Any, Callable

PORT_FORWARDING = "AWS-StartPortForwardingSessionToRemoteHost"
DOCUMENTS = {PORT_FORWARDING, "AWS-StartPortForwardingSession", "AWS-StartInteractiveCommand"}
TARGET = re.compile(r"^ecs:(?P<cluster>[^_]+)_(?P<task>[0-9a-f-]+)_(?P<runtime>.+)$")


class SsmError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Sessions:
    def __init__(self, find_task: Callable[[str, str], Any]):
        """`find_task(cluster, task-id)` gives the agent's task (or None)."""
        self.find_task = find_task
        self.lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}

    @staticmethod
    def new_id(principal: str) -> str:
        return f"{principal or 'emulated'}-{uuid.uuid4().hex[:17]}"

    def open_exec(self, task: Any, container: Any, command: str) -> str:
        """Records the session of an ExecuteCommand call and returns its id."""
        session_id = f"ecs-execute-command-{uuid.uuid4().hex[:17]}"
        with self.lock:
            self.records[session_id] = {
                "kind": "exec", "command": command, "env": dict(container.env or {}),
                "cwd": container.cwd, "task": task, "terminated": False,
            }
        return session_id

    def start_session(self, params: dict[str, Any], principal: str) -> dict[str, Any]:
        target = params.get("Target") or ""
        document = params.get("DocumentName") or "SSM-SessionManagerRunShell"
        if document not in DOCUMENTS:
            raise SsmError("InvalidDocument", f"Document {document} does not exist in your account.")
        m = TARGET.match(target)
        task = self.find_task(m["cluster"], m["task"]) if m else None
        connected = False
        if task is not None and task.last_status == "RUNNING" and task.enable_exec:
            connected = any(c.runtime_id == m["runtime"] and c.last_status == "RUNNING"
                            for c in task.containers)
        if not connected:
            raise SsmError("TargetNotConnected", f"{target} is not connected.")
        parameters = params.get("Parameters") or {}
        record: dict[str, Any] = {"kind": "port", "task": task, "terminated": False,
                                  "document": document}
        if document == PORT_FORWARDING:
            host, port = parameters.get("host") or [], parameters.get("portNumber") or []
            if len(host) != 1 or len(port) != 1 or not str(port[0]).isdigit():
                raise SsmError("ValidationException",
                               f"{document} needs parameters host and portNumber, one value each.")
            record.update(host=host[0], port=int(port[0]))
        session_id = self.new_id(principal)
        with self.lock:
            self.records[session_id] = record
        return {
            "SessionId": session_id,
            "StreamUrl": f"wss://ssmmessages.{task.region}.amazonaws.com/v1/data-channel/{session_id}"
                         "?role=publish_subscribe",
            "TokenValue": "emulated-token",
        }

    def terminate(self, session_id: str) -> dict[str, Any]:
        with self.lock:
            if session_id in self.records:
                self.records[session_id]["terminated"] = True
        return {"SessionId": session_id}

    def describe(self, session_id: str) -> dict[str, Any] | None:
        """What the stand-in plugin reads: the record, and whether it has ended."""
        with self.lock:
            record = self.records.get(session_id)
            if record is None:
                return None
            task = record["task"]
            ended = record["terminated"] or task.last_status != "RUNNING"
            out = {k: v for k, v in record.items() if k != "task"}
            out["status"] = "Terminated" if ended else "Connected"
            return out

    def terminated(self) -> list[str]:
        with self.lock:
            return sorted(k for k, r in self.records.items() if r["terminated"])

    # -- HTTP -----------------------------------------------------------------
    def install(self, principal_of: Callable[[dict], str]) -> None:
        from moto.server import DomainDispatcherApplication

        original = DomainDispatcherApplication.__call__
        sessions = self

        def serving(self: Any, environ: dict, start_response: Any) -> Any:
            path = environ.get("PATH_INFO", "")
            if path.startswith("/_emulator/sessions/"):
                session_id = path.rsplit("/", 1)[-1]
                if environ.get("REQUEST_METHOD") == "DELETE":
                    sessions.terminate(session_id)
                record = sessions.describe(session_id)
                return reply(start_response, "200 OK" if record else "404 Not Found", record or {})
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if target in ("AmazonSSM.StartSession", "AmazonSSM.TerminateSession"):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length) if length else b""
                environ["wsgi.input"] = io.BytesIO(body)
                params = json.loads(body or b"{}")
                try:
                    if target.endswith("StartSession"):
                        result = sessions.start_session(params, principal_of(environ))
                    else:
                        result = sessions.terminate(params.get("SessionId") or "")
                except SsmError as e:
                    return reply(start_response, "400 Bad Request",
                                 {"__type": e.code, "message": e.message}, e.code)
                return reply(start_response, "200 OK", result)
            return original(self, environ, start_response)

        DomainDispatcherApplication.__call__ = serving


def reply(start_response: Any, status: str, body: dict[str, Any], error: str | None = None) -> list[bytes]:
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))]
    if error:
        headers.append(("x-amzn-ErrorType", error))
    start_response(status, headers)
    return [data]
