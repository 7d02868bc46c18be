//! The retirement rights (issue 22): only the retirement stack's role (retirement.yaml) may
//! disable a key, schedule its deletion or delete anything, and only under its conditions.
//! Every template at the top of the repository is read, so a new stack cannot slip one in.

use std::path::Path;

use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every CloudFormation template at the top of the repository.
fn templates() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            let v: Value = serde_yaml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            if v.get("Resources").is_some() {
                out.push((p.file_name().unwrap().to_string_lossy().into_owned(), v));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.iter().any(|(n, _)| n == "retirement.yaml"), "retirement.yaml is missing");
    out
}

/// The rights that take keys out of use or destroy something.
const RETIREMENT_ACTIONS: [&str; 7] = [
    "kms:DisableKey",
    "kms:ScheduleKeyDeletion",
    "kms:DeleteImportedKeyMaterial",
    "kms:DeleteAlias",
    "kms:DeleteCustomKeyStore",
    "kms:DisableKeyRotation",
    "kms:CancelKeyDeletion",
];

fn glob(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.to_ascii_lowercase(), s.to_ascii_lowercase());
    match p.split_once('*') {
        None => p == s,
        Some((head, tail)) => {
            s.starts_with(head)
                && (tail.is_empty() || glob(tail, &s[head.len()..]) || {
                    (head.len()..=s.len()).any(|i| glob(tail, &s[i..]))
                })
        }
    }
}

