"""mitmproxy addon: injects AWS-shaped faults into a fraction of requests.

Run in front of a moto server (tests/faults/ does this):

    mitmdump -q --mode reverse:http://127.0.0.1:<moto port> \
        --listen-host 127.0.0.1 --listen-port <port> -s tests/fault_proxy.py \
        --set fault_rate=0.2 --set fault_seed=7 --set fault_delay=2 \
        --set stats_file=/tmp/faults.json

For each request, with probability `fault_rate`, one fault is chosen at random:

- throttle: the service's own throttling error, in its protocol's shape
    JSON protocols (KMS, DynamoDB, Config: an X-Amz-Target header):
        400 {"__type":"ThrottlingException","message":"Rate exceeded"}
        with x-amzn-ErrorType: ThrottlingException
    query protocols (RDS, STS: a form body with Action=):
        400 <ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>...
    S3 (everything else): 503 <Error><Code>SlowDown</Code>...
- http500, http503: a bare server error with an empty body
- drop: the connection is closed without a response (flow.kill())
- delay: the request is held `fault_delay` seconds (longer than the client's attempt
  timeout), then dropped

`fault_match` (comma-separated substrings of X-Amz-Target, form body or path) limits
faults to matching requests.

`aws_errors` (a JSON list) answers NAMED resources with an AWS error, always, before any
random fault: each entry is {"match": [substrings that must all occur in the X-Amz-Target,
path or body], "status": 403, "content_type": "application/xml", "body": "<Error>...",
"error_type": optional x-amzn-ErrorType header}, or {"match": [...], "patch": {...}} to let the
request through and deep-merge `patch` into its JSON response (a date the emulator cannot
set, a field it does not return). An entry with "region" answers only requests signed for
that Region (an opt-in Region the account has not enabled). Tests put AWS's own error bodies here
(a bucket policy denying s3:GetEncryptionConfiguration, a DynamoDB resource policy denying
DescribeTable, KMS's UnsupportedOperationException for a key in a custom key store), which
moto never produces. Counts by entry index go to `stats_file` under "aws_errors". `fault_kinds` (comma-separated) restricts the choice, or adds `bare404` / `bare403`
(an empty 404 or 403 without an AWS error code: not AWS behaviour, a probe only). The counts of injected faults by
kind, and of requests seen, are written to `stats_file` as JSON after every injection
and on shutdown.
"""

import asyncio
import json
import os
import random
import threading

from mitmproxy import ctx, http

KINDS = ["throttle", "http500", "http503", "drop", "delay"]
# Not AWS behaviour (AWS names the error in the body), only chosen when listed in
# fault_kinds: a bare 404 or 403 as a broken intermediary might send. They probe how the
# evaluator reads a status without an error code.
EXTRA_KINDS = ["bare404", "bare403"]


def merge(into: dict, patch: dict):
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v


