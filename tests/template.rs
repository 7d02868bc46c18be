//! Static checks of the deployment templates (no AWS access):
//!
//! * every function's `BuildProperties.Binary` is a `[[bin]]` of Cargo.toml;
//! * `rules/*.yaml` and template.yaml agree (names, resource types, triggers, parameters
//!   and defaults, for the account rules, the organization rules and the remediation);
//! * IAM stays least-privilege (no wildcard actions, no KMS action on `Resource: "*"` except
//!   the two AWS cannot scope, read-only KMS for evaluators, no destructive KMS anywhere);
//! * the Automation document sends exactly the payload the rotation handler accepts;
//! * cfn-lint accepts both templates.
//!
//! CloudFormation short forms (`!Ref`, `!Sub`, `!GetAtt`, `!If`, ...) arrive from serde_yaml
//! as `Value::Tagged`; the helpers below also accept the long `{"Fn::...": ...}` forms.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::{Mapping, Value};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const WORKLOAD_TEMPLATE: &str = "template.yaml";
const SECURITY_TEMPLATE: &str = "security-account.yaml";

/// Keys of the rotation handler's input event (the handler accepts exactly these).
const ROTATION_PAYLOAD_KEYS: [&str; 3] = ["keyId", "resourceId", "strategy"];
const ROTATION_BINARY: &str = "rotation-remediation";
const MESSAGE_TYPES: [&str; 3] =
    ["ConfigurationItemChangeNotification", "OversizedConfigurationItemChangeNotification", "ScheduledNotification"];

/// KMS actions that no role of this project may hold.
const FORBIDDEN_KMS: [&str; 5] = [
    "kms:ScheduleKeyDeletion",
    "kms:DeleteImportedKeyMaterial",
    "kms:DisableKey",
    "kms:DeleteAlias",
    "kms:PutKeyPolicy",
];
/// KMS actions without resource-level permissions: IAM only accepts `Resource: "*"` for them.
/// Allowed only for the rotation role's alias-swap strategy, and CreateKey only with conditions.
const KMS_WITHOUT_RESOURCE_LEVEL: [&str; 2] = ["kms:CreateKey", "kms:ListAliases"];
/// The longest region name, for the deterministic role names.
const LONGEST_REGION: &str = "ap-southeast-4";

// ---------------------------------------------------------------------------------------
// loading

fn load_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn template(name: &str) -> Value {
    load_yaml(&root().join(name))
}

struct Rule {
    file: PathBuf,
    name: String,
    handler: String,
    resource_types: Vec<String>,
    triggers: Vec<String>,
    default_frequency: String,
    /// (name, type, default)
    parameters: Vec<(String, String, String)>,
}

fn rules() -> Vec<Rule> {
    let dir = root().join("rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rules in {}", dir.display());
    files
        .into_iter()
        .map(|file| {
            let v = load_yaml(&file);
            let s = |k: &str| str_of(&v[k]).unwrap_or_else(|| panic!("{}: `{k}` missing", file.display())).to_string();
            let list = |k: &str| -> Vec<String> {
                seq(&v[k]).iter().map(|x| str_of(x).expect("string list").to_string()).collect()
            };
            let parameters = seq(&v["parameters"])
                .iter()
                .map(|p| {
                    let f = |k: &str| {
                        scalar_string(&p[k]).unwrap_or_else(|| panic!("{}: parameter `{k}` missing", file.display()))
                    };
                    (f("name"), f("type"), f("default"))
                })
                .collect();
            Rule {
                name: s("name"),
                handler: s("handler"),
                resource_types: list("resourceTypes"),
                triggers: list("triggers"),
                default_frequency: s("defaultFrequency"),
                parameters,
                file,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// YAML / CloudFormation helpers

fn str_of(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Strings, numbers and booleans as the string CloudFormation would pass on.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(|s| s.as_slice()).unwrap_or(&[])
}

/// `!Name x` or `{"Fn::Name": x}` / `{"Ref": x}` → ("Name", x).
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            Some((tag.trim_start_matches('!').to_string(), &t.value))
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" {
                Some(("Ref".into(), inner))
            } else {
                k.strip_prefix("Fn::").map(|n| (n.to_string(), inner))
            }
        }
        _ => None,
    }
}

