//! Who may ask for a rotation, for any number of workload accounts (issue 20): one request
//! bus in the security account, one policy statement, no grant per account; the function's
//! only resource-policy grant is EventBridge's, for the request rule.

use crate::cfn::*;
use crate::support::*;

/// The request a workload's remediation role sends (template.yaml's document), as the
/// function reads it.
const SOURCE: &str = kms_rotation_guard::remediation::WORKLOAD_SOURCE;
const DETAIL_TYPE: &str = kms_rotation_guard::remediation::REQUEST_DETAIL_TYPE;

/// One principal's request, as IAM sees it.
struct Request<'a> {
    principal_arn: String,
    account: String,
    org: &'a str,
    action: &'a str,
    resource: String,
    source: &'a str,
    detail_type: &'a str,
}

impl Request<'_> {
    fn key(&self, k: &str) -> Option<String> {
        match k.to_ascii_lowercase().as_str() {
            "aws:principalarn" => Some(self.principal_arn.clone()),
            "aws:principalaccount" => Some(self.account.clone()),
            "aws:principalorgid" => Some(self.org.to_string()),
            "events:source" => Some(self.source.to_string()),
            "events:detail-type" => Some(self.detail_type.to_string()),
            _ => None,
        }
    }
    /// `${aws:PrincipalAccount}`-style policy variables in a condition value.
    fn expand(&self, v: &str) -> String {
        let mut out = v.to_string();
        for k in ["aws:PrincipalAccount", "aws:PrincipalOrgID"] {
            if let Some(x) = self.key(k) {
                out = out.replace(&format!("${{{k}}}"), &x);
            }
        }
        out
    }
}

/// Whether one evaluated Allow statement admits `r`: Principal, Action, Resource and every
/// condition (StringEquals, ArnEquals, ArnLike; a key the request lacks fails).
fn admits(st: &Value, r: &Request) -> bool {
    assert_eq!(st["Effect"].as_str(), Some("Allow"), "only Allow statements here: {st:?}");
    let principal_ok = match &st["Principal"] {
        Value::String(s) => s == "*",
        p => strings(&p["AWS"]).iter().any(|a| a == "*" || *a == r.account || *a == r.principal_arn),
    };
    let action_ok = strings(&st["Action"]).iter().any(|a| glob_match(a, r.action));
    let resource_ok = strings(&st["Resource"]).iter().any(|x| glob_match(x, &r.resource));
    let mut conditions_ok = true;
    for (op, keys) in st["Condition"].as_mapping().into_iter().flatten() {
        let op = op.as_str().unwrap();
        for (k, want) in keys.as_mapping().expect("condition keys") {
            let got = r.key(k.as_str().unwrap());
            let wants: Vec<String> = strings(want).iter().map(|w| r.expand(w)).collect();
            let ok = match (op, got) {
                (_, None) => false,
                ("StringEquals" | "ArnEquals", Some(g)) => wants.contains(&g),
                ("ArnLike" | "StringLike", Some(g)) => wants.iter().any(|w| glob_match(w, &g)),
                (other, _) => panic!("condition operator {other} not modelled"),
            };
            conditions_ok &= ok;
        }
    }
    principal_ok && action_ok && resource_ok && conditions_ok
}

fn workload_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{:012}", 210000000000u64 + i as u64)).collect()
}

/// The role names a workload account deploys (template.yaml), in REGION.
fn workload_role(t: &Value, id: &str) -> String {
    sub_string(&resource(t, id)["Properties"]["RoleName"]).unwrap().replace("${AWS::Region}", REGION)
}

