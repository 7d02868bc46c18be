#!/usr/bin/env python3
"""The naive baseline for scripts/bench: a straightforward boto3 Config rule evaluator,
shaped like the common hand-written rule (and rdklib's evaluate_periodic loop).

For each of the three rules (RDS, DynamoDB, S3), one after another:
  enumerate the resources (DescribeDBInstances/DescribeDBClusters, ListTables +
  DescribeTable, ListBuckets + GetBucketEncryption), then for **each resource**,
  sequentially, DescribeKey and ListResourceTags through the key-reader role assumed in
  the key's account, compute the age of the LastRotationDate tag, and send the
  evaluations with PutEvaluations in batches of 100 (TestMode: moto accepts no other).

No cache, no concurrency: that is the point of the comparison. Calls are counted per
operation with botocore's before-call event (one per API call; retries not included).

Run with the moto venv's Python (boto3 comes with moto):
  AWS_ENDPOINT_URL_KMS=http://127.0.0.1:PORT ... .tools/venv/bin/python scripts/bench_baseline.py
or, for every service at one endpoint, --endpoint http://127.0.0.1:PORT. Without --endpoint
boto3 takes each service's endpoint from AWS_ENDPOINT_URL_<SERVICE> (then AWS_ENDPOINT_URL),
as scripts/bench sets them: the same endpoints the Rust sweeps use.
Prints one JSON object on stdout.
"""
import argparse
import collections
import datetime as dt
import json
import sys
import time

import boto3

MAX_AGE_DAYS = 365
TAG = "LastRotationDate"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", help="one endpoint for every service (default: the environment)")
    ap.add_argument("--region", default="eu-west-1")
    ap.add_argument("--account", default="123456789012")
    ap.add_argument("--reader-role", default="kms-rotation-guard-key-reader")
    ap.add_argument(
        "--member-accounts",
        default="",
        help="comma-separated: run the rules in each of these accounts in turn, through --member-role",
    )
    ap.add_argument("--member-role", default="kms-rotation-guard-member")
    args = ap.parse_args()

    calls = collections.Counter()

    def count(event_name, **_):
        # before-call.<service>.<Operation>
        _, service, op = event_name.split(".", 2)
        service = {"config-service": "config"}.get(service, service)
        calls[f"{service}.{op}"] += 1

    def client(name, account=None, **kw):
        c = boto3.client(name, region_name=args.region, endpoint_url=args.endpoint, **kw)
        c.meta.events.register("before-call", count)
        if account:
            # moto knows assumed credentials only in the process that issued them; with one
            # process per service the others need the account named (scripts/bench does
            # the same for the Rust paths). AWS takes it from the credentials.
            def name_account(request, **_):
                request.headers["x-moto-account-id"] = account

            c.meta.events.register("before-send", name_account)
        return c

    from botocore.config import Config

    s3cfg = Config(s3={"addressing_style": "path"})
    sts = client("sts")
    now = dt.datetime.now(dt.timezone.utc)
    per_rule = []
    tallies = collections.Counter()
    start_all = time.perf_counter()
    cpu_all = time.process_time()
    members = [a for a in args.member_accounts.split(",") if a]
    for account in members or [args.account]:
        if members:
            # The seed-style rule in a member account: its role, assumed once per account.
            role = f"arn:aws:iam::{account}:role/{args.member_role}"
            c = sts.assume_role(RoleArn=role, RoleSessionName="baseline")["Credentials"]
            creds = dict(
                aws_access_key_id=c["AccessKeyId"],
                aws_secret_access_key=c["SecretAccessKey"],
                aws_session_token=c["SessionToken"],
            )
            clients = {n: client(n, account, **creds) for n in ("rds", "dynamodb", "config")}
            clients["s3"] = client("s3", account, config=s3cfg, **creds)
        else:
            clients = {n: client(n) for n in ("rds", "dynamodb", "config")}
            clients["s3"] = client("s3", config=s3cfg)
        clients["sts"] = sts
        run_rules(args, clients, client, account, now, calls, per_rule, tallies)
    wall = time.perf_counter() - start_all
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": time.process_time() - cpu_all,
                "calls": dict(sorted(calls.items())),
                "calls_total": sum(calls.values()),
                "evaluations": sum(r["evaluations"] for r in per_rule),
                "compliance": dict(sorted(tallies.items())),
                "accounts": len(members) or 1,
                "per_rule": per_rule if not members else [],
            }
        )
    )