fn ref_name(v: &Value) -> Option<&str> {
    match intrinsic(v) {
        Some((n, inner)) if n == "Ref" => inner.as_str(),
        _ => None,
    }
}

/// `!GetAtt X.Arn` → ("X", "Arn").
fn get_att(v: &Value) -> Option<(String, String)> {
    let (n, inner) = intrinsic(v)?;
    if n != "GetAtt" {
        return None;
    }
    match inner {
        Value::String(s) => {
            let (a, b) = s.split_once('.')?;
            Some((a.into(), b.into()))
        }
        Value::Sequence(parts) if parts.len() == 2 => Some((parts[0].as_str()?.into(), parts[1].as_str()?.into())),
        _ => None,
    }
}

/// The template string of a `!Sub` (either form).
fn sub_string(v: &Value) -> Option<&str> {
    let (n, inner) = intrinsic(v)?;
    if n != "Sub" {
        return None;
    }
    match inner {
        Value::String(s) => Some(s),
        Value::Sequence(parts) => parts.first()?.as_str(),
        _ => None,
    }
}

fn is_no_value(v: &Value) -> bool {
    ref_name(v) == Some("AWS::NoValue")
}

/// Every value `v` may take: both branches of `!If` (recursively), nothing for AWS::NoValue.
fn branches(v: &Value) -> Vec<&Value> {
    if v.is_null() || is_no_value(v) {
        return vec![];
    }
    if let Some((n, inner)) = intrinsic(v) {
        if n == "If" {
            let parts = seq(inner);
            assert_eq!(parts.len(), 3, "malformed Fn::If: {v:?}");
            let mut out = branches(&parts[1]);
            out.extend(branches(&parts[2]));
            return out;
        }
    }
    vec![v]
}

/// A value or list of values (with `!If` expanded) as a flat list.
fn flat_list(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for b in branches(v) {
        match b {
            Value::Sequence(items) => {
                for i in items {
                    out.extend(branches(i));
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn resources(t: &Value) -> &Mapping {
    t["Resources"].as_mapping().expect("Resources mapping")
}

fn resources_of_type<'a>(t: &'a Value, ty: &str) -> Vec<(&'a str, &'a Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .map(|(k, r)| (k.as_str().expect("logical id"), r))
        .collect()
}

fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    let r = &t["Resources"][id];
    assert!(!r.is_null(), "resource {id} missing");
    r
}

fn parameter_default(t: &Value, name: &str) -> Option<String> {
    scalar_string(&t["Parameters"][name]["Default"])
}

/// A function property, falling back to the template's `Globals.Function`.
fn function_property<'a>(t: &'a Value, f: &'a Value, key: &str) -> &'a Value {
    let own = &f["Properties"][key];
    if !own.is_null() {
        own
    } else {
        &t["Globals"]["Function"][key]
    }
}

/// `function logical id → binary` of every SAM function.
fn function_binaries(t: &Value) -> BTreeMap<String, String> {
    resources_of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, f)| {
            let bin = f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}: Metadata.BuildProperties.Binary missing"));
            (id.to_string(), bin.to_string())
        })
        .collect()
}

fn function_for_binary(t: &Value, binary: &str) -> String {
    function_binaries(t)
        .into_iter()
        .find(|(_, b)| b == binary)
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("no function builds binary {binary}"))
}

/// Logical id of the IAM role a function runs as (`Role: !GetAtt X.Arn`).
fn function_role(f: &Value) -> String {
    let (role, attr) = get_att(&f["Properties"]["Role"]).expect("Role: !GetAtt <role>.Arn");
    assert_eq!(attr, "Arn");
    role
}

/// Minimal glob (`*` only), as IAM's ArnLike.
fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || !s[first.len()..].ends_with(last) || s.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

// ---------------------------------------------------------------------------------------
// IAM model

#[derive(Debug)]
struct Statement {
    role: String,
    policy: String,
    actions: Vec<String>,
    /// Plain strings as written; `!Sub` templates as their template string.
    resources: Vec<String>,
    has_condition: bool,
}