class FaultInjector:
    def __init__(self):
        self.rng = random.Random(0)
        self.rate = 0.0
        self.delay = 2.0
        self.kinds = list(KINDS)
        self.counts = {k: 0 for k in KINDS + EXTRA_KINDS}
        # Throttling by protocol, to show each shape was exercised.
        self.throttle_shapes = {"json": 0, "query": 0, "s3": 0}
        self.requests = 0
        self.match = []
        self.aws_errors = []
        self.aws_error_counts = {}
        self.lock = threading.Lock()

    def load(self, loader):
        loader.add_option("fault_rate", str, "0.2", "Fraction of requests that get a fault (0 to 1).")
        loader.add_option("fault_seed", int, 0, "Seed of the fault generator.")
        loader.add_option("fault_delay", str, "2", "Seconds a delayed request is held.")
        loader.add_option("fault_kinds", str, ",".join(KINDS), "Comma-separated fault kinds to choose from.")
        loader.add_option("stats_file", str, "", "Where the fault counts are written as JSON.")
        loader.add_option("aws_errors", str, "[]", "JSON list of named AWS error answers (see the module doc).")
        loader.add_option(
            "fault_match",
            str,
            "",
            "Comma-separated substrings; when set, only requests whose X-Amz-Target, form body or path contains one get faults.",
        )

    def configure(self, updated):
        if "fault_rate" in updated:
            self.rate = float(ctx.options.fault_rate)
        if "fault_seed" in updated:
            self.rng = random.Random(ctx.options.fault_seed)
        if "fault_delay" in updated:
            self.delay = float(ctx.options.fault_delay)
        if "fault_kinds" in updated:
            kinds = [k.strip() for k in ctx.options.fault_kinds.split(",") if k.strip()]
            unknown = [k for k in kinds if k not in KINDS + EXTRA_KINDS]
            if unknown or not kinds:
                raise ValueError(f"unknown fault kinds {unknown}; choose from {KINDS + EXTRA_KINDS}")
            self.kinds = kinds
        if "fault_match" in updated:
            self.match = [m for m in ctx.options.fault_match.split(",") if m]
        if "aws_errors" in updated:
            rules = json.loads(ctx.options.aws_errors or "[]")
            for r in rules:
                if not r.get("match") or not (("status" in r and "body" in r) or "patch" in r):
                    raise ValueError(f"aws_errors entry needs match, and status and body, or patch: {r}")
            self.aws_errors = rules
        if "stats_file" in updated:
            self.write_stats()

    def write_stats(self):
        path = ctx.options.stats_file
        if not path:
            return
        with self.lock:
            data = {
                "requests": self.requests,
                "faults": dict(self.counts),
                "throttle_shapes": dict(self.throttle_shapes),
                "total_faults": sum(self.counts.values()),
                "aws_errors": dict(self.aws_error_counts),
            }
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    @staticmethod
    def protocol(flow: http.HTTPFlow) -> str:
        if "X-Amz-Target" in flow.request.headers:
            return "json"
        ctype = flow.request.headers.get("content-type", "")
        body = flow.request.get_text(strict=False) or ""
        if "x-www-form-urlencoded" in ctype or body.startswith("Action=") or "&Action=" in body:
            return "query"
        return "s3"

    @staticmethod
    def throttle(proto: str) -> http.Response:
        if proto == "json":
            return http.Response.make(
                400,
                json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}),
                {
                    "Content-Type": "application/x-amz-json-1.1",
                    "x-amzn-ErrorType": "ThrottlingException",
                    "x-amzn-RequestId": "fault-proxy",
                },
            )
        if proto == "query":
            return http.Response.make(
                400,
                "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                "<Message>Rate exceeded</Message></Error><RequestId>x</RequestId></ErrorResponse>",
                {"Content-Type": "text/xml"},
            )
        return http.Response.make(
            503,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>"
            "<Message>Please reduce your request rate.</Message><RequestId>x</RequestId>"
            "<HostId>fault-proxy</HostId></Error>",
            {"Content-Type": "application/xml"},
        )

    @staticmethod
    def where(flow: http.HTTPFlow) -> str:
        return " ".join(
            [flow.request.headers.get("X-Amz-Target", ""), flow.request.path, flow.request.get_text(strict=False) or ""]
        )

    @staticmethod
    def in_region(flow: http.HTTPFlow, r: dict) -> bool:
        """An entry's optional "region": the request is signed for that Region (the SigV4
        credential scope, Credential=<key>/<date>/<region>/<service>/aws4_request)."""
        region = r.get("region")
        return not region or f"/{region}/" in flow.request.headers.get("Authorization", "")

    def named_error(self, flow: http.HTTPFlow):
        where = self.where(flow)
        for i, r in enumerate(self.aws_errors):
            if "patch" not in r and self.in_region(flow, r) and all(m in where for m in r["match"]):
                headers = {"Content-Type": r.get("content_type", "application/xml"), "x-amzn-RequestId": "fault-proxy"}
                if r.get("error_type"):
                    headers["x-amzn-ErrorType"] = r["error_type"]
                with self.lock:
                    self.aws_error_counts[str(i)] = self.aws_error_counts.get(str(i), 0) + 1
                return http.Response.make(r["status"], r["body"], headers)
        return None

    def response(self, flow: http.HTTPFlow):
        where = self.where(flow)
        for i, r in enumerate(self.aws_errors):
            if "patch" in r and flow.response is not None and self.in_region(flow, r) and all(m in where for m in r["match"]):
                body = json.loads(flow.response.get_text(strict=False) or "{}")
                merge(body, r["patch"])
                flow.response.set_text(json.dumps(body))
                with self.lock:
                    self.aws_error_counts[str(i)] = self.aws_error_counts.get(str(i), 0) + 1
                self.write_stats()

    async def request(self, flow: http.HTTPFlow):
        if flow.request.path.startswith("/moto-api"):
            return
        named = self.named_error(flow)
        if named is not None:
            flow.response = named
            self.write_stats()
            return
        if self.match:
            where = " ".join(
                [flow.request.headers.get("X-Amz-Target", ""), flow.request.path, flow.request.get_text(strict=False) or ""]
            )
            if not any(m in where for m in self.match):
                return
        with self.lock:
            self.requests += 1
            if self.rng.random() >= self.rate:
                return
            kind = self.rng.choice(self.kinds)
            self.counts[kind] += 1
            proto = self.protocol(flow)
            if kind == "throttle":
                self.throttle_shapes[proto] += 1
        self.write_stats()
        if kind == "throttle":
            flow.response = self.throttle(proto)
        elif kind == "http500":
            flow.response = http.Response.make(500, b"", {"Content-Type": "text/plain"})
        elif kind == "http503":
            flow.response = http.Response.make(503, b"", {"Content-Type": "text/plain"})
        elif kind == "bare404":
            flow.response = http.Response.make(404, b"", {"Content-Type": "text/html"})
        elif kind == "bare403":
            flow.response = http.Response.make(403, b"", {"Content-Type": "text/html"})
        elif kind == "drop":
            flow.kill()
        elif kind == "delay":
            # Other flows go on meanwhile: mitmproxy runs async hooks per flow.
            await asyncio.sleep(self.delay)
            if flow.killable:
                flow.kill()

    def done(self):
        self.write_stats()


addons = [FaultInjector()]