#[test]
fn any_number_of_workload_accounts_can_ask_and_none_can_do_more() {
    let s = template(SECURITY_TEMPLATE);
    let w = template(WORKLOAD_TEMPLATE);
    let remediation = workload_role(&w, "RemediationRole");
    let evaluator = workload_role(&w, "S3RuleRole");
    let rotation_fn = function_for_binary(&s, ROTATION_BINARY);
    let mut deployed: Vec<(String, BTreeSet<String>)> = Vec::new();
    for n in [25usize, 300] {
        let ids = workload_ids(n);
        let list = ids.join(",");
        for (variant, overrides) in [
            ("organization", vec![]),
            ("organization + WorkloadAccountIds", vec![("WorkloadAccountIds", list.as_str())]),
        ] {
            let ctx = format!("{n} accounts, {variant}");
            let cfn = Cfn::security(&s, &overrides);
            let ids_deployed = cfn.active_ids();
            assert!(ids_deployed.len() < 500, "{ctx}: {} resources (CloudFormation allows 500)", ids_deployed.len());
            deployed.push((ctx.clone(), ids_deployed));

            // The bus policy: one statement, small enough for the 10 KB limit.
            let policies = cfn.resources_of_type("AWS::Events::EventBusPolicy");
            assert_eq!(policies.len(), 1, "{ctx}: one bus policy");
            let st = policies[0].1["Properties"]["Statement"].clone();
            let size =
                serde_json::to_string(&serde_yaml::from_value::<serde_json::Value>(st.clone()).unwrap()).unwrap().len();
            assert!(size < 10 * 1024, "{ctx}: bus policy is {size} bytes (EventBridge allows 10 KB)");
            let bus = "RequestBus.Arn".to_string();
            assert_eq!(strings(&st["Resource"]), std::slice::from_ref(&bus), "{ctx}: the request bus only");
            let ask = |account: &str, role: &str, org: &'static str, action: &'static str, source: &'static str| {
                admits(
                    &st,
                    &Request {
                        principal_arn: format!("arn:aws:iam::{account}:role/{role}"),
                        account: account.to_string(),
                        org,
                        action,
                        resource: bus.clone(),
                        source,
                        detail_type: DETAIL_TYPE,
                    },
                )
            };
            // Each account's remediation role can ask…
            for a in &ids {
                assert!(ask(a, &remediation, ORG, "events:PutEvents", SOURCE), "{ctx}: {a} cannot ask");
            }
            // …and nothing more: not another role, action, source or organization.
            let a = &ids[n - 1];
            assert!(!ask(a, &evaluator, ORG, "events:PutEvents", SOURCE), "{ctx}: an evaluator role may ask");
            assert!(!ask(a, "admin", ORG, "events:PutEvents", SOURCE), "{ctx}: any role may ask");
            assert!(!ask(a, &remediation, "o-otherorgxyz", "events:PutEvents", SOURCE), "{ctx}: another organization");
            assert!(!ask(a, &remediation, ORG, "events:PutEvents", "aws.kms"), "{ctx}: another event source");
            for action in ["events:PutRule", "events:PutTargets", "events:PutPermission", "events:*"] {
                assert!(!ask(a, &remediation, ORG, action, SOURCE), "{ctx}: {action}");
            }
            let outsider = "209999999999";
            let narrowed = !overrides.is_empty();
            assert_eq!(
                ask(outsider, &remediation, ORG, "events:PutEvents", SOURCE),
                !narrowed,
                "{ctx}: an organization account outside WorkloadAccountIds"
            );

            // The function: one grant, to EventBridge, for the request rule; the rule hands
            // the envelope over untouched.
            // (The runbook's watcher has its own grant, to its own rule: tests/template/retirement.rs.)
            let mut grants = cfn.resources_of_type("AWS::Lambda::Permission");
            grants.retain(|(id, _)| *id != "WatcherFromRule");
            assert_eq!(grants.len(), 1, "{ctx}: one Lambda permission: {grants:?}");
            let g = &grants[0].1["Properties"];
            assert_eq!(g["FunctionName"].as_str(), Some(format!("{rotation_fn}.Arn").as_str()));
            assert_eq!(g["Principal"].as_str(), Some("events.amazonaws.com"), "{ctx}");
            assert_eq!(g["SourceArn"].as_str(), Some("RequestRule.Arn"), "{ctx}: scoped to the request rule");
            assert_eq!(g["SourceAccount"].as_str(), Some(ACCOUNT), "{ctx}");
            assert!(cfn.resources_of_type("AWS::Lambda::Url").is_empty(), "{ctx}: no function URL");
            let mut rules = cfn.resources_of_type("AWS::Events::Rule");
            rules.retain(|(id, _)| *id != "WatcherRule");
            assert_eq!(rules.len(), 1, "{ctx}");
            let rule = &rules[0].1["Properties"];
            assert_eq!(rule["EventBusName"].as_str(), Some("ref:RequestBus"));
            assert_eq!(strings(&rule["EventPattern"]["source"]), [SOURCE]);
            assert_eq!(strings(&rule["EventPattern"]["detail-type"]), [DETAIL_TYPE]);
            let targets = seq(&rule["Targets"]);
            assert_eq!(targets.len(), 1, "{ctx}");
            assert_eq!(targets[0]["Arn"].as_str(), Some(format!("{rotation_fn}.Arn").as_str()));
            for k in ["Input", "InputPath", "InputTransformer", "RoleArn"] {
                assert!(
                    targets[0][k].is_null(),
                    "{ctx}: target {k}: the envelope (its `account`) must arrive untouched"
                );
            }
            assert!(!targets[0]["DeadLetterConfig"]["Arn"].is_null(), "{ctx}: undelivered requests are kept");
        }
    }
    // What CloudFormation deploys does not grow with the number of accounts.
    let (first_ctx, first) = &deployed[0];
    for (ctx, ids) in &deployed[1..] {
        if ctx.contains("WorkloadAccountIds") == first_ctx.contains("WorkloadAccountIds") {
            assert_eq!(ids, first, "{ctx} deploys other resources than {first_ctx}");
        }
    }
    assert_eq!(deployed[0].1, deployed[1].1, "narrowing by WorkloadAccountIds adds no resource");
    eprintln!("25 and 300 workload accounts: {} resources each, one bus policy statement", deployed[0].1.len());
}

