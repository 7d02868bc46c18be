//! A deployment a person can follow from an empty organization (issue 20): nothing is
//! granted to a role that does not exist yet, neither stack needs the other's resources to
//! deploy, inputs are checked, and the organization variant enters member accounts of its organization only.

use crate::cfn::*;
use crate::network::failed_rules;
use crate::support::*;

/// Every `Principal` of every policy document in an evaluated template, with where it is.
fn principals(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Mapping(m) => {
            for (k, x) in m {
                let key = k.as_str().unwrap_or("");
                if key == "Principal" {
                    match x {
                        Value::String(s) => out.push((at.to_string(), s.clone())),
                        Value::Mapping(p) => {
                            for (kind, who) in p {
                                if kind.as_str() == Some("AWS") {
                                    for w in strings(who) {
                                        out.push((at.to_string(), w));
                                    }
                                }
                            }
                        }
                        other => panic!("{at}: Principal {other:?}"),
                    }
                } else {
                    principals(x, at, out);
                }
            }
        }
        Value::Sequence(s) => s.iter().for_each(|x| principals(x, at, out)),
        _ => {}
    }
}

#[test]
fn no_grant_names_a_role_that_may_not_exist_yet() {
    let s = template(SECURITY_TEMPLATE);
    let w = template(WORKLOAD_TEMPLATE);
    let own_roles: BTreeSet<String> =
        resources_of_type(&s, "AWS::IAM::Role").into_iter().map(|(id, _)| format!("{id}.Arn")).collect();
    for (name, t, cfn) in [
        (SECURITY_TEMPLATE, &s, Cfn::security(&s, &[("AllowAliasSwap", "true")])),
        (SECURITY_TEMPLATE, &s, Cfn::security(&s, &[("WorkloadAccountIds", "111111111111,222222222222")])),
        (WORKLOAD_TEMPLATE, &w, Cfn::new(&w, &[("SecurityAccountId", "111111111111")])),
    ] {
        let mut found = Vec::new();
        for id in cfn.active_ids() {
            principals(&cfn.eval(resource(t, &id)), &format!("{name} {id}"), &mut found);
        }
        assert!(!found.is_empty(), "{name}: no principals found");
        for (at, p) in found {
            // (Lambda permissions name a service principal as a plain string.)
            let ok = p == "*"
                || p.ends_with(".amazonaws.com")
                || (p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()))
                || p == format!("arn:aws:iam::{ACCOUNT}:root")
                || own_roles.contains(&p);
            assert!(
                ok,
                "{at}: principal {p} - grant to accounts (or \"*\" with conditions), never to another account's role"
            );
        }
    }
    // WorkloadAccountIds is not needed: the security stack deploys for an organization alone.
    assert!(!s["Parameters"]["WorkloadAccountIds"]["Default"].is_null(), "WorkloadAccountIds is optional");
    assert!(failed_rules(&s, &[("OrganizationId", ORG), ("EnableRotation", "false")]).is_empty());
    // The workload stack refers to nothing that must exist first: its remediation runs its
    // own document, and no resource of it names a security-account resource but in IAM
    // policies (which IAM does not resolve).
    for (id, r) in resources_of_type(&w, "AWS::Config::RemediationConfiguration") {
        let target = ref_name(&r["Properties"]["TargetId"]).unwrap_or_else(|| panic!("{id}: TargetId"));
        assert_eq!(resource(&w, target)["Type"].as_str(), Some("AWS::SSM::Document"), "{id}");
    }
    assert!(w["Parameters"]["RemediationDocumentArn"].is_null(), "no shared document to wait for");
}

