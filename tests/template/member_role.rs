//! member-role.yaml, the StackSet role of issue 21: exactly the reads and the reporting the
//! organization rules and `scan --accounts` make in a member account, trusted only by the
//! evaluator account's rule-function roles (and scanner roles, when named).

use std::collections::BTreeSet;

use super::support::*;

/// What src/handler.rs and src/estate/ call with the member role (resource modules,
/// key::lookup for the member's own keys, report.rs). A new call needs a new line here.
const CALLS: &[&str] = &[
    "config:GetComplianceDetailsByConfigRule",
    "config:GetResourceConfigHistory",
    "config:PutEvaluations",
    "dynamodb:DescribeTable",
    "dynamodb:ListTables",
    "kms:DescribeKey",
    "kms:GetKeyRotationStatus",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "rds:DescribeDBClusters",
    "rds:DescribeDBInstances",
    "s3:GetEncryptionConfiguration",
    "s3:ListAllMyBuckets",
];

#[test]
fn the_member_role_has_exactly_the_calls_it_makes() {
    let t = template("member-role.yaml");
    let statements = statements(&t);
    let actions: BTreeSet<&str> = statements.iter().flat_map(|s| s.actions.iter().map(String::as_str)).collect();
    assert_eq!(actions, CALLS.iter().copied().collect(), "member role actions");
    for s in &statements {
        for r in &s.resources {
            if r == "*" {
                // Only the actions AWS gives no resource-level permission.
                for a in &s.actions {
                    assert!(
                        [
                            "dynamodb:ListTables",
                            "s3:ListAllMyBuckets",
                            "config:PutEvaluations",
                            "config:GetResourceConfigHistory"
                        ]
                        .contains(&a.as_str()),
                        "{a} on *"
                    );
                }
            } else {
                // Everything else stays in this account (bucket ARNs carry no account: a condition does it).
                assert!(
                    r.contains("${AWS::AccountId}") || (r.ends_with(":s3:::*") && s.has_condition),
                    "{r} is not limited to the member account"
                );
            }
        }
        for a in &s.actions {
            assert!(a.starts_with("kms:") == is_kms_read(a) || !a.starts_with("kms:"), "{a}: not a KMS read");
        }
    }
}

#[test]
fn only_the_evaluator_accounts_rule_functions_and_named_scanners_may_assume_it() {
    let t = template("member-role.yaml");
    let role = resource(&t, "MemberRole");
    let trust = flat_list(&role["Properties"]["AssumeRolePolicyDocument"]["Statement"]);
    assert_eq!(trust.len(), 2, "rule functions, and scanners when named");
    for st in trust {
        assert_eq!(st["Effect"].as_str(), Some("Allow"));
        assert_eq!(st["Action"].as_str(), Some("sts:AssumeRole"));
        assert_eq!(
            string_or_sub(&st["Principal"]["AWS"]),
            "arn:${AWS::Partition}:iam::${EvaluatorAccountId}:root",
            "only the evaluator account, narrowed by the condition"
        );
        let cond = &st["Condition"];
        let patterns: Vec<String> = match (cond.get("ArnLike"), cond.get("ArnEquals")) {
            (Some(like), None) => flat_list(&like["aws:PrincipalArn"]).into_iter().map(string_or_sub).collect(),
            (None, Some(eq)) => vec![string_or_sub(&eq["aws:PrincipalArn"])],
            _ => panic!("every trust statement names its principals: {cond:?}"),
        };
        for p in &patterns {
            assert!(
                p == "${ScannerPrincipalArns}"
                    || ["rds", "dynamodb", "s3"].iter().any(|f| {
                        *p == format!(
                            "arn:${{AWS::Partition}}:iam::${{EvaluatorAccountId}}:role/kms-rotation-guard-*-{f}"
                        )
                    }),
                "{p}"
            );
        }
    }
    // The rule functions' roles of template.yaml match the patterns.
    for f in ["rds", "dynamodb", "s3"] {
        assert!(glob_match(&format!("kms-rotation-guard-*-{f}"), &format!("kms-rotation-guard-eu-west-1-{f}")));
    }
}

#[test]
fn cfn_lint_accepts_the_member_role() {
    let out = std::process::Command::new(root().join(".tools/venv/bin/cfn-lint"))
        .args(["--", "member-role.yaml"])
        .current_dir(root())
        .output()
        .expect("cfn-lint (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