/// A policy string. (serde_yaml 0.9's `as_str` looks through tags, so intrinsics go first.)
fn string_or_sub(v: &Value) -> String {
    if let Some(s) = sub_string(v) {
        return s.to_string();
    }
    if let Some(r) = ref_name(v) {
        return format!("${{{r}}}");
    }
    if let Some((id, attr)) = get_att(v) {
        return format!("${{{id}.{attr}}}");
    }
    match v {
        Value::String(s) => s.clone(),
        _ => panic!("unexpected policy value {v:?}"),
    }
}

/// Every statement of every inline policy of every IAM role in `t`.
fn statements(t: &Value) -> Vec<Statement> {
    let mut out = Vec::new();
    for (role, r) in resources_of_type(t, "AWS::IAM::Role") {
        for policy in flat_list(&r["Properties"]["Policies"]) {
            let pname = policy["PolicyName"].as_str().unwrap_or("?").to_string();
            for st in flat_list(&policy["PolicyDocument"]["Statement"]) {
                let effect = st["Effect"].as_str().expect("Effect");
                if effect != "Allow" {
                    continue;
                }
                assert!(
                    st["NotAction"].is_null() && st["NotResource"].is_null(),
                    "{role}/{pname}: NotAction/NotResource"
                );
                let actions =
                    flat_list(&st["Action"]).into_iter().map(|a| a.as_str().expect("action").to_string()).collect();
                let resources: Vec<String> = flat_list(&st["Resource"]).into_iter().map(string_or_sub).collect();
                assert!(!resources.is_empty(), "{role}/{pname}: statement without Resource");
                let has_condition = !branches(&st["Condition"]).is_empty();
                out.push(Statement {
                    role: role.to_string(),
                    policy: pname.clone(),
                    actions,
                    resources,
                    has_condition,
                });
            }
        }
    }
    for ty in ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"] {
        assert!(
            resources_of_type(t, ty).is_empty(),
            "put policies inline in the roles so the checks below see them ({ty})"
        );
    }
    out
}

fn is_kms_read(action: &str) -> bool {
    let op = action.strip_prefix("kms:").unwrap_or(action);
    op.starts_with("Describe") || op.starts_with("Get") || op.starts_with("List")
}

// ---------------------------------------------------------------------------------------
// (a) binaries

