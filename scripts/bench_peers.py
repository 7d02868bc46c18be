#!/usr/bin/env python3
"""The runner of scripts/bench-peers (issue 14): kms-rotation-guard's periodic sweep, the
naive boto3 baseline, Prowler and Cloud Custodian, one after another, against one moto
estate, each through the same counting proxy. Standard library only; run it with the moto
venv's Python (scripts/bench-peers does).

The estate is seeded by the benchmark itself (`bench --seed-only`), so it is the estate of
scripts/bench: KMS keys (Origin EXTERNAL, a LastRotationDate tag 0..500 days old) in the
security account, RDS instances, DynamoDB tables and S3 buckets in the workload account,
each encrypted under a key referenced by its alias ARN.

A real deployment runs each tool where the data is: the resource checks in the workload
account, the key checks in the security account. Prowler and Custodian are therefore run
twice, once per account (the second time through an assumed auditor role, `--role` /
`--assume`), and their two runs are summed. Our sweep reaches into the security account
through its key-reader role by itself.

Measured per tool: wall time (spawn to exit), peak RSS (ru_maxrss of the process and the
children it waited for, from wait4), AWS calls (the proxy's tally), and what it flags
(failed findings per check, resources matched per policy, NON_COMPLIANT per rule).
Prints a table on stdout and writes a JSON report.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

REGION = "eu-west-1"
WORKLOAD = "123456789012"
SECURITY = "111111111111"
# An auditor role in the security account (moto's STS hands out credentials that act in
# the role's account; the seeding uses the same role name).
AUDITOR = f"arn:aws:iam::{SECURITY}:role/admin"
ROOT = Path(__file__).resolve().parent.parent

# Prowler's KMS, RDS, DynamoDB and S3 encryption checks (`prowler aws --list-checks`,
# Prowler 5.46). Those that exist in the installed version are used; the rest are reported.
PROWLER_CHECKS = {
    "security": [
        "kms_cmk_rotation_enabled",
        "kms_cmk_not_deleted_unintentionally",
        "kms_cmk_are_used",
        "kms_key_not_publicly_accessible",
    ],
    "workload": [
        "rds_instance_storage_encrypted",
        "rds_cluster_storage_encrypted",
        "dynamodb_tables_kms_cmk_encryption_enabled",
        "s3_bucket_default_encryption",
        "s3_bucket_kms_encryption",
    ],
}


def log(msg):
    print(f"bench-peers: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=30):
    start = time.monotonic()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"bench-peers: {what} exited early ({proc.returncode})")
            if time.monotonic() - start > timeout:
                sys.exit(f"bench-peers: {what} did not listen within {timeout} s")
            time.sleep(0.05)


def aws_env(endpoint):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    return env


class Proxy:
    """mitmdump in reverse mode in front of moto, with the counting addon."""

    def __init__(self, mitmdump, upstream, logdir, latency_ms):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [mitmdump, "-q", "--mode", f"reverse:{upstream}", "--listen-host", "127.0.0.1",
             "--listen-port", str(self.port), "-s", str(ROOT / "scripts/bench_peers_proxy.py"),
             "--set", f"latency_ms={latency_ms}"],
            stdout=open(logdir / "proxy.log", "w"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        wait_port(self.port, self.proc, "mitmdump")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _get(self, path, method="GET"):
        req = urllib.request.Request(self.endpoint + path, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def reset(self):
        self._get("/__peers/reset", "POST")

    def calls(self):
        return self._get("/__peers/calls")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(argv, env, logfile, ok_codes=(0,), cwd=None):
    """Runs argv to completion: (wall seconds, peak RSS KiB, exit code)."""
    with open(logfile, "w") as out:
        start = time.perf_counter()
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
    p.returncode = code = os.waitstatus_to_exitcode(status)
    if code not in ok_codes:
        tail = Path(logfile).read_text(errors="replace")[-3000:]
        sys.exit(f"bench-peers: {argv[0]} exited {code} (see {logfile}):\n{tail}")
    return wall, usage.ru_maxrss, code


def run_tool(proxy, argv, env, logfile, **kw):
    proxy.reset()
    wall, rss, code = measure(argv, env, logfile, **kw)
    return {"wall_s": wall, "peak_rss_kib": rss, "exit_code": code, "calls": proxy.calls(), "log": str(logfile)}


def total_calls(calls):
    return sum(calls.values())


# ───────────────────────────── the tools ─────────────────────────────


def ours(args, proxy, env, work):
    """The three periodic sweeps, each in its own process as the Lambdas run them."""
    runs = []
    flagged = {}
    for rule in ("rds", "dynamodb", "s3"):
        r = run_tool(proxy, [args.bench, "--sweep-only", "--endpoint", proxy.endpoint, "--rule", rule],
                     env, work / f"ours-{rule}.log")
        # The child prints one JSON object (its last stdout line) among log lines.
        lines = [l for l in Path(r["log"]).read_text().splitlines() if l.startswith("{")]
        out = json.loads(lines[-1])
        r["compliance"] = out["compliance"]
        flagged[f"kms-rotation-{rule}"] = out["compliance"].get("NON_COMPLIANT", 0)
        runs.append(r)
    return combine("kms-rotation-guard sweep", runs, flagged, unit="NON_COMPLIANT resources")


def baseline(args, proxy, env, work):
    r = run_tool(proxy, [args.python, str(ROOT / "scripts/bench_baseline.py"), "--endpoint", proxy.endpoint,
                         "--account", WORKLOAD], env, work / "baseline.log")
    lines = [l for l in Path(r["log"]).read_text().splitlines() if l.startswith("{")]
    out = json.loads(lines[-1])
    flagged = {"all three rules": out["compliance"].get("NON_COMPLIANT", 0)}
    return combine("boto3 baseline", [r], flagged, unit="NON_COMPLIANT resources")


def prowler_checks(prowler, env, work):
    """The checks of PROWLER_CHECKS that this Prowler has."""
    out = subprocess.run([prowler, "aws", "--list-checks", "--no-banner"], env=env, capture_output=True,
                         text=True, timeout=300)
    listed = set(re.findall(r"\b([a-z0-9]+(?:_[a-z0-9]+)+)\b", out.stdout))
    have = {acct: [c for c in cs if c in listed] for acct, cs in PROWLER_CHECKS.items()}
    missing = [c for cs in PROWLER_CHECKS.values() for c in cs if c not in listed]
    if missing:
        log(f"Prowler has no check(s) {', '.join(missing)}; skipped")
    return have, missing


def prowler(args, proxy, env, work):
    checks, missing = prowler_checks(args.prowler, env, work)
    runs, flagged, details = [], {}, {}
    for acct, role in (("workload", None), ("security", AUDITOR)):
        if not checks[acct]:
            continue
        outdir = work / f"prowler-{acct}"
        shutil.rmtree(outdir, ignore_errors=True)
        argv = [args.prowler, "aws", "--no-banner", "-f", REGION, "--checks", *checks[acct],
                "--output-formats", "json-ocsf", "--output-directory", str(outdir),
                "--output-filename", "findings"]
        if role:
            argv += ["--role", role]
        # Exit code 3: the run found failures.
        r = run_tool(proxy, argv, env, work / f"prowler-{acct}.log", ok_codes=(0, 3), cwd=work)
        r["account"] = acct
        findings = json.loads((outdir / "findings.ocsf.json").read_text() or "[]")
        tally = Counter()
        for f in findings:
            check = f["metadata"]["event_code"]
            tally[(check, f["status_code"])] += 1
            if f["status_code"] == "FAIL" and check not in details:
                details[check] = f.get("status_detail", "")
        for check in checks[acct]:
            flagged[check] = {"FAIL": tally[(check, "FAIL")], "PASS": tally[(check, "PASS")]}
        runs.append(r)
    res = combine("Prowler", runs, flagged, unit="FAIL / PASS findings per check")
    res["example_fail"] = details
    res["checks_missing"] = missing
    return res


def custodian(args, proxy, env, work):
    policies = ROOT / "scripts/bench-peers-custodian.yml"
    runs, flagged = [], {}
    for acct, role in (("workload", None), ("security", AUDITOR)):
        outdir = work / f"custodian-{acct}"
        shutil.rmtree(outdir, ignore_errors=True)
        argv = [args.custodian, "run", "--cache-period", "0", "--region", REGION, "-s", str(outdir), str(policies)]
        if role:
            argv += ["--assume", role]
        r = run_tool(proxy, argv, env, work / f"custodian-{acct}.log", cwd=work)
        r["account"] = acct
        for res_file in sorted(outdir.glob("*/resources.json")):
            n = len(json.loads(res_file.read_text()))
            name = res_file.parent.name
            flagged[name] = flagged.get(name, 0) + n
        runs.append(r)
    res = combine("Cloud Custodian", runs, flagged, unit="resources matched per policy (both accounts)")
    res["errors"] = sorted({l.strip() for r in runs for l in Path(r["log"]).read_text().splitlines()
                            if "ERROR" in l or "Traceback" in l})[:10]
    return res


def combine(tool, runs, flagged, unit):
    calls = Counter()
    for r in runs:
        calls.update(r["calls"])
    return {
        "tool": tool,
        "wall_s": sum(r["wall_s"] for r in runs),
        "peak_rss_kib": max(r["peak_rss_kib"] for r in runs),
        "calls_total": total_calls(calls),
        "calls": dict(sorted(calls.items())),
        "flagged": flagged,
        "flagged_unit": unit,
        "runs": runs,
    }


# ───────────────────────────── report ─────────────────────────────


def table(report):
    e = report["estate"]
    line = "─" * 96
    print()
    print(line)
    print(f"peers on one moto estate: {e['resources']} resources ({e['rds']} RDS / {e['dynamodb']} DynamoDB / "
          f"{e['s3']} S3) over {e['keys']} EXTERNAL keys")
    print(f"nproc {report['machine']['nproc']}; every tool through the same counting proxy, "
          f"adding {e['added_latency_ms']} ms per request; our sweep: {report['machine']['bench']}")
    print(line)
    print(f"{'tool':<26} {'wall s':>8} {'peak RSS MiB':>13} {'AWS calls':>10}   runs")
    for t in report["tools"]:
        runs = ", ".join(f"{r.get('account', '')} {r['wall_s']:.1f}s".strip() for r in t["runs"])
        print(f"{t['tool']:<26} {t['wall_s']:>8.2f} {t['peak_rss_kib'] / 1024:>13.1f} {t['calls_total']:>10}   {runs}")
    print(line)
    print("AWS calls by operation")
    ops = sorted({op for t in report["tools"] for op in t["calls"]})
    names = [t["tool"][:14] for t in report["tools"]]
    print(f"  {'operation':<40}" + "".join(f"{n:>15}" for n in names))
    for op in ops:
        print(f"  {op:<40}" + "".join(f"{t['calls'].get(op, 0):>15}" for t in report["tools"]))
    print(line)
    print("what each tool flags")
    for t in report["tools"]:
        print(f"  {t['tool']} ({t['flagged_unit']}):")
        for k, v in t["flagged"].items():
            v = f"FAIL {v['FAIL']:>5}  PASS {v['PASS']:>5}" if isinstance(v, dict) else f"{v:>5}"
            print(f"    {k:<48} {v}")
        for k, v in t.get("example_fail", {}).items():
            print(f"    e.g. {k}: {v[:150]}")
        for l in t.get("errors", []):
            print(f"    log: {l[:150]}")
    print(line)
    print(f"our verdicts on this estate: {json.dumps(report['ours_compliance'])}")
    print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True, help="the bench example binary (seeds the estate; our sweep)")
    ap.add_argument("--python", required=True, help="the moto venv's Python (the boto3 baseline)")
    ap.add_argument("--mitmdump", required=True)
    ap.add_argument("--prowler", required=True)
    ap.add_argument("--custodian", required=True)
    ap.add_argument("--resources", type=int, default=200)
    ap.add_argument("--keys", type=int, default=20)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--latency-ms", type=int, default=0, help="held at the proxy before each request (AWS round trip)")
    ap.add_argument("--only", default="ours,baseline,prowler,custodian", help="comma-separated tools to run")
    ap.add_argument("--out", default=str(ROOT / "target/bench/peers.json"))
    args = ap.parse_args()

    work = ROOT / "target/bench/peers"
    work.mkdir(parents=True, exist_ok=True)
    log(f"seeding {args.resources} resources over {args.keys} keys (bench --seed-only)")
    seed_start = time.perf_counter()
    # One moto process: the counting proxy sits in front of one endpoint, so every tool's
    # calls are counted in one place. The seeder prints VAR=URL lines, all one URL here.
    seeder = subprocess.Popen([args.bench, "--seed-only", "--single-moto", "--resources", str(args.resources),
                               "--keys", str(args.keys)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    moto = seeder.stdout.readline().strip().split("=", 1)[-1]
    if not moto.startswith("http"):
        sys.exit(f"bench-peers: the seeder printed no endpoint ({seeder.wait()})")
    seed_s = time.perf_counter() - seed_start
    log(f"moto at {moto}, seeded in {seed_s:.1f} s")
    proxy = Proxy(args.mitmdump, moto, work, args.latency_ms)
    try:
        env = aws_env(proxy.endpoint)
        only = set(args.only.split(","))
        tools = []
        ours_result = None
        for name, fn in (("ours", ours), ("baseline", baseline), ("prowler", prowler), ("custodian", custodian)):
            if name not in only or (name == "baseline" and args.no_baseline):
                continue
            log(f"running {name}")
            t = fn(args, proxy, env, work)
            log(f"{name}: {t['wall_s']:.1f} s, {t['calls_total']} calls")
            tools.append(t)
            if name == "ours":
                ours_result = t
    finally:
        proxy.stop()
        seeder.stdin.close()
        seeder.wait(30)

    rds = args.resources * 20 // 100
    ddb = args.resources * 40 // 100
    ours_compliance = Counter()
    for r in (ours_result or {}).get("runs", []):
        ours_compliance.update(r.get("compliance", {}))
    report = {
        "machine": {"nproc": os.cpu_count(), "bench": args.bench},
        "estate": {"resources": args.resources, "keys": args.keys, "rds": rds, "dynamodb": ddb,
                   "s3": args.resources - rds - ddb, "seed_s": seed_s,
                   "added_latency_ms": args.latency_ms},
        "tools": tools,
        "ours_compliance": dict(sorted(ours_compliance.items())),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    table(report)
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
