//! A deployment a person can follow from an empty organization (issue 20): nothing is
//! granted to a role that does not exist yet, neither stack needs the other's resources to
//! deploy, inputs are checked, and the organization variant enters member accounts of its organization only.

use crate::cfn::*;
use crate::network::{failed_rules, failed_rules_in};
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
    let permissions = account.resources_of_type("AWS::Lambda::Permission");
    assert_eq!(permissions.len(), 3, "one per evaluator");
    for (id, p) in permissions {
        assert_eq!(p["Properties"]["Principal"].as_str(), Some("config.amazonaws.com"), "{id}");
        assert_eq!(p["Properties"]["SourceAccount"].as_str(), Some(ACCOUNT), "{id}");
    }
    assert!(account.resources_of_type("AWS::Lambda::ResourcePolicy").is_empty());
    // The organization variant: the boundary is the member role, which each evaluator may
    // assume only in accounts of the organization, and which it assumes before reading anything.
    let cfn = Cfn::new(&w, &with_org);
    organization_config_only_invokes(&cfn);
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

/// The organization variant admits Config for the organization's accounts only: no
/// AddPermission grant (it cannot name an organization for a service principal, so it
/// would admit any account's Config), and each evaluator's resource policy allows
/// config.amazonaws.com with aws:SourceOrgID = the organization and nothing else.
fn organization_config_only_invokes(cfn: &Cfn) {
    assert!(cfn.resources_of_type("AWS::Lambda::Permission").is_empty(), "no grant without the organization");
    let policies = cfn.resources_of_type("AWS::Lambda::ResourcePolicy");
    let functions: BTreeSet<String> =
        policies.iter().map(|(_, p)| p["Properties"]["ResourceArn"].as_str().unwrap().to_string()).collect();
    let want: BTreeSet<String> =
        ["RdsRuleFunction.Arn", "DynamoDbRuleFunction.Arn", "S3RuleFunction.Arn"].map(String::from).into();
    assert_eq!(functions, want, "one policy per evaluator");
    for (id, p) in &policies {
        let statements = seq(&p["Properties"]["PolicyDocument"]["Statement"]);
        assert_eq!(statements.len(), 1, "{id}");
        let st = &statements[0];
        assert_eq!(st["Effect"].as_str(), Some("Allow"), "{id}");
        assert_eq!(st["Principal"]["Service"].as_str(), Some("config.amazonaws.com"), "{id}");
        assert_eq!(actions_of(st), vec!["lambda:InvokeFunction".to_string()], "{id}");
        assert_eq!(st["Resource"], p["Properties"]["ResourceArn"], "{id}: its own function only");
        let condition = st["Condition"].as_mapping().expect("a condition");
        assert_eq!(condition.len(), 1, "{id}");
        let equals = st["Condition"]["StringEquals"].as_mapping().expect("StringEquals");
        assert_eq!(equals.len(), 1, "{id}");
        assert_eq!(st["Condition"]["StringEquals"]["aws:SourceOrgID"].as_str(), Some(ORG), "{id}");
    }
    // Each organization rule waits for its function's policy: Config checks that it may
    // invoke the function when the rule is created.
    for (rule, policy) in [
        ("RdsOrganizationRule", "RdsRuleOrganizationInvokePolicy"),
        ("DynamoDbOrganizationRule", "DynamoDbRuleOrganizationInvokePolicy"),
        ("S3OrganizationRule", "S3RuleOrganizationInvokePolicy"),
    ] {
        assert!(cfn.active(resource(cfn.t, rule)), "{rule}");
        assert_eq!(resource(cfn.t, rule)["DependsOn"].as_str(), Some(policy), "{rule}");
    }
}

