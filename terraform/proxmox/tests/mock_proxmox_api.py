"""A MOCK of the few Proxmox VE API endpoints the module's `inventory` hook
calls. It is not Proxmox: a plain-HTTP server on 127.0.0.1 (a free port)
that keeps VMs in memory and answers like PVE 8 does, as far as the hook
looks:

* every request must carry `Authorization: PVEAPIToken=<id>=<secret>`,
  else 401 (as PVE answers a wrong token);
* `GET /api2/json/cluster/resources?type=vm`: the VMs (and containers), with
  `id`, `type`, `vmid`, `name`, `node`, `status`, `template` and `tags`
  (';'-separated, absent when there are none);
* `POST /api2/json/nodes/{node}/qemu/{vmid}/status/stop`: a `qmstop` task
  (a UPID) that leaves the VM stopped;
* `DELETE /api2/json/nodes/{node}/qemu/{vmid}`: refused (500) while the VM
  runs, as PVE does; else a `qmdestroy` task that removes the VM. The query
  (`purge`, `destroy-unreferenced-disks`) is recorded for the tests;
* `GET /api2/json/nodes/{node}/tasks/{upid}/status`: `running` for the
  task's first `polls` polls, then `stopped` with its `exitstatus`.

A wrong node or an unknown VM is a 500 with PVE's message. Every request is
recorded in `requests` as (method, path after /api2/json, query dict).

    with MockProxmox("daas@pve!daas", "secret", vms) as api:
        api.url  # http://127.0.0.1:PORT/api2/json
"""

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/api2/json"


class MockProxmox:
    def __init__(self, token_id, token_secret, vms, task_polls=1):
        """vms: dicts with vmid, node, name, status, tags and optionally
        type ("qemu"), template (0), fail ({"qmstop"|"qmdestroy": exitstatus})
        and polls (task polls before a task of this VM stops; None: never)."""
        self.authorization = f"PVEAPIToken={token_id}={token_secret}"
        self.token_id = token_id
        self.vms = {vm["vmid"]: dict(vm) for vm in vms}
        self.task_polls = task_polls
        self.tasks = {}
        self.requests = []
        self.rejected = 0
        self.lock = threading.Lock()
        self._counter = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}{PREFIX}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # ---- what the tests look at ----

    def mutations(self):
        """The requests that change something: (method, path, query)."""
        with self.lock:
            return [r for r in self.requests if r[0] in ("POST", "PUT", "DELETE")]

    def vm_names(self):
        with self.lock:
            return sorted(vm["name"] for vm in self.vms.values())

    # ---- the API ----

    def _new_task(self, node, kind, vmid, exitstatus, polls, on_done):
        self._counter += 1
        upid = (
            f"UPID:{node}:{0x1000 + self._counter:08X}:{0x20000 + self._counter:08X}:"
            f"{int(time.time()):08X}:{kind}:{vmid}:{self.token_id}:"
        )
        self.tasks[upid] = {
            "node": node,
            "polls": polls,
            "exitstatus": exitstatus,
            "on_done": on_done,
            "done": False,
        }
        return upid

    def _vm_on(self, node, vmid_text):
        vmid = int(vmid_text) if vmid_text.isdigit() else None
        vm = self.vms.get(vmid)
        if vm is None or vm["node"] != node or vm.get("type", "qemu") != "qemu":
            raise ApiError(500, f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
        return vm

    def _task_for(self, vm, kind, on_done):
        exitstatus = vm.get("fail", {}).get(kind, "OK")
        polls = vm.get("polls", self.task_polls)

        def done():
            if exitstatus == "OK":
                on_done()

        return self._new_task(vm["node"], kind, vm["vmid"], exitstatus, polls, done)

    def handle(self, method, path, query):
        """(status, body) for one authenticated request."""
        if not path.startswith(PREFIX + "/"):
            raise ApiError(404, "not found")
        parts = [urllib.parse.unquote(p) for p in path[len(PREFIX) + 1 :].split("/")]
        with self.lock:
            self.requests.append((method, "/" + "/".join(parts), query))
            if method == "GET" and parts == ["cluster", "resources"]:
                if query.get("type") != "vm":
                    raise ApiError(400, "the mock only answers type=vm")
                data = []
                for vm in self.vms.values():
                    kind = vm.get("type", "qemu")
                    entry = {
                        "id": f"{kind}/{vm['vmid']}",
                        "type": kind,
                        "vmid": vm["vmid"],
                        "name": vm["name"],
                        "node": vm["node"],
                        "status": vm["status"],
                        "template": vm.get("template", 0),
                        "maxmem": 4294967296,
                    }
                    if vm.get("tags"):
                        entry["tags"] = vm["tags"]
                    data.append(entry)
                return 200, {"data": data}
            if (
                method == "POST"
                and len(parts) == 6
                and parts[0] == "nodes"
                and parts[2] == "qemu"
                and parts[4:] == ["status", "stop"]
            ):
                vm = self._vm_on(parts[1], parts[3])

                def stopped(vm=vm):
                    vm["status"] = "stopped"

                return 200, {"data": self._task_for(vm, "qmstop", stopped)}
            if method == "DELETE" and len(parts) == 4 and parts[0] == "nodes" and parts[2] == "qemu":
                vm = self._vm_on(parts[1], parts[3])
                if vm["status"] == "running":
                    raise ApiError(500, f"VM {vm['vmid']} is running - destroy failed")

                def removed(vmid=vm["vmid"]):
                    self.vms.pop(vmid, None)

                return 200, {"data": self._task_for(vm, "qmdestroy", removed)}
            if (
                method == "GET"
                and len(parts) == 5
                and parts[0] == "nodes"
                and parts[2] == "tasks"
                and parts[4] == "status"
            ):
                task = self.tasks.get(parts[3])
                if task is None or task["node"] != parts[1]:
                    raise ApiError(500, f"no such task '{parts[3]}'")
                status = {"upid": parts[3], "node": task["node"], "status": "running"}
                if task["polls"] is not None:
                    if task["polls"] > 0:
                        task["polls"] -= 1
                    else:
                        if not task["done"]:
                            task["done"] = True
                            task["on_done"]()
                        status.update(status="stopped", exitstatus=task["exitstatus"])
                return 200, {"data": status}
        raise ApiError(501, f"Method '{method} {path}' not implemented by the mock")

    def _handler(self):
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
                if self.headers.get("Authorization") != mock.authorization:
                    with mock.lock:
                        mock.rejected += 1
                    status, reason, body = 401, "authentication failure", {"data": None}
                else:
                    try:
                        status, body = mock.handle(self.command, url.path, query)
                        reason = None
                    except ApiError as e:
                        status, reason, body = e.status, e.message, {"data": None, "message": e.message + "\n"}
                raw = json.dumps(body).encode()
                self.send_response(status, reason)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args):
                pass

        return Handler


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message
