"""A protocol-level agent for console tests: enrolls with a real token and
sends real gzip NDJSON batches and check-ins over HTTPS (docs/protocol.md).
Used where many PCs or hand-made events are needed (tenant isolation,
hostile strings, incidents); the real agent is used where detection
matters."""
import base64
import datetime
import gzip
import json
import uuid


def iso(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


class SimAgent:
    def __init__(self, con, token, host_name="pc-sim", host_id=None, version=None):
        self.con = con
        body = json.dumps({"token": decode_token(token)["tok"],
                           "host": {"name": host_name, "id": host_id or uuid.uuid4().hex,
                                    "os": {"name": "Debian GNU/Linux", "version": "12"}},
                           "agent": {"version": version or "0.0.1"}}).encode()
        st, _, data = con.request("POST", "/api/v1/enroll", body,
                                  {"Content-Type": "application/json"})
        if st != 200:
            raise RuntimeError("enroll failed: %d %s" % (st, data[:200]))
        j = json.loads(data)
        self.agent_id = j["agent_id"]
        self.secret = j["secret"]
        self.seq = {"alerts": 0, "bulk": 0}
        self.version = version or "0.0.1"

    def auth(self):
        return {"Authorization": "Bearer %s.%s" % (self.agent_id, self.secret)}

    def send(self, stream, events):
        """events: dicts without yamori.stream_seq (added here). Returns status."""
        lines = []
        first = self.seq[stream] + 1
        for e in events:
            self.seq[stream] += 1
            e = json.loads(json.dumps(e))
            e.setdefault("yamori", {})["stream_seq"] = self.seq[stream]
            lines.append(json.dumps(e, ensure_ascii=False))
        header = {"agent_id": self.agent_id, "stream": stream, "first_seq": first,
                  "last_seq": self.seq[stream], "count": len(events)}
        raw = (json.dumps(header) + "\n" + "\n".join(lines) + "\n").encode()
        h = self.auth()
        h.update({"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        st, _, data = self.con.request("POST", "/api/v1/events", gzip.compress(raw), h)
        if st != 200:
            raise RuntimeError("events refused: %d %s" % (st, data[:300]))
        return st

    def checkin(self, extra=None):
        body = {"agent_id": self.agent_id, "version": self.version, "rules_version": "sim",
                "status": {}, "counters": {}}
        body.update(extra or {})
        h = self.auth()
        h["Content-Type"] = "application/json"
        st, _, data = self.con.request("POST", "/api/v1/checkin", json.dumps(body).encode(), h)
        return st, (json.loads(data) if data else None)


def decode_token(token):
    b = token.split(".", 1)[1]
    return json.loads(base64.urlsafe_b64decode(b + "=" * (-len(b) % 4)))


def alert(ts_ms, rule="Yamori_Test_Rule", path="/home/u/x.bin", title="Test detection",
          host=None, pid=4242):
    e = {"@timestamp": iso(ts_ms),
         "event": {"kind": "alert", "dataset": "yamori.file", "action": "creation",
                   "category": ["malware"], "severity": 73},
         "rule": {"name": rule, "description": title},
         "file": {"path": path, "hash": {"sha256": "ab" * 32}},
         "process": {"pid": pid, "name": "bash", "executable": "/usr/bin/bash",
                     "entity_id": "e-%d" % pid, "args": ["bash", "-c", "x"],
                     "parent": {"pid": 1, "name": "systemd", "executable": "/usr/lib/systemd/systemd",
                                "entity_id": "e-1"}}}
    if host:
        e["host"] = {"name": host}
    return e


def file_event(ts_ms, path, action="creation"):
    return {"@timestamp": iso(ts_ms),
            "event": {"kind": "event", "dataset": "yamori.file", "action": action},
            "file": {"path": path}}


def process_event(ts_ms, pid, ppid, name, action="exec"):
    return {"@timestamp": iso(ts_ms),
            "event": {"kind": "event", "dataset": "yamori.process", "action": action},
            "process": {"pid": pid, "name": name, "executable": "/usr/bin/" + name,
                        "entity_id": "p-%d" % pid, "args": [name],
                        "parent": {"pid": ppid, "entity_id": "p-%d" % ppid}}}