/// CloudFormation does not have AWS::Lambda::ResourcePolicy in every Region. The organization
/// variant is refused where it lacks it (never the weaker grant), and the variant deploys in
/// exactly the Regions where cfn-lint's schemas have the type, so a cfn-lint upgrade that
/// changes them fails here until the template's list follows.
#[test]
fn the_organization_variant_deploys_only_where_cloudformation_has_the_resource_policy() {
    let w = template(WORKLOAD_TEMPLATE);
    let org = [("SecurityAccountId", "111111111111"), ("DeployToOrganization", "true"), ("OrganizationId", ORG)];
    let probe = "Resources:\n  P:\n    Type: AWS::Lambda::ResourcePolicy\n    Properties:\n      ResourceArn: arn:aws:lambda:eu-west-1:111111111111:function:x\n      PolicyDocument: {}\n";
    let path = std::env::temp_dir().join(format!("krg-resource-policy-probe-{}.yaml", std::process::id()));
    std::fs::write(&path, probe).unwrap();
    let out = Command::new(root().join(".tools/venv/bin/cfn-lint"))
        .args(["--regions", "ALL_REGIONS", "--format", "parseable", "--"])
        .arg(&path)
        .output()
        .expect("cfn-lint (scripts/setup installs it)");
    std::fs::remove_file(&path).ok();
    let text = String::from_utf8_lossy(&out.stdout);
    let missing: BTreeSet<String> = text
        .lines()
        .filter(|l| l.contains("E3006"))
        .filter_map(|l| l.rsplit("does not exist in '").next()?.strip_suffix('\'').map(String::from))
        .collect();
    // Every E3006 line named its Region (the format was read), and there are some.
    assert!(!missing.is_empty(), "cfn-lint named no Region without the type: {text}");
    assert_eq!(missing.len(), text.lines().filter(|l| l.contains("E3006")).count(), "{text}");
    let all = Command::new(root().join(".tools/venv/bin/python"))
        .args(["-c", "import cfnlint.helpers as h; print('\\n'.join(h.REGIONS))"])
        .output()
        .unwrap();
    let all: BTreeSet<String> = String::from_utf8_lossy(&all.stdout).lines().map(String::from).collect();
    assert!(all.len() > missing.len(), "{all:?}");
    let offered: BTreeSet<String> = all.difference(&missing).cloned().collect();
    let deployable: BTreeSet<String> =
        all.iter().filter(|r| failed_rules_in(&w, &org, r).is_empty()).cloned().collect();
    assert_eq!(deployable, offered, "the organization variant deploys exactly where the resource policy exists");
    for region in &all {
        let cfn = Cfn::new(&w, &org).in_region(region);
        assert_eq!(cfn.condition("DeployToOrganization"), offered.contains(region), "{region}");
        assert!(!cfn.condition("DeployToAccount"), "{region}: never the account variant instead");
    }
    assert!(offered.contains("us-east-1") && offered.contains(REGION), "{offered:?}");
    let refused = failed_rules_in(&w, &org, "me-central-1");
    assert!(refused.iter().any(|r| r.contains("deploy the account variant")), "{refused:?}");
    // The account variant deploys where the organization variant cannot.
    assert!(failed_rules_in(&w, &[org[0]], "me-central-1").is_empty());
}

/// The rule functions' key facts cache (`key::cache`) is the stack's to tune or turn off:
/// the variable the code reads comes from a parameter that allows 0.
#[test]
fn the_key_facts_cache_is_set_by_a_parameter_that_can_turn_it_off() {
    let w = template(WORKLOAD_TEMPLATE);
    let env = &w["Globals"]["Function"]["Environment"]["Variables"]["KRG_KEY_FACTS_TTL_SECONDS"];
    assert_eq!(ref_name(env), Some("KeyFactsTtlSeconds"));
    let p = &w["Parameters"]["KeyFactsTtlSeconds"];
    assert_eq!((p["Type"].as_str(), p["MinValue"].as_i64()), (Some("Number"), Some(0)), "{p:?}");
    let lambda = std::fs::read_to_string(root().join("src/lambda.rs")).unwrap();
    assert!(lambda.contains("\"KRG_KEY_FACTS_TTL_SECONDS\""), "src/lambda.rs reads the variable the stack sets");
}