#[test]
fn a_workload_remediation_role_can_only_ask() {
    let w = template(WORKLOAD_TEMPLATE);
    let cfn = Cfn::new(&w, &[("SecurityAccountId", "111111111111")]);
    let sts = cfn.role_statements("RemediationRole");
    let security: Vec<&Value> =
        sts.iter().filter(|st| strings(&st["Resource"]).iter().any(|r| r.contains("111111111111"))).collect();
    assert_eq!(security.len(), 1, "one right in the security account: {security:?}");
    let st = security[0];
    assert_eq!(actions_of(st), ["events:PutEvents"]);
    assert_eq!(
        strings(&st["Resource"]),
        [format!("arn:aws:events:{REGION}:111111111111:event-bus/kms-rotation-guard-requests")]
    );
    assert_eq!(strings(&st["Condition"]["StringEquals"]["events:source"]), [SOURCE]);
    assert_eq!(strings(&st["Condition"]["StringEquals"]["events:detail-type"]), [DETAIL_TYPE]);
    for st in &sts {
        for a in actions_of(st) {
            assert!(!a.starts_with("lambda:"), "the remediation role no longer invokes the rotation: {a}");
        }
    }
    // The bus it names is the one the security account creates.
    let s = template(SECURITY_TEMPLATE);
    assert_eq!(parameter_default(&s, "RequestBusName"), parameter_default(&w, "RequestBusName"));
    let bus = Cfn::security(&s, &[]).eval(&resource(&s, "RequestBus")["Properties"]["Name"]);
    assert_eq!(bus.as_str(), Some("kms-rotation-guard-requests"));
    // The remediation role's name is the one the bus policy admits.
    let policy = Cfn::security(&s, &[]).eval(resource(&s, "RequestBusPolicy"));
    let pattern = strings(&policy["Properties"]["Statement"]["Condition"]["ArnLike"]["aws:PrincipalArn"]);
    let name = workload_role(&w, "RemediationRole");
    assert!(pattern.iter().any(|p| glob_match(p, &format!("arn:aws:iam::123456789012:role/{name}"))), "{pattern:?}");
}

/// The security account's policy reaches the function: every variable the function reads
/// (remediation::policy::POLICY_VARIABLES) comes from a stack parameter whose default is the
/// code's default, so the deployed function judges as the documentation says.
#[test]
fn the_security_accounts_policy_reaches_the_function() {
    use kms_rotation_guard::remediation::policy::{SecurityPolicy, POLICY_VARIABLES};
    let s = template(SECURITY_TEMPLATE);
    let cfn = Cfn::security(&s, &[]);
    let f = cfn.eval(resource(&s, &function_for_binary(&s, ROTATION_BINARY)));
    let env = &f["Properties"]["Environment"]["Variables"];
    let raw_env = &resource(&s, &function_for_binary(&s, ROTATION_BINARY))["Properties"]["Environment"]["Variables"];
    for v in POLICY_VARIABLES {
        let param = ref_name(&raw_env[v]).unwrap_or_else(|| panic!("{v}: from a stack parameter"));
        assert!(!s["Parameters"][param]["Default"].is_null(), "{v}: {param} has a default");
    }
    let vars: BTreeMap<String, String> =
        POLICY_VARIABLES.iter().map(|v| (v.to_string(), scalar_string(&env[*v]).unwrap())).collect();
    let deployed = SecurityPolicy::from_lookup(|n| vars.get(n).cloned()).expect("the defaults make a valid policy");
    assert_eq!(deployed, SecurityPolicy::default(), "stack defaults = the code's defaults");
    assert_eq!(deployed.min_rotations_left, 5, "minRotationsLeft default 5 (issue 20)");
    // Workload stacks judge with the same defaults (their rules' parameters).
    let w = template(WORKLOAD_TEMPLATE);
    for (p, want) in [
        ("MaxKeyAgeDays", deployed.max_key_age_days.to_string()),
        ("ExpiryWarningDays", deployed.expiry_warning_days.to_string()),
        ("RotationTagKey", deployed.rotation_tag_key.clone()),
    ] {
        assert_eq!(parameter_default(&w, p).as_deref(), Some(want.as_str()), "template.yaml {p}");
        assert_eq!(parameter_default(&s, p).as_deref(), Some(want.as_str()), "security-account.yaml {p}");
    }
}