#[test]
fn the_organization_variant_needs_the_organization_and_enters_only_its_accounts() {
    let w = template(WORKLOAD_TEMPLATE);
    let org = [("SecurityAccountId", "111111111111"), ("DeployToOrganization", "true")];
    let refused = failed_rules(&w, &org);
    assert!(refused.iter().any(|r| r.contains("needs OrganizationId")), "{refused:?}");
    let with_org = [org[0], org[1], ("OrganizationId", ORG)];
    assert!(failed_rules(&w, &with_org).is_empty(), "the organization variant deploys with OrganizationId");
    assert!(failed_rules(&w, &[("SecurityAccountId", "111111111111")]).is_empty(), "the account variant deploys");
    // The account variant: Config may invoke the evaluators only for this account.
    let account = Cfn::new(&w, &[("SecurityAccountId", "111111111111")]);
    for (id, p) in account.resources_of_type("AWS::Lambda::Permission") {
        assert_eq!(p["Properties"]["Principal"].as_str(), Some("config.amazonaws.com"), "{id}");
        assert_eq!(p["Properties"]["SourceAccount"].as_str(), Some(ACCOUNT), "{id}");
    }
    // The organization variant: the boundary is the member role, which each evaluator may
    // assume only in accounts of the organization, and which it assumes before reading anything.
    let cfn = Cfn::new(&w, &with_org);
    for role in ["RdsRuleRole", "DynamoDbRuleRole", "S3RuleRole"] {
        let assume: Vec<Value> = cfn
            .role_statements(role)
            .into_iter()
            .filter(|st| actions_of(st).iter().any(|a| a == "sts:AssumeRole"))
            .filter(|st| strings(&st["Resource"]).iter().any(|r| r.ends_with(":role/kms-rotation-guard-member")))
            .collect();
        assert_eq!(assume.len(), 1, "{role}: one statement assumes the member role");
        assert_eq!(
            assume[0]["Condition"]["StringEquals"]["aws:ResourceOrgID"].as_str(),
            Some(ORG),
            "{role}: only inside the organization"
        );
        // Without the organization variant no evaluator may assume a member role.
        assert!(
            account
                .role_statements(role)
                .iter()
                .all(|st| !strings(&st["Resource"]).iter().any(|r| r.ends_with(":role/kms-rotation-guard-member"))),
            "{role}"
        );
    }
    let env = &w["Globals"]["Function"]["Environment"]["Variables"]["KRG_EXECUTION_ROLE_NAME"];
    assert_eq!(cfn.eval(env).as_str(), Some("kms-rotation-guard-member"), "the functions know the role");
}

/// `re.fullmatch(pattern, value)` for each value (CloudFormation's AllowedPattern matches
/// the whole value, and each entry of a list).
fn matches(pattern: &str, values: &[&str]) -> Vec<bool> {
    let code = "import re, sys, json\np = sys.argv[1]\nprint(json.dumps([re.fullmatch(p, v) is not None for v in sys.argv[2:]]))";
    let out = Command::new(python()).args(["-c", code, pattern]).args(values).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn account_ids_and_the_organization_are_checked() {
    let s = template(SECURITY_TEMPLATE);
    let w = template(WORKLOAD_TEMPLATE);
    let good = "123456789012";
    let bad = ["12345678901", "1234567890123", "12345678901a", " 123456789012", "*", "arn:aws:iam::123456789012:root"];
    for (t, name, param, optional) in [
        (&w, WORKLOAD_TEMPLATE, "SecurityAccountId", false),
        (&w, WORKLOAD_TEMPLATE, "ExcludedAccounts", true),
        (&s, SECURITY_TEMPLATE, "WorkloadAccountIds", true),
        (&s, SECURITY_TEMPLATE, "HsmLayerAccountId", true),
    ] {
        let p = &t["Parameters"][param];
        let pattern = p["AllowedPattern"].as_str().unwrap_or_else(|| panic!("{name} {param}: AllowedPattern"));
        let mut values = vec![good, ""];
        values.extend(bad);
        let got = matches(pattern, &values);
        assert!(got[0], "{name} {param}: {good}");
        assert_eq!(got[1], optional, "{name} {param}: empty");
        assert!(got[2..].iter().all(|m| !m), "{name} {param}: {pattern} accepts one of {bad:?}");
    }
    let org = &s["Parameters"]["OrganizationId"];
    assert!(org["Default"].is_null(), "OrganizationId is required: the key reader and the bus trust the organization");
    let got = matches(org["AllowedPattern"].as_str().unwrap(), &["o-abcdefghij", "", "o-ABC", "r-abcd"]);
    assert_eq!(got, [true, false, false, false]);
}