#[test]
fn function_binaries_are_cargo_bins() {
    let cargo: toml::Table = std::fs::read_to_string(root().join("Cargo.toml")).unwrap().parse().expect("Cargo.toml");
    let bins: BTreeSet<String> = cargo
        .get("bin")
        .and_then(|b| b.as_array())
        .map(|a| a.iter().filter_map(|b| b.get("name")?.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let mut missing = Vec::new();
    for name in [WORKLOAD_TEMPLATE, SECURITY_TEMPLATE] {
        let t = template(name);
        for (id, bin) in function_binaries(&t) {
            let f = resource(&t, &id);
            assert_eq!(f["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"), "{name} {id}: BuildMethod");
            assert_eq!(function_property(&t, f, "Runtime").as_str(), Some("provided.al2023"), "{name} {id}: Runtime");
            assert_eq!(function_property(&t, f, "Handler").as_str(), Some("bootstrap"), "{name} {id}: Handler");
            assert_eq!(function_property(&t, f, "CodeUri").as_str(), Some("."), "{name} {id}: CodeUri");
            let arch: Vec<&str> =
                seq(function_property(&t, f, "Architectures")).iter().filter_map(|a| a.as_str()).collect();
            assert_eq!(arch, ["arm64"], "{name} {id}: Architectures");
            assert_eq!(
                function_property(&t, f, "LoggingConfig")["LogFormat"].as_str(),
                Some("JSON"),
                "{name} {id}: LogFormat"
            );
            if !bins.contains(&bin) {
                missing.push(format!("{name}: {id} builds `{bin}`"));
            }
        }
    }
    assert!(missing.is_empty(), "not a [[bin]] of Cargo.toml (have {bins:?}):\n  {}", missing.join("\n  "));
}

// ---------------------------------------------------------------------------------------
// (b) rules/ ↔ template.yaml

fn parameter_type_matches(t: &Value, param: &str, rule_type: &str) -> Result<(), String> {
    let p = &t["Parameters"][param];
    let ty = p["Type"].as_str().unwrap_or("String");
    let allowed: Vec<String> = seq(&p["AllowedValues"]).iter().filter_map(scalar_string).collect();
    match rule_type {
        "integer" if ty == "Number" => Ok(()),
        "boolean"
            if ty == "String"
                && allowed.len() == 2
                && allowed.contains(&"true".into())
                && allowed.contains(&"false".into()) =>
        {
            Ok(())
        }
        "string" if ty == "String" => Ok(()),
        _ => Err(format!("parameter {param} ({ty}, allowed {allowed:?}) does not fit rule type {rule_type}")),
    }
}

#[test]
fn rules_agree_with_template() {
    let t = template(WORKLOAD_TEMPLATE);
    let rules = rules();
    let config_rules = resources_of_type(&t, "AWS::Config::ConfigRule");
    let org_rules = resources_of_type(&t, "AWS::Config::OrganizationConfigRule");
    assert_eq!(config_rules.len(), rules.len(), "one ConfigRule per rules/ file");
    assert_eq!(org_rules.len(), rules.len(), "one OrganizationConfigRule per rules/ file");
    let binaries = function_binaries(&t);

    for rule in &rules {
        let ctx = rule.file.display().to_string();
        let function = function_for_binary(&t, &rule.handler);
        assert_eq!(binaries[&function], rule.handler);

        // ---- the account-level rule
        let (id, r) = config_rules
            .iter()
            .find(|(_, r)| {
                let n = &r["Properties"]["ConfigRuleName"];
                n.as_str() == Some(&rule.name)
                    || ref_name(n).and_then(|p| parameter_default(&t, p)).as_deref() == Some(&rule.name)
            })
            .unwrap_or_else(|| panic!("{ctx}: no ConfigRule named {}", rule.name));
        let p = &r["Properties"];
        let scope: Vec<&str> = seq(&p["Scope"]["ComplianceResourceTypes"]).iter().filter_map(|x| x.as_str()).collect();
        assert_eq!(scope, rule.resource_types, "{ctx}: {id} Scope.ComplianceResourceTypes");
        assert_eq!(p["Source"]["Owner"].as_str(), Some("CUSTOM_LAMBDA"), "{ctx}: {id} Source.Owner");
        assert_eq!(
            get_att(&p["Source"]["SourceIdentifier"]),
            Some((function.clone(), "Arn".into())),
            "{ctx}: {id} SourceIdentifier"
        );

        let details = seq(&p["Source"]["SourceDetails"]);
        let mut types: Vec<&str> = details.iter().map(|d| d["MessageType"].as_str().expect("MessageType")).collect();
        types.sort();
        let mut want: Vec<&str> = rule.triggers.iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(types, want, "{ctx}: {id} SourceDetails message types");
        let mut all = MESSAGE_TYPES.to_vec();
        all.sort();
        assert_eq!(want, all, "{ctx}: triggers must be the three message types");
        for d in details {
            assert_eq!(d["EventSource"].as_str(), Some("aws.config"), "{ctx}: {id} EventSource");
            if d["MessageType"].as_str() == Some("ScheduledNotification") {
                let f = ref_name(&d["MaximumExecutionFrequency"]).expect("MaximumExecutionFrequency: !Ref <parameter>");
                assert_eq!(
                    parameter_default(&t, f).as_deref(),
                    Some(rule.default_frequency.as_str()),
                    "{ctx}: frequency default"
                );
            }
        }

        // InputParameters: exactly the rule's parameters, each a stack parameter with the same default.
        let input = p["InputParameters"].as_mapping().unwrap_or_else(|| panic!("{ctx}: {id} InputParameters"));
        let keys: BTreeSet<&str> = input.keys().filter_map(|k| k.as_str()).collect();
        let names: BTreeSet<&str> = rule.parameters.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(keys, names, "{ctx}: {id} InputParameters names");
        for (name, ty, default) in &rule.parameters {
            let param = ref_name(&input[name.as_str()])
                .unwrap_or_else(|| panic!("{ctx}: {name} must be !Ref <stack parameter>"));
            let got = parameter_default(&t, param).unwrap_or_default();
            assert_eq!(&got, default, "{ctx}: default of stack parameter {param} (rule parameter {name})");
            parameter_type_matches(&t, param, ty).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        }

        // DependsOn the Lambda permission that lets Config invoke exactly this function.
        let depends: Vec<&str> = flat_list(&r["DependsOn"]).iter().filter_map(|d| d.as_str()).collect();
        let permission = depends
            .iter()
            .find(|d| resource(&t, d)["Type"].as_str() == Some("AWS::Lambda::Permission"))
            .unwrap_or_else(|| panic!("{ctx}: {id} must DependsOn its Lambda permission"));
        let pp = &resource(&t, permission)["Properties"];
        assert_eq!(
            get_att(&pp["FunctionName"]),
            Some((function.clone(), "Arn".into())),
            "{ctx}: {permission} FunctionName"
        );
        assert_eq!(pp["Principal"].as_str(), Some("config.amazonaws.com"), "{ctx}: {permission} Principal");
        assert_eq!(pp["Action"].as_str(), Some("lambda:InvokeFunction"), "{ctx}: {permission} Action");
        let source_accounts: Vec<Option<&str>> = flat_list(&pp["SourceAccount"]).iter().map(|v| ref_name(v)).collect();
        assert_eq!(source_accounts, [Some("AWS::AccountId")], "{ctx}: {permission} SourceAccount (account variant)");

        // ---- the organization variant: exactly one of the two exists
        let account_cond = r["Condition"].as_str().unwrap_or_else(|| panic!("{ctx}: {id} needs a Condition"));
        let (oid, o) = org_rules
            .iter()
            .find(|(_, o)| o["Properties"]["OrganizationConfigRuleName"].as_str() == Some(&rule.name))
            .unwrap_or_else(|| panic!("{ctx}: no OrganizationConfigRule named {}", rule.name));
        let org_cond = o["Condition"].as_str().unwrap_or_else(|| panic!("{ctx}: {oid} needs a Condition"));
        let negation = |a: &str, b: &str| -> bool {
            let def = &t["Conditions"][a];
            matches!(intrinsic(def), Some((n, inner)) if n == "Not"
                && seq(inner).len() == 1
                && matches!(intrinsic(&seq(inner)[0]), Some((c, name)) if c == "Condition" && name.as_str() == Some(b)))
        };
        assert!(
            negation(account_cond, org_cond) || negation(org_cond, account_cond),
            "{ctx}: conditions {account_cond} and {org_cond} must be each other's negation"
        );
        let m = &o["Properties"]["OrganizationCustomRuleMetadata"];
        assert_eq!(
            get_att(&m["LambdaFunctionArn"]),
            Some((function.clone(), "Arn".into())),
            "{ctx}: {oid} LambdaFunctionArn"
        );
        let mut otypes: Vec<&str> =
            seq(&m["OrganizationConfigRuleTriggerTypes"]).iter().filter_map(|x| x.as_str()).collect();
        otypes.sort();
        assert_eq!(otypes, want, "{ctx}: {oid} trigger types");
        let oscope: Vec<&str> = seq(&m["ResourceTypesScope"]).iter().filter_map(|x| x.as_str()).collect();
        assert_eq!(oscope, rule.resource_types, "{ctx}: {oid} ResourceTypesScope");
        let f = ref_name(&m["MaximumExecutionFrequency"]).expect("org MaximumExecutionFrequency: !Ref");
        assert_eq!(parameter_default(&t, f).as_deref(), Some(rule.default_frequency.as_str()));
        // InputParameters is a JSON string: substitute the stack defaults and compare.
        let raw =
            sub_string(&m["InputParameters"]).unwrap_or_else(|| panic!("{ctx}: {oid} InputParameters must be !Sub"));
        let mut json = raw.to_string();
        for (k, _) in t["Parameters"].as_mapping().unwrap() {
            let k = k.as_str().unwrap();
            json = json.replace(&format!("${{{k}}}"), &parameter_default(&t, k).unwrap_or_default());
        }
        let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("{ctx}: {oid} InputParameters is not JSON ({e}): {json}"));
        let want_json: serde_json::Map<String, serde_json::Value> =
            rule.parameters.iter().map(|(n, _, d)| (n.clone(), serde_json::Value::String(d.clone()))).collect();
        assert_eq!(parsed, want_json, "{ctx}: {oid} InputParameters with defaults");

        // ---- remediation of the account rule
        let remediations: Vec<_> = resources_of_type(&t, "AWS::Config::RemediationConfiguration")
            .into_iter()
            .filter(|(_, x)| ref_name(&x["Properties"]["ConfigRuleName"]) == Some(id))
            .collect();
        assert_eq!(remediations.len(), 1, "{ctx}: one RemediationConfiguration for {id}");
        let (rid, x) = remediations[0];
        assert_eq!(x["Condition"].as_str(), Some(account_cond), "{ctx}: {rid} exists with the account rule only");
        let xp = &x["Properties"];
        assert_eq!(xp["TargetType"].as_str(), Some("SSM_DOCUMENT"), "{ctx}: {rid} TargetType");
        assert!(ref_name(&xp["Automatic"]).is_some(), "{ctx}: {rid} Automatic from a parameter");
        assert_eq!(
            parameter_default(&t, ref_name(&xp["Automatic"]).unwrap()).as_deref(),
            Some("false"),
            "{ctx}: {rid} Automatic default"
        );
        assert!(
            ref_name(&xp["MaximumAutomaticAttempts"]).is_some(),
            "{ctx}: {rid} MaximumAutomaticAttempts from a parameter"
        );
        assert!(ref_name(&xp["RetryAttemptSeconds"]).is_some(), "{ctx}: {rid} RetryAttemptSeconds from a parameter");
        assert_eq!(
            xp["Parameters"]["ResourceId"]["ResourceValue"]["Value"].as_str(),
            Some("RESOURCE_ID"),
            "{ctx}: {rid} ResourceId"
        );
        assert!(
            xp["Parameters"]["AutomationAssumeRole"]["StaticValue"]["Values"].is_sequence(),
            "{ctx}: {rid} AutomationAssumeRole"
        );
    }

    // ---- alerts: NON_COMPLIANT changes of exactly these rules
    let events = resources_of_type(&t, "AWS::Events::Rule");
    assert_eq!(events.len(), 1, "one EventBridge rule");
    let pattern = &events[0].1["Properties"]["EventPattern"];
    assert_eq!(seq(&pattern["source"]).iter().filter_map(|x| x.as_str()).collect::<Vec<_>>(), ["aws.config"]);
    assert_eq!(
        seq(&pattern["detail-type"]).iter().filter_map(|x| x.as_str()).collect::<Vec<_>>(),
        ["Config Rules Compliance Change"]
    );
    let names: BTreeSet<&str> = seq(&pattern["detail"]["configRuleName"]).iter().filter_map(|x| x.as_str()).collect();
    assert_eq!(names, rules.iter().map(|r| r.name.as_str()).collect(), "event pattern rule names");
    assert_eq!(
        seq(&pattern["detail"]["newEvaluationResult"]["complianceType"])
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>(),
        ["NON_COMPLIANT"]
    );
}

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
        let evaluator_roles: BTreeSet<String> = binaries
            .iter()
            .filter(|(_, b)| b.as_str() != ROTATION_BINARY)
            .map(|(id, _)| function_role(resource(&t, id)))
            .collect();
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
                    let allowed = KMS_WITHOUT_RESOURCE_LEVEL.contains(&a.as_str())
                        && Some(&s.role) == rotation_role.as_ref()
                        && s.actions.len() == 1
                        && (a != "kms:CreateKey" || s.has_condition);
                    if !allowed {
                        problems.push(format!("{at}: {a} on Resource \"*\""));
                    }
                }
                if FORBIDDEN_KMS.contains(&a.as_str()) {
                    problems.push(format!("{at}: destructive {a}"));
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

#[test]
fn key_reader_trusts_exactly_the_evaluator_roles() {
    let w = template(WORKLOAD_TEMPLATE);
    let s = template(SECURITY_TEMPLATE);
    let trust = &resource(&s, "KeyReaderRole")["Properties"]["AssumeRolePolicyDocument"];
    let st = flat_list(&trust["Statement"]);
    assert_eq!(st.len(), 1, "one trust statement");
    assert_eq!(
        ref_name(&st[0]["Principal"]["AWS"]),
        Some("WorkloadAccountIds"),
        "trusted accounts come from the parameter"
    );
    let patterns: Vec<String> =
        flat_list(&st[0]["Condition"]["ArnLike"]["aws:PrincipalArn"]).into_iter().map(string_or_sub).collect();
    assert!(!patterns.is_empty(), "trust must be narrowed with aws:PrincipalArn");
    let role_of = |name: &str| format!("arn:${{AWS::Partition}}:iam::123456789012:role/{name}");
    let matches = |name: &str| patterns.iter().any(|p| glob_match(p, &role_of(name)));

    for (role, r) in resources_of_type(&w, "AWS::IAM::Role") {
        let name = sub_string(&r["Properties"]["RoleName"])
            .unwrap_or_else(|| panic!("{role}: RoleName must be deterministic (!Sub)"))
            .replace("${AWS::Region}", LONGEST_REGION);
        assert!(name.len() <= 64, "{role}: role name {name} longer than 64");
        let is_evaluator =
            function_binaries(&w).iter().any(|(id, b)| b != ROTATION_BINARY && function_role(resource(&w, id)) == role);
        assert_eq!(matches(&name), is_evaluator, "{role} ({name}): trusted by the key reader = is an evaluator");
    }
    // The workload template's default reader role name agrees with the rule (empty) and the
    // security template's default name is what operators are told to set.
    assert_eq!(parameter_default(&s, "KeyReaderRoleName").as_deref(), Some("kms-rotation-guard-key-reader"));
}

// ---------------------------------------------------------------------------------------
// (d) Automation document ↔ rotation handler

/// `{{ Name }}` / `{{Name}}` references in a string.
fn mustache_refs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else { break };
        out.push(after[..j].trim().to_string());
        rest = &after[j + 2..];
    }
    out
}

