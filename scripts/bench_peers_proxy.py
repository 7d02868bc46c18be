"""mitmproxy addon for scripts/bench-peers: counts the AWS API calls that pass through a
reverse proxy in front of moto, by service and operation.

    mitmdump -q --mode reverse:http://127.0.0.1:<moto port> \
        --listen-host 127.0.0.1 --listen-port <port> -s scripts/bench_peers_proxy.py

`--set latency_ms=20` holds every request that long before passing it on (a stand-in for
the round trip to AWS, as `scripts/bench --latency-ms`).

The runner reads and resets the tally between tools through the proxy itself:
`GET /__peers/calls` answers the counts as JSON, `POST /__peers/reset` zeroes them. Neither
reaches moto.

The operation is read the way each AWS protocol names it:
- JSON and rpc-v2 protocols (KMS, DynamoDB, Config, ...): the X-Amz-Target header, or the
  /service/S/operation/OP path;
- query protocols (RDS, STS, IAM, EC2, ...): Action= in the form body or the query string;
- S3 (REST-XML): the method and the sub-resource (`GET ?encryption` is GetBucketEncryption).
The service is the signing name in the Authorization header's credential scope.
"""

import asyncio
import json
import re
import threading
import urllib.parse
from collections import Counter

from mitmproxy import ctx, http

SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
# The S3 sub-resources the peers read, by their API names; others are shown as `GET ?sub`.
S3_NAMES = {
    ("GET", ""): "ListObjects",
    ("HEAD", ""): "HeadBucket",
    ("GET", "encryption"): "GetBucketEncryption",
    ("GET", "location"): "GetBucketLocation",
    ("GET", "policy"): "GetBucketPolicy",
    ("GET", "acl"): "GetBucketAcl",
    ("GET", "versioning"): "GetBucketVersioning",
    ("GET", "logging"): "GetBucketLogging",
    ("GET", "tagging"): "GetBucketTagging",
    ("GET", "publicAccessBlock"): "GetPublicAccessBlock",
    ("GET", "ownershipControls"): "GetBucketOwnershipControls",
    ("GET", "object-lock"): "GetObjectLockConfiguration",
    ("GET", "replication"): "GetBucketReplication",
    ("GET", "lifecycle"): "GetBucketLifecycleConfiguration",
    ("GET", "website"): "GetBucketWebsite",
    ("GET", "notification"): "GetBucketNotificationConfiguration",
}


def operation(flow: http.HTTPFlow) -> str:
    req = flow.request
    m = SCOPE.search(req.headers.get("authorization", ""))
    service = m.group(1) if m else "unsigned"
    target = req.headers.get("x-amz-target")
    if target:
        return f"{service}.{target.rsplit('.', 1)[-1]}"
    rpc = re.match(r"^/service/[^/]+/operation/([^/?]+)", req.path)
    if rpc:
        return f"{service}.{rpc.group(1)}"
    form = {}
    if "form-urlencoded" in req.headers.get("content-type", ""):
        form = urllib.parse.parse_qs(req.get_text(strict=False) or "")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(req.path).query, keep_blank_values=True)
    action = (form.get("Action") or query.get("Action") or [None])[0]
    if action:
        return f"{service}.{action}"
    if service == "s3":
        path = urllib.parse.urlsplit(req.path).path
        if path in ("", "/") and req.method == "GET":
            return "s3.ListBuckets"
        subs = [k for k in query if k not in ("x-id", "list-type", "max-keys", "prefix", "delimiter")]
        sub = subs[0] if subs else ""
        if path.strip("/").count("/") >= 1 and not sub:
            return f"s3.{req.method}Object"
        return "s3." + S3_NAMES.get((req.method, sub), f"{req.method} ?{sub}" if sub else f"{req.method} bucket")
    return f"{service}.{req.method} {urllib.parse.urlsplit(req.path).path}"


class Count:
    def __init__(self):
        self.calls = Counter()
        self.lock = threading.Lock()

    def load(self, loader):
        loader.add_option("latency_ms", int, 0, "Milliseconds each request is held before it is passed on.")

    async def request(self, flow: http.HTTPFlow):
        path = flow.request.path
        if path.startswith("/__peers/"):
            with self.lock:
                body = json.dumps(dict(sorted(self.calls.items())))
                if path.startswith("/__peers/reset"):
                    self.calls.clear()
            flow.response = http.Response.make(200, body, {"content-type": "application/json"})
            return
        op = operation(flow)
        with self.lock:
            self.calls[op] += 1
        if ctx.options.latency_ms:
            await asyncio.sleep(ctx.options.latency_ms / 1000)


addons = [Count()]