def run_rules(args, clients, client, home_account, now, calls, per_rule, tallies):
    """The three rules, one after another, in one account."""
    ordering = now
    rules = [
        ("kms-rotation-rds", enumerate_rds),
        ("kms-rotation-dynamodb", enumerate_dynamodb),
        ("kms-rotation-s3", enumerate_s3),
    ]
    for name, enumerate_fn in rules:
        before = sum(calls.values())
        start = time.perf_counter()
        kms_by_account = {}

        def kms_for(account):
            # The key-reader role in the key's account, assumed once per account per run.
            if account is None or account == home_account:
                if account not in kms_by_account:
                    kms_by_account[account] = client("kms")
                return kms_by_account[account]
            if account not in kms_by_account:
                role = f"arn:aws:iam::{account}:role/{args.reader_role}"
                c = clients["sts"].assume_role(RoleArn=role, RoleSessionName="baseline")["Credentials"]
                kms_by_account[account] = client(
                    "kms",
                    account,
                    aws_access_key_id=c["AccessKeyId"],
                    aws_secret_access_key=c["SecretAccessKey"],
                    aws_session_token=c["SessionToken"],
                )
            return kms_by_account[account]

        evaluations = []
        for rtype, rid, key in enumerate_fn(clients):
            compliance, annotation = judge(kms_for, key, now)
            tallies[compliance] += 1
            evaluations.append(
                {
                    "ComplianceResourceType": rtype,
                    "ComplianceResourceId": rid,
                    "ComplianceType": compliance,
                    "Annotation": annotation[:256],
                    "OrderingTimestamp": ordering,
                }
            )
        for i in range(0, len(evaluations), 100):
            clients["config"].put_evaluations(
                Evaluations=evaluations[i : i + 100], ResultToken="TESTMODE", TestMode=True
            )
        per_rule.append(
            {
                "rule": name,
                "evaluations": len(evaluations),
                "calls_total": sum(calls.values()) - before,
                "wall_s": time.perf_counter() - start,
            }
        )
        if home_account == args.account:
            print(f"baseline: {name}: {len(evaluations)} in {per_rule[-1]['wall_s']:.1f} s", file=sys.stderr)


def judge(kms_for, key, now):
    """COMPLIANT when the key's LastRotationDate tag is at most MAX_AGE_DAYS old."""
    if not key:
        return "NON_COMPLIANT", "not encrypted with a customer managed KMS key"
    account = key.split(":")[4] if key.startswith("arn:") else None
    kms = kms_for(account)
    try:
        meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    except kms.exceptions.NotFoundException:
        return "NON_COMPLIANT", f"{key} not found"
    if meta.get("KeyManager") == "AWS":
        return "NON_COMPLIANT", f"{key} is AWS-managed"
    if meta["KeyState"] != "Enabled":
        return "NON_COMPLIANT", f"{key} is {meta['KeyState']}"
    tags = {}
    kwargs = {"KeyId": meta["KeyId"]}
    while True:
        out = kms.list_resource_tags(**kwargs)
        tags.update({t["TagKey"]: t["TagValue"] for t in out.get("Tags", [])})
        if not out.get("Truncated"):
            break
        kwargs["Marker"] = out["NextMarker"]
    if TAG not in tags:
        return "NON_COMPLIANT", f"{key} has no {TAG} tag"
    try:
        rotated = dt.datetime.strptime(tags[TAG][:10], "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return "NON_COMPLIANT", f"{key}: {TAG} {tags[TAG]!r} is not a date"
    age = (now - rotated).days
    if age > MAX_AGE_DAYS:
        return "NON_COMPLIANT", f"{key} last rotated {tags[TAG]}, {age} days ago, limit {MAX_AGE_DAYS} days"
    return "COMPLIANT", f"{key} rotated {tags[TAG]}, {age} days ago"


def enumerate_rds(c):
    for page in c["rds"].get_paginator("describe_db_instances").paginate():
        for db in page["DBInstances"]:
            key = db.get("KmsKeyId") if db.get("StorageEncrypted") else None
            yield "AWS::RDS::DBInstance", db["DbiResourceId"], key
    for page in c["rds"].get_paginator("describe_db_clusters").paginate():
        for cl in page["DBClusters"]:
            key = cl.get("KmsKeyId") if cl.get("StorageEncrypted") else None
            yield "AWS::RDS::DBCluster", cl["DbClusterResourceId"], key


def enumerate_dynamodb(c):
    for page in c["dynamodb"].get_paginator("list_tables").paginate():
        for name in page["TableNames"]:
            sse = c["dynamodb"].describe_table(TableName=name)["Table"].get("SSEDescription") or {}
            key = sse.get("KMSMasterKeyArn") if sse.get("Status") in ("ENABLED", "ENABLING", "UPDATING") else None
            yield "AWS::DynamoDB::Table", name, key


def enumerate_s3(c):
    s3 = c["s3"]
    for b in s3.list_buckets().get("Buckets", []):
        name = b["Name"]
        try:
            rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        except s3.exceptions.ClientError:
            rules = []
        default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
        key = default.get("KMSMasterKeyID") if default.get("SSEAlgorithm") == "aws:kms" else None
        yield "AWS::S3::Bucket", name, key


if __name__ == "__main__":
    main()