#[test]
fn automation_document_matches_rotation_handler() {
    let s = template(SECURITY_TEMPLATE);
    let w = template(WORKLOAD_TEMPLATE);
    let docs = resources_of_type(&s, "AWS::SSM::Document");
    assert_eq!(docs.len(), 1, "one SSM document");
    let (doc_id, doc) = docs[0];
    let p = &doc["Properties"];
    assert_eq!(p["DocumentType"].as_str(), Some("Automation"), "{doc_id}: DocumentType");
    let c = &p["Content"];
    assert_eq!(scalar_string(&c["schemaVersion"]).as_deref(), Some("0.3"), "{doc_id}: schemaVersion");
    assert_eq!(mustache_refs(c["assumeRole"].as_str().unwrap_or("")), ["AutomationAssumeRole"], "{doc_id}: assumeRole");

    let params = c["parameters"].as_mapping().expect("parameters");
    let pnames: BTreeSet<&str> = params.keys().filter_map(|k| k.as_str()).collect();
    for required in ["KeyId", "ResourceId", "Strategy", "AutomationAssumeRole"] {
        assert!(pnames.contains(required), "{doc_id}: parameter {required} missing");
    }
    for n in ["KeyId", "ResourceId", "Strategy"] {
        assert_eq!(params[n]["type"].as_str(), Some("String"), "{doc_id}: {n} is a String");
    }
    let strategies: Vec<&str> = seq(&params["Strategy"]["allowedValues"]).iter().filter_map(|x| x.as_str()).collect();
    assert_eq!(strategies, ["in-place", "alias-swap"], "{doc_id}: Strategy allowedValues");
    assert_eq!(params["Strategy"]["default"].as_str(), Some("in-place"), "{doc_id}: Strategy default");
    assert!(!params["ResourceId"]["default"].is_null(), "{doc_id}: ResourceId is optional");

    let rotation_fn = function_for_binary(&s, ROTATION_BINARY);
    let steps = seq(&c["mainSteps"]);
    let step_outputs: BTreeSet<String> = steps
        .iter()
        .flat_map(|st| {
            let name = st["name"].as_str().unwrap_or("").to_string();
            seq(&st["outputs"])
                .iter()
                .filter_map(move |o| o["Name"].as_str().map(|n| format!("{name}.{n}")))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut invokes = 0;
    for st in steps {
        let name = st["name"].as_str().expect("step name");
        // every {{ ref }} names a parameter or an earlier step's output
        let text = serde_yaml::to_string(&st["inputs"]).unwrap();
        for r in mustache_refs(&text) {
            assert!(
                pnames.contains(r.as_str()) || step_outputs.contains(&r),
                "{doc_id}/{name}: unknown reference {{{{{r}}}}}"
            );
        }
        if st["action"].as_str() != Some("aws:invokeLambdaFunction") {
            continue;
        }
        invokes += 1;
        assert_eq!(
            get_att(&st["inputs"]["FunctionName"]),
            Some((rotation_fn.clone(), "Arn".into())),
            "{doc_id}/{name}: FunctionName"
        );
        let payload = st["inputs"]["Payload"]
            .as_str()
            .unwrap_or_else(|| panic!("{doc_id}/{name}: Payload must be a JSON string"));
        let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(payload)
            .unwrap_or_else(|e| panic!("{doc_id}/{name}: Payload is not JSON ({e}): {payload}"));
        let keys: BTreeSet<&str> = json.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ROTATION_PAYLOAD_KEYS.into_iter().collect(),
            "{doc_id}/{name}: payload keys = what the handler accepts"
        );
        let one_ref = |k: &str| -> String {
            let refs =
                mustache_refs(json[k].as_str().unwrap_or_else(|| panic!("{doc_id}/{name}: {k} must be a string")));
            assert_eq!(refs.len(), 1, "{doc_id}/{name}: {k} = one reference");
            refs[0].clone()
        };
        let key = one_ref("keyId");
        assert!(key == "KeyId" || key.ends_with(".KeyId"), "{doc_id}/{name}: keyId from KeyId, got {key}");
        assert_eq!(one_ref("resourceId"), "ResourceId", "{doc_id}/{name}: resourceId");
        assert_eq!(one_ref("strategy"), "Strategy", "{doc_id}/{name}: strategy");
    }
    assert!(invokes >= 1, "{doc_id}: no aws:invokeLambdaFunction step");

    // The workload remediations pass only parameters the document declares, and every
    // document parameter without a default.
    for (rid, x) in resources_of_type(&w, "AWS::Config::RemediationConfiguration") {
        let given: BTreeSet<&str> =
            x["Properties"]["Parameters"].as_mapping().unwrap().keys().filter_map(|k| k.as_str()).collect();
        for g in &given {
            assert!(pnames.contains(g), "{rid}: parameter {g} is not a document parameter");
        }
        for (k, v) in params {
            let k = k.as_str().unwrap();
            if v["default"].is_null() {
                assert!(given.contains(k), "{rid}: required document parameter {k} not given");
            }
        }
        for (k, v) in x["Properties"]["Parameters"].as_mapping().unwrap() {
            let allowed: Vec<String> =
                seq(&params[k.as_str().unwrap()]["allowedValues"]).iter().filter_map(scalar_string).collect();
            for sv in seq(&v["StaticValue"]["Values"]) {
                // A literal, or a stack parameter whose every allowed value must fit.
                let values: Vec<String> = match ref_name(sv) {
                    Some(param) => {
                        seq(&w["Parameters"][param]["AllowedValues"]).iter().filter_map(scalar_string).collect()
                    }
                    None if intrinsic(sv).is_some() => continue,
                    None => vec![scalar_string(sv).expect("static value")],
                };
                for value in values {
                    assert!(allowed.is_empty() || allowed.contains(&value), "{rid}: {k:?}={value} not in {allowed:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// (e) cfn-lint

#[test]
fn cfn_lint_passes() {
    let cfn_lint = root().join(".tools/venv/bin/cfn-lint");
    assert!(
        cfn_lint.exists(),
        "cfn-lint not found at {}: run scripts/setup (it installs cfn-lint into .tools/venv)",
        cfn_lint.display()
    );
    let out = Command::new(&cfn_lint)
        .args(["--", WORKLOAD_TEMPLATE, SECURITY_TEMPLATE])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", cfn_lint.display()));
    assert!(
        out.status.success(),
        "cfn-lint failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn glob_matcher_works() {
    assert!(glob_match("a*-rds", "abc-rds"));
    assert!(glob_match("arn:*:role/x-*-s3", "arn:aws:role/x-eu-west-1-s3"));
    assert!(!glob_match("arn:*:role/x-*-s3", "arn:aws:role/x-eu-west-1-rds"));
    assert!(!glob_match("a*a", "a"));
    assert!(glob_match("exact", "exact"));
}
