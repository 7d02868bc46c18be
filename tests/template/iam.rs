//! IAM least privilege; who may read keys and who may invoke the rotation.

use crate::cfn::*;
use crate::support::*;

// ---------------------------------------------------------------------------------------
// (c) IAM

#[test]
fn iam_is_least_privilege() {
    let mut problems = Vec::new();
    for name in [WORKLOAD_TEMPLATE, SECURITY_TEMPLATE] {
        let t = template(name);
        let sts = statements(&t);
        assert!(!sts.is_empty(), "{name}: no IAM statements found");
        let binaries = function_binaries(&t);
        // The runbook's watcher (issue 22) is no evaluator: it reads guarded keys and
        // publishes to the encrypted alert topic (checked below and in `retirement`).
        const WATCHER_BINARY: &str = "key-use-watcher";
        let evaluator_roles: BTreeSet<String> = binaries
            .iter()
            .filter(|(_, b)| b.as_str() != ROTATION_BINARY && b.as_str() != WATCHER_BINARY)
            .map(|(id, _)| function_role(resource(&t, id)))
            .collect();
        let watcher_role =
            binaries.iter().find(|(_, b)| b.as_str() == WATCHER_BINARY).map(|(id, _)| function_role(resource(&t, id)));
        let rotation_role =
            binaries.iter().find(|(_, b)| b.as_str() == ROTATION_BINARY).map(|(id, _)| function_role(resource(&t, id)));

        for s in &sts {
            let at = format!("{name}: {}/{}", s.role, s.policy);
            let star = s.resources.iter().any(|r| r == "*");
            for a in &s.actions {
                if a.contains('*') {
                    problems.push(format!("{at}: wildcard action {a}"));
                }
                let kms = a.starts_with("kms:");
                if kms && star {
                    let allowed = (KMS_WITHOUT_RESOURCE_LEVEL.contains(&a.as_str())
                        && Some(&s.role) == rotation_role.as_ref()
                        && s.actions.len() == 1
                        && (a != "kms:CreateKey" || s.has_condition))
                        || (a == "kms:ListAliases" && Some(&s.role) == watcher_role.as_ref() && s.actions.len() == 1);
                    if !allowed {
                        problems.push(format!("{at}: {a} on Resource \"*\""));
                    }
                }
                // PutKeyPolicy: only what alias-swap's policy-lockout check needs
                // (rotation_role::alias_swap_passes_the_policy_lockout_check_and_never_bypasses_it).
                let lockout_check = a == "kms:PutKeyPolicy"
                    && Some(&s.role) == rotation_role.as_ref()
                    && s.policy == "alias-swap"
                    && s.has_condition;
                if FORBIDDEN_KMS.contains(&a.as_str()) && !lockout_check {
                    problems.push(format!("{at}: destructive {a}"));
                }
                // The watcher publishes to the encrypted topic: its key, through SNS only.
                let topic_key = (a == "kms:GenerateDataKey" || a == "kms:Decrypt") && s.has_condition;
                if kms && Some(&s.role) == watcher_role.as_ref() && !is_kms_read(a) && !topic_key {
                    problems.push(format!("{at}: the watcher holds KMS action {a}"));
                }
                if kms && evaluator_roles.contains(&s.role) && !is_kms_read(a) {
                    problems.push(format!("{at}: evaluator holds KMS write action {a}"));
                }
                if a == "sts:AssumeRole" && (star || s.resources.iter().any(|r| !r.contains(":role/"))) {
                    problems.push(format!("{at}: sts:AssumeRole must name a role: {:?}", s.resources));
                }
                if evaluator_roles.contains(&s.role) && a == "config:StartConfigRulesEvaluation" {
                    problems.push(format!("{at}: evaluators do not need {a}"));
                }
            }
            if star && s.resources.len() > 1 {
                problems.push(format!("{at}: \"*\" mixed with ARNs"));
            }
        }

        // KMS of evaluators: only on the security account's and this account's keys.
        for s in sts.iter().filter(|s| evaluator_roles.contains(&s.role)) {
            if s.actions.iter().any(|a| a.starts_with("kms:")) {
                for r in &s.resources {
                    let ok = r == "arn:${AWS::Partition}:kms:*:${SecurityAccountId}:key/*"
                        || r == "arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/*";
                    if !ok {
                        problems.push(format!("{name}: {}: KMS resource {r}", s.role));
                    }
                }
            }
        }
        // The key-reader role (security account) is read-only on this account's keys.
        for s in sts.iter().filter(|s| s.role == "KeyReaderRole") {
            for a in &s.actions {
                if !(a.starts_with("kms:") && is_kms_read(a)) {
                    problems.push(format!("{name}: KeyReaderRole holds {a}"));
                }
            }
            for r in &s.resources {
                if r != "arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/*" {
                    problems.push(format!("{name}: KeyReaderRole resource {r}"));
                }
            }
        }
        // Managed policies: only Lambda's own execution policies.
        for (role, r) in resources_of_type(&t, "AWS::IAM::Role") {
            for m in flat_list(&r["Properties"]["ManagedPolicyArns"]) {
                let arn = string_or_sub(m);
                if !(arn.ends_with(":policy/service-role/AWSLambdaBasicExecutionRole")
                    || arn.ends_with(":policy/service-role/AWSLambdaVPCAccessExecutionRole"))
                {
                    problems.push(format!("{name}: {role} has managed policy {arn}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "IAM problems:\n  {}", problems.join("\n  "));
}

// ---------------------------------------------------------------------------------------
// (c2) who may read, who may invoke (issue 12)

#[test]
fn key_reader_trusts_exactly_the_evaluator_roles() {
    let w = template(WORKLOAD_TEMPLATE);
    let s = template(SECURITY_TEMPLATE);
    let evaluator_names: BTreeSet<String> = resources_of_type(&w, "AWS::IAM::Role")
        .into_iter()
        .filter(|(role, _)| {
            function_binaries(&w).iter().any(|(id, b)| b != ROTATION_BINARY && function_role(resource(&w, id)) == *role)
        })
        .map(|(role, r)| {
            let name = sub_string(&r["Properties"]["RoleName"])
                .unwrap_or_else(|| panic!("{role}: RoleName must be deterministic (!Sub)"));
            assert!(name.replace("${AWS::Region}", LONGEST_REGION).len() <= 64, "{role}: role name too long");
            name.replace("${AWS::Region}", REGION)
        })
        .collect();
    assert_eq!(evaluator_names.len(), 3, "three evaluator roles");

    // Any number of accounts of the organization, or the listed ones: no grant names a role,
    // so the workload stacks may come before or after this one.
    for (accounts, principal) in [("", vec!["*"]), ("111111111111,222222222222", vec!["111111111111", "222222222222"])]
    {
        let cfn = Cfn::security(&s, &[("WorkloadAccountIds", accounts)]);
        let role = cfn.eval(resource(&s, "KeyReaderRole"));
        let st = seq(&role["Properties"]["AssumeRolePolicyDocument"]["Statement"]);
        assert_eq!(st.len(), 1, "one trust statement");
        assert_eq!(
            strings(&st[0]["Principal"]["AWS"]),
            principal,
            "trusted accounts with WorkloadAccountIds={accounts:?}"
        );
        let c = &st[0]["Condition"];
        let arns = strings(&c["ArnEquals"]["aws:PrincipalArn"]);
        assert!(arns.iter().all(|a| !a.contains('*') && !a.contains('?')), "exact role ARNs, no wildcards: {arns:?}");
        let names: BTreeSet<String> = arns
            .iter()
            .map(|a| {
                a.strip_prefix("arn:aws:iam::${aws:PrincipalAccount}:role/")
                    .unwrap_or_else(|| panic!("the caller's own account, by policy variable: {a}"))
                    .to_string()
            })
            .collect();
        assert_eq!(names, evaluator_names, "trusted role names = the evaluator roles of template.yaml");
        assert_eq!(strings(&c["StringEquals"]["aws:PrincipalOrgID"]), [ORG], "aws:PrincipalOrgID, always");
    }
    assert!(s["Parameters"]["OrganizationId"]["Default"].is_null(), "OrganizationId is required (no default)");

    // Reads are scoped to guarded keys when a guard tag is set.
    for (guard, want) in [("enabled", Some("enabled")), ("", None)] {
        let cfn = Cfn::security(&s, &[("RotatableKeyTagValue", guard)]);
        for st in cfn.role_statements("KeyReaderRole") {
            let tag = st["Condition"]["StringEquals"][format!("aws:ResourceTag/{GUARD_TAG}").as_str()].as_str();
            assert_eq!(tag, want, "KeyReaderRole reads with RotatableKeyTagValue={guard:?}: {st:?}");
        }
    }
    assert_eq!(parameter_default(&s, "KeyReaderRoleName").as_deref(), Some("kms-rotation-guard-key-reader"));
}

#[test]
fn automatic_remediation_attempts_are_few() {
    let w = template(WORKLOAD_TEMPLATE);
    for (id, x) in resources_of_type(&w, "AWS::Config::RemediationConfiguration") {
        let p = ref_name(&x["Properties"]["MaximumAutomaticAttempts"]).expect("from a parameter");
        let default: u32 = parameter_default(&w, p).unwrap().parse().unwrap();
        let max: u32 = scalar_string(&w["Parameters"][p]["MaxValue"]).expect("MaxValue").parse().unwrap();
        assert!(default <= 3 && max <= 3, "{id}: {p} default {default}, MaxValue {max}: at most 3");
    }
}