/// Every statement under a resource (inline policies, `!If` branches included), as
/// (effect, actions, the statement).
fn statements(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Mapping(m) => {
            if m.contains_key("Effect") && (m.contains_key("Action") || m.contains_key("NotAction")) {
                out.push(v.clone());
            }
            for (_, child) in m {
                statements(child, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|c| statements(c, out)),
        Value::Tagged(t) => statements(&t.value, out),
        _ => {}
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(s) => s.iter().flat_map(strings).collect(),
        Value::Tagged(t) => strings(&t.value),
        _ => vec![],
    }
}

#[test]
fn only_the_retirement_role_may_disable_or_delete() {
    let mut holders = Vec::new();
    for (file, t) in templates() {
        for (id, r) in t["Resources"].as_mapping().unwrap() {
            let id = id.as_str().unwrap().to_string();
            // Identity policies grant; VPC endpoint policies and key policies only limit or
            // delegate to IAM (a key policy's account-root statement is IAM's to narrow).
            let ty = r["Type"].as_str().unwrap_or("");
            if !(ty.starts_with("AWS::IAM::") || ty == "AWS::Serverless::Function") {
                continue;
            }
            let mut sts = Vec::new();
            statements(r, &mut sts);
            for st in sts {
                let allow = st.get("Effect").and_then(Value::as_str) == Some("Allow");
                assert!(
                    !(allow && st.get("NotAction").is_some()),
                    "{file} {id}: Allow with NotAction grants everything not listed"
                );
                if !allow {
                    continue;
                }
                for a in strings(&st["Action"]) {
                    for r in RETIREMENT_ACTIONS.iter().filter(|r| glob(&a, r)) {
                        holders.push((file.clone(), id.clone(), r.to_string(), st.clone()));
                    }
                }
            }
        }
    }
    for (file, id, action, _) in &holders {
        assert!(
            file == "retirement.yaml" && id == "RetirementRole",
            "{file} {id} holds {action}: only the retirement stack's role may"
        );
    }
    let granted: Vec<&str> = holders.iter().map(|h| h.2.as_str()).collect();
    for a in ["kms:DisableKey", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"] {
        assert!(granted.contains(&a), "the retirement role lacks {a}");
    }
    for a in ["kms:DeleteImportedKeyMaterial", "kms:DeleteAlias", "kms:DeleteCustomKeyStore", "kms:DisableKeyRotation"]
    {
        assert!(!granted.contains(&a), "the retirement role must not hold {a}");
    }
    // Each of its destructive rights rests on the recorded successor and imported keys, and
    // deletion on the longest waiting period.
    for (_, _, action, st) in &holders {
        let cond = &st["Condition"];
        assert_eq!(cond["StringEquals"]["kms:KeyOrigin"].as_str(), Some("EXTERNAL"), "{action}");
        assert_eq!(
            cond["Null"]["aws:ResourceTag/KmsRotationGuardSuccessor"].as_str(),
            Some("false"),
            "{action} must need the recorded successor"
        );
        if action == "kms:ScheduleKeyDeletion" {
            assert_eq!(cond["NumericEquals"]["kms:ScheduleKeyDeletionPendingWindowInDays"].as_u64(), Some(30));
        }
    }
}

#[test]
fn the_retirement_role_cannot_use_keys_and_is_assumed_with_mfa_by_default() {
    let t: Value = serde_yaml::from_str(&std::fs::read_to_string(root().join("retirement.yaml")).unwrap()).unwrap();
    let mut sts = Vec::new();
    statements(&t["Resources"]["RetirementRole"]["Properties"]["Policies"], &mut sts);
    let actions: Vec<String> = sts.iter().flat_map(|s| strings(&s["Action"])).collect();
    for a in &actions {
        for used in [
            "kms:Decrypt",
            "kms:Encrypt",
            "kms:ReEncryptFrom",
            "kms:GenerateDataKey",
            "kms:CreateGrant",
            "kms:PutKeyPolicy",
            "kms:ImportKeyMaterial",
        ] {
            assert!(!glob(a, used), "the retirement role must not hold {used} (via {a})");
        }
        assert!(!a.contains('*'), "no wildcard action: {a}");
    }
    // The records it writes, and nothing else.
    let tags = sts.iter().find(|s| strings(&s["Action"]).contains(&"kms:TagResource".to_string())).unwrap();
    assert_eq!(
        strings(&tags["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]),
        vec!["KmsRotationGuardRetirement", "KmsRotationGuardRollback"]
    );
    let src = include_str!("../../src/runbook/mod.rs");
    for tag in ["KmsRotationGuardRetirement", "KmsRotationGuardRollback"] {
        assert!(src.contains(&format!("\"{tag}\"")), "src/runbook names {tag}");
    }
    assert_eq!(t["Parameters"]["RequireMfa"]["Default"].as_str(), Some("true"));
    // Nothing runs by itself: no function, rule or schedule in the stack.
    for (_, r) in t["Resources"].as_mapping().unwrap() {
        let ty = r["Type"].as_str().unwrap();
        assert!(ty.starts_with("AWS::IAM::"), "retirement.yaml deploys only the role, found {ty}");
    }
}

#[test]
fn glob_matches_like_iam() {
    assert!(glob("kms:*", "kms:DisableKey"));
    assert!(glob("kms:Disable*", "kms:DisableKey"));
    assert!(glob("*", "kms:ScheduleKeyDeletion"));
    assert!(glob("KMS:disablekey", "kms:DisableKey"));
    assert!(!glob("kms:Describe*", "kms:DisableKey"));
    assert!(!glob("kms:EnableKey", "kms:DisableKey"));
}

#[test]
fn cfn_lint_and_checkov_accept_the_retirement_stack() {
    let cfn_lint = root().join(".tools/venv/bin/cfn-lint");
    assert!(cfn_lint.exists(), "cfn-lint not found at {}: run scripts/setup", cfn_lint.display());
    let out =
        std::process::Command::new(&cfn_lint).args(["--", "retirement.yaml"]).current_dir(root()).output().unwrap();
    assert!(
        out.status.success(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let checkov = root().join(".tools/checkov-venv/bin/checkov");
    assert!(checkov.exists(), "checkov not found at {}: run scripts/setup", checkov.display());
    let out = std::process::Command::new(&checkov)
        .args(["-f", "retirement.yaml", "--framework", "cloudformation", "--compact", "--quiet", "--skip-download"])
        .current_dir(root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("Failed checks: 0"), "checkov: {text}");
}

/// The key-use watcher (issue 22) lives in security-account.yaml next to the alert topic it
/// publishes to; the checks run once the topic exists there (stream i20's template).
#[test]
fn the_watcher_gets_read_only_failures_and_publishes_only() {
    let t: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join("security-account.yaml")).unwrap()).unwrap();
    let r = &t["Resources"];
    if r.get("AlertTopic").is_none() {
        return; // before the security account has a topic, there is nothing to alert to
    }
    let rule = &r["WatcherRule"]["Properties"];
    // Decrypt and GenerateDataKey are read-only management events: delivered only in this state.
    assert_eq!(rule["State"].as_str(), Some("ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"));
    let pattern = &rule["EventPattern"]["detail"];
    assert_eq!(pattern["errorCode"][0]["exists"].as_bool(), Some(true));
    let names = serde_yaml::to_string(&pattern["eventName"]).unwrap();
    for n in ["Decrypt", "CreateGrant", "GenerateDataKey", "ReEncrypt"] {
        assert!(names.contains(n), "the rule misses {n}: {names}");
    }
    let binary = &r["WatcherFunction"]["Metadata"]["BuildProperties"]["Binary"];
    assert_eq!(binary.as_str(), Some("key-use-watcher"));
    let mut sts = Vec::new();
    statements(&r["WatcherRole"]["Properties"]["Policies"], &mut sts);
    for st in &sts {
        for a in strings(&st["Action"]) {
            let read = ["kms:Describe", "kms:List", "sns:Publish", "sqs:SendMessage"].iter().any(|p| a.starts_with(p));
            let topic_key = a == "kms:GenerateDataKey" || a == "kms:Decrypt";
            assert!(read || topic_key, "the watcher role holds {a}");
            if topic_key {
                // Only the alert topic's key, and only through SNS.
                let via = &st["Condition"]["StringEquals"]["kms:ViaService"];
                assert!(serde_yaml::to_string(via).unwrap().contains("sns."), "{a} without kms:ViaService sns");
            }
        }
    }
    let grant = &r["WatcherFromRule"]["Properties"];
    assert_eq!(grant["Principal"].as_str(), Some("events.amazonaws.com"));
    assert_eq!(serde_yaml::to_string(&grant["SourceArn"]).unwrap().trim(), "!GetAtt WatcherRule.Arn");
    let alarm = &r["KeyUseFailureAlarm"]["Properties"];
    assert_eq!(alarm["Namespace"].as_str(), Some("KmsRotationGuard"));
    assert_eq!(alarm["MetricName"].as_str(), Some("KeyUseFailures"));
}
