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

// ---------------------------------------------------------------------------------------
// A small CloudFormation evaluator: resolves a template for given parameter values, so the
// checks below see what CloudFormation would deploy (both branches of every `!If` are
// otherwise easy to get wrong).

const NO_VALUE: &str = "\u{0}NoValue";
const ACCOUNT: &str = "999999999999";
const REGION: &str = "eu-west-1";

struct Cfn<'a> {
    t: &'a Value,
    params: BTreeMap<String, Value>,
}

impl<'a> Cfn<'a> {
    /// The template with its parameter defaults, overridden by `overrides`
    /// (CommaDelimitedList values as "a,b").
    fn new(t: &'a Value, overrides: &[(&str, &str)]) -> Self {
        let mut params = BTreeMap::new();
        for (k, p) in t["Parameters"].as_mapping().expect("Parameters") {
            let k = k.as_str().unwrap().to_string();
            let given = overrides.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
            let raw = given.or_else(|| scalar_string(&p["Default"]));
            let Some(raw) = raw else { continue };
            let v = if p["Type"].as_str().is_some_and(|ty| ty.contains("List")) {
                Value::Sequence(raw.split(',').map(|s| Value::String(s.to_string())).collect())
            } else {
                Value::String(raw)
            };
            params.insert(k, v);
        }
        for (n, _) in overrides {
            assert!(params.contains_key(*n), "no parameter {n}");
        }
        Cfn { t, params }
    }

    fn var(&self, name: &str) -> Value {
        match name {
            "AWS::Partition" => Value::String("aws".into()),
            "AWS::Region" => Value::String(REGION.into()),
            "AWS::AccountId" => Value::String(ACCOUNT.into()),
            "AWS::NoValue" => Value::String(NO_VALUE.into()),
            _ => {
                if let Some(v) = self.params.get(name) {
                    v.clone()
                } else {
                    assert!(!self.t["Resources"][name].is_null(), "Ref to unknown {name}");
                    Value::String(format!("ref:{name}"))
                }
            }
        }
    }

    fn condition(&self, name: &str) -> bool {
        let def = &self.t["Conditions"][name];
        assert!(!def.is_null(), "condition {name} missing");
        self.truth(def)
    }

    fn truth(&self, v: &Value) -> bool {
        let (f, inner) = intrinsic(v).unwrap_or_else(|| panic!("not a condition function: {v:?}"));
        let args = seq(inner);
        match f.as_str() {
            "Equals" => self.eval(&args[0]) == self.eval(&args[1]),
            "Not" => !self.truth(&args[0]),
            "And" => args.iter().all(|a| self.truth(a)),
            "Or" => args.iter().any(|a| self.truth(a)),
            "Condition" => self.condition(inner.as_str().unwrap()),
            "EachMemberEquals" => {
                let list = self.eval(&args[0]);
                let want = self.eval(&args[1]);
                seq(&list).iter().all(|m| *m == want)
            }
            other => panic!("condition function {other} not modelled"),
        }
    }

    fn active(&self, r: &Value) -> bool {
        r["Condition"].as_str().is_none_or(|c| self.condition(c))
    }

    /// A value as deployed: intrinsics resolved, AWS::NoValue entries dropped.
    fn eval(&self, v: &Value) -> Value {
        if let Some((f, inner)) = intrinsic(v) {
            let args = seq(inner);
            return match f.as_str() {
                "Ref" => self.var(inner.as_str().unwrap()),
                "GetAtt" => {
                    let (id, attr) = get_att(v).unwrap();
                    Value::String(format!("{id}.{attr}"))
                }
                "Sub" => {
                    let (text, vars) = match inner {
                        Value::String(s) => (s.as_str(), None),
                        _ => (args[0].as_str().unwrap(), Some(&args[1])),
                    };
                    Value::String(self.sub(text, vars))
                }
                "Join" => {
                    let sep = args[0].as_str().unwrap();
                    let parts: Vec<String> = seq(&self.eval(&args[1]))
                        .iter()
                        .map(|p| p.as_str().unwrap_or_else(|| panic!("Join of {p:?}")).to_string())
                        .collect();
                    Value::String(parts.join(sep))
                }
                "Split" => {
                    let sep = args[0].as_str().unwrap();
                    let s = self.eval(&args[1]);
                    Value::Sequence(s.as_str().unwrap().split(sep).map(|x| Value::String(x.into())).collect())
                }
                "Select" => {
                    let i: usize = scalar_string(&self.eval(&args[0])).unwrap().parse().unwrap();
                    seq(&self.eval(&args[1]))[i].clone()
                }
                "If" => {
                    if self.condition(args[0].as_str().unwrap()) {
                        self.eval(&args[1])
                    } else {
                        self.eval(&args[2])
                    }
                }
                "Equals" | "Not" | "And" | "Or" | "Condition" | "EachMemberEquals" => Value::Bool(self.truth(v)),
                other => panic!("function {other} not modelled"),
            };
        }
        match v {
            Value::Mapping(m) => Value::Mapping(
                m.iter()
                    .map(|(k, x)| (k.clone(), self.eval(x)))
                    .filter(|(_, x)| x.as_str() != Some(NO_VALUE))
                    .collect(),
            ),
            Value::Sequence(s) => {
                Value::Sequence(s.iter().map(|x| self.eval(x)).filter(|x| x.as_str() != Some(NO_VALUE)).collect())
            }
            other => other.clone(),
        }
    }

    fn sub(&self, text: &str, vars: Option<&Value>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let j = after.find('}').expect("unclosed ${");
            let name = &after[..j];
            if let Some(lit) = name.strip_prefix('!') {
                out.push_str(&format!("${{{lit}}}"));
            } else {
                let local = vars.map(|m| &m[name]).filter(|x| !x.is_null());
                let v = match local {
                    Some(x) => self.eval(x),
                    None if name.contains('.') => Value::String(name.to_string()),
                    None => self.var(name),
                };
                out.push_str(&scalar_string(&v).unwrap_or_else(|| panic!("${{{name}}} is not a string: {v:?}")));
            }
            rest = &after[j + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Active resources of a type, evaluated.
    fn resources_of_type(&self, ty: &str) -> Vec<(String, Value)> {
        resources_of_type(self.t, ty)
            .into_iter()
            .filter(|(_, r)| self.active(r))
            .map(|(id, r)| (id.to_string(), self.eval(r)))
            .collect()
    }

    /// Every Allow statement of one role's inline policies, evaluated.
    fn role_statements(&self, role: &str) -> Vec<Value> {
        let r = resource(self.t, role);
        assert!(self.active(r), "{role} is not deployed with these parameters");
        let r = self.eval(r);
        seq(&r["Properties"]["Policies"])
            .iter()
            .flat_map(|p| seq(&p["PolicyDocument"]["Statement"]).to_vec())
            .filter(|s| s["Effect"].as_str() == Some("Allow"))
            .collect()
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(s) => s.iter().map(|x| scalar_string(x).expect("string")).collect(),
        Value::Null => vec![],
        other => vec![scalar_string(other).expect("string")],
    }
}

fn actions_of(st: &Value) -> Vec<String> {
    strings(&st["Action"])
}

/// Statements of `role` that allow `action`.
fn allowing<'s>(sts: &'s [Value], action: &str) -> Vec<&'s Value> {
    sts.iter().filter(|s| actions_of(s).iter().any(|a| a == action)).collect()
}

const ROTATION_ROLE: &str = "RotationRole";
const GUARD_TAG: &str = "kms-rotation-guard";

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

    for org in ["", "o-abcdefghij"] {
        let cfn = Cfn::new(&s, &[("WorkloadAccountIds", "111111111111,222222222222"), ("OrganizationId", org)]);
        let role = cfn.eval(resource(&s, "KeyReaderRole"));
        let st = seq(&role["Properties"]["AssumeRolePolicyDocument"]["Statement"]);
        assert_eq!(st.len(), 1, "one trust statement");
        assert_eq!(strings(&st[0]["Principal"]["AWS"]), ["111111111111", "222222222222"], "trusted accounts");
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
        let org_ids = strings(&c["StringEquals"]["aws:PrincipalOrgID"]);
        if org.is_empty() {
            assert!(org_ids.is_empty(), "no organization condition without OrganizationId");
        } else {
            assert_eq!(org_ids, [org], "aws:PrincipalOrgID when OrganizationId is given");
        }
    }

    // Reads are scoped to guarded keys when a guard tag is set.
    for (guard, want) in [("enabled", Some("enabled")), ("", None)] {
        let cfn = Cfn::new(&s, &[("WorkloadAccountIds", "111111111111"), ("RotatableKeyTagValue", guard)]);
        for st in cfn.role_statements("KeyReaderRole") {
            let tag = st["Condition"]["StringEquals"][format!("aws:ResourceTag/{GUARD_TAG}").as_str()].as_str();
            assert_eq!(tag, want, "KeyReaderRole reads with RotatableKeyTagValue={guard:?}: {st:?}");
        }
    }
    assert_eq!(parameter_default(&s, "KeyReaderRoleName").as_deref(), Some("kms-rotation-guard-key-reader"));
}

#[test]
fn rotation_is_invoked_only_by_each_workload_remediation_role() {
    let w = template(WORKLOAD_TEMPLATE);
    let s = template(SECURITY_TEMPLATE);
    let remediation = sub_string(&resource(&w, "RemediationRole")["Properties"]["RoleName"]).unwrap().to_string();
    // Nothing grants the function to everyone, to an organization or to a whole account.
    for (id, p) in resources_of_type(&s, "AWS::Lambda::Permission") {
        let p = &p["Properties"];
        assert!(p["PrincipalOrgID"].is_null(), "{id}: PrincipalOrgID grant");
        assert_ne!(p["Principal"].as_str(), Some("*"), "{id}: Principal \"*\"");
    }
    let rotation_fn = function_for_binary(&s, ROTATION_BINARY);
    for n in [1usize, 3, 20] {
        let ids: Vec<String> = (0..n).map(|i| format!("{:012}", 100000000000u64 + i as u64)).collect();
        let cfn = Cfn::new(&s, &[("WorkloadAccountIds", &ids.join(","))]);
        let grants: BTreeSet<String> = cfn
            .resources_of_type("AWS::Lambda::Permission")
            .into_iter()
            .filter(|(_, p)| p["Properties"]["FunctionName"].as_str() == Some(&format!("{rotation_fn}.Arn")))
            .map(|(id, p)| {
                assert_eq!(p["Properties"]["Action"].as_str(), Some("lambda:InvokeFunction"), "{id}");
                p["Properties"]["Principal"].as_str().unwrap().to_string()
            })
            .collect();
        let want: BTreeSet<String> = ids
            .iter()
            .map(|a| format!("arn:aws:iam::{a}:role/{}", remediation.replace("${AWS::Region}", REGION)))
            .collect();
        assert_eq!(grants, want, "{n} workload accounts: one grant each, to its remediation role");
    }
    // Without rotation, no grant at all.
    let cfn = Cfn::new(&s, &[("WorkloadAccountIds", "111111111111"), ("EnableRotation", "false")]);
    assert!(cfn.resources_of_type("AWS::Lambda::Permission").is_empty(), "EnableRotation=false: no grants");
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

// ---------------------------------------------------------------------------------------
// (c3) the rotation role (issue 12)

/// Condition values of `op` / `key` in a statement, as strings (absent: empty).
fn cond_values(st: &Value, op: &str, key: &str) -> Vec<String> {
    strings(&st["Condition"][op][key])
}

#[test]
fn rotation_role_encrypts_and_decrypts_only_the_probe() {
    let s = template(SECURITY_TEMPLATE);
    for swap in ["false", "true"] {
        let cfn = Cfn::new(&s, &[("WorkloadAccountIds", "111111111111"), ("AllowAliasSwap", swap)]);
        let sts = cfn.role_statements(ROTATION_ROLE);
        for action in ["kms:Encrypt", "kms:Decrypt"] {
            let grants = allowing(&sts, action);
            assert!(!grants.is_empty(), "{action} missing (the verification probe needs it)");
            for st in grants {
                assert_eq!(
                    cond_values(st, "StringEquals", "kms:EncryptionContext:kms-rotation-guard:probe"),
                    ["verification"],
                    "{action}: only under the probe's encryption context"
                );
                assert_eq!(
                    cond_values(st, "ForAllValues:StringEquals", "kms:EncryptionContextKeys"),
                    ["kms-rotation-guard:probe"],
                    "{action}: no other context key"
                );
                assert_eq!(
                    cond_values(st, "Null", "kms:EncryptionContextKeys"),
                    ["false"],
                    "{action}: context required"
                );
            }
        }
        for st in &sts {
            for a in actions_of(st) {
                assert!(
                    !matches!(
                        a.as_str(),
                        "kms:ReEncryptFrom" | "kms:ReEncryptTo" | "kms:GenerateDataKey" | "kms:CreateGrant"
                    ),
                    "rotation role holds {a}"
                );
            }
        }
    }
}

#[test]
fn rotation_role_imports_only_with_allowed_wrapping_and_non_expiring_material() {
    let s = template(SECURITY_TEMPLATE);
    let strong = ["RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_256"];
    // (parameter overrides, allowed wrapping algorithms, allowed expiration models)
    type Case<'a> = (&'a [(&'a str, &'a str)], Vec<&'a str>, Vec<&'a str>);
    let cases: [Case; 4] = [
        (&[], strong.to_vec(), vec!["KEY_MATERIAL_DOES_NOT_EXPIRE"]),
        (
            &[("HsmType", "softhsm")],
            vec!["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"],
            vec!["KEY_MATERIAL_DOES_NOT_EXPIRE"],
        ),
        (
            &[("AllowedWrappingAlgorithms", "RSAES_OAEP_SHA_256")],
            vec!["RSAES_OAEP_SHA_256"],
            vec!["KEY_MATERIAL_DOES_NOT_EXPIRE"],
        ),
        (
            &[("AllowExpiringMaterial", "true")],
            strong.to_vec(),
            vec!["KEY_MATERIAL_DOES_NOT_EXPIRE", "KEY_MATERIAL_EXPIRES"],
        ),
    ];
    for (overrides, algorithms, models) in cases {
        let mut o = vec![("WorkloadAccountIds", "111111111111")];
        o.extend_from_slice(overrides);
        let cfn = Cfn::new(&s, &o);
        let sts = cfn.role_statements(ROTATION_ROLE);
        let gpi = allowing(&sts, "kms:GetParametersForImport");
        assert!(!gpi.is_empty(), "{overrides:?}: GetParametersForImport missing");
        for st in &gpi {
            let mut got = cond_values(st, "StringEquals", "kms:WrappingAlgorithm");
            got.sort();
            let mut want: Vec<String> = algorithms.iter().map(|x| x.to_string()).collect();
            want.sort();
            assert_eq!(got, want, "{overrides:?}: kms:WrappingAlgorithm");
            let mut specs = cond_values(st, "StringEquals", "kms:WrappingKeySpec");
            specs.sort();
            assert_eq!(specs, ["RSA_3072", "RSA_4096"], "{overrides:?}: kms:WrappingKeySpec (strong ones)");
        }
        // The function asks only for what the role allows.
        let f = cfn.eval(resource(&s, &function_for_binary(&s, ROTATION_BINARY)));
        let env = &f["Properties"]["Environment"]["Variables"];
        let spec = env["KRG_WRAPPING_KEY_SPEC"].as_str().expect("KRG_WRAPPING_KEY_SPEC");
        assert!(["RSA_3072", "RSA_4096"].contains(&spec), "{overrides:?}: KRG_WRAPPING_KEY_SPEC={spec}");
        if let Some(a) = env["KRG_WRAPPING_ALGORITHM"].as_str() {
            assert!(algorithms.contains(&a), "{overrides:?}: KRG_WRAPPING_ALGORITHM={a} is not allowed");
        }
        let imk = allowing(&sts, "kms:ImportKeyMaterial");
        assert!(!imk.is_empty(), "{overrides:?}: ImportKeyMaterial missing");
        for st in &imk {
            assert_eq!(
                cond_values(st, "StringEquals", "kms:ExpirationModel"),
                models,
                "{overrides:?}: kms:ExpirationModel"
            );
        }
        // Multi-Region replicas: import into this account's mrk-* keys in every region.
        for st in gpi.iter().chain(imk.iter()) {
            assert!(
                strings(&st["Resource"]).contains(&format!("arn:aws:kms:*:{ACCOUNT}:key/mrk-*")),
                "{overrides:?}: replicas (mrk-* in every region) missing from {st:?}"
            );
        }
        for needed in ["kms:ListKeyRotations", "kms:DescribeKey", "kms:RotateKeyOnDemand"] {
            assert!(!allowing(&sts, needed).is_empty(), "{overrides:?}: {needed} missing");
        }
    }
}

#[test]
fn alias_swap_is_break_glass_and_no_right_rests_on_a_tag_the_role_writes() {
    let s = template(SECURITY_TEMPLATE);
    for swap in ["false", "true"] {
        for guard in ["enabled", ""] {
            let cfn = Cfn::new(
                &s,
                &[("WorkloadAccountIds", "111111111111"), ("AllowAliasSwap", swap), ("RotatableKeyTagValue", guard)],
            );
            let sts = cfn.role_statements(ROTATION_ROLE);
            let ctx = format!("AllowAliasSwap={swap} RotatableKeyTagValue={guard:?}");
            if swap == "false" {
                for a in ["kms:CreateKey", "kms:UpdateAlias", "kms:ListAliases", "kms:GetKeyPolicy"] {
                    assert!(allowing(&sts, a).is_empty(), "{ctx}: {a} by default");
                }
            } else {
                let ck = allowing(&sts, "kms:CreateKey");
                assert!(!ck.is_empty(), "{ctx}: CreateKey missing");
                for st in ck {
                    assert_eq!(
                        cond_values(st, "StringEquals", "kms:KeyOrigin"),
                        ["EXTERNAL"],
                        "{ctx}: CreateKey origin"
                    );
                }
            }
            // Tags the role can write: every TagResource grant must list its keys.
            let mut writable: BTreeSet<String> = BTreeSet::new();
            let mut any_tag = false;
            for st in allowing(&sts, "kms:TagResource") {
                let keys = cond_values(st, "ForAllValues:StringEquals", "aws:TagKeys");
                if keys.is_empty() {
                    any_tag = true;
                } else {
                    assert_eq!(cond_values(st, "Null", "aws:TagKeys"), ["false"], "{ctx}: aws:TagKeys required");
                    writable.extend(keys);
                }
            }
            assert_eq!(
                any_tag,
                swap == "true",
                "{ctx}: the right to write any tag (the guard tag) only with alias-swap"
            );
            // Every tag the rotation and the remediation gate write must be writable, or the
            // first real rotation fails with AccessDenied halfway (the emulators never check).
            if !any_tag {
                use kms_rotation_guard::rotation::{DATE_TAG, HSM_OBJECT_TAG, MATERIAL_TAG, PENDING_TAG};
                for tag in
                    [DATE_TAG, MATERIAL_TAG, PENDING_TAG, HSM_OBJECT_TAG, kms_rotation_guard::remediation::CLAIM_TAG]
                {
                    assert!(
                        writable.contains(tag),
                        "{ctx}: the code writes tag {tag}, which the role may not: {writable:?}"
                    );
                }
            }
            for st in &sts {
                for op in ["StringEquals", "StringLike", "ForAnyValue:StringEquals"] {
                    for (k, _) in st["Condition"][op].as_mapping().into_iter().flatten() {
                        let Some(tag) = k.as_str().and_then(|k| k.strip_prefix("aws:ResourceTag/")) else { continue };
                        assert!(
                            !any_tag && !writable.contains(tag),
                            "{ctx}: a right depends on tag {tag}, which this role can write: {st:?}"
                        );
                    }
                }
            }
            if swap == "false" && !guard.is_empty() {
                // Default: the guard tag still limits import and rotation.
                for st in allowing(&sts, "kms:ImportKeyMaterial") {
                    assert_eq!(
                        cond_values(st, "StringEquals", &format!("aws:ResourceTag/{GUARD_TAG}")),
                        [guard],
                        "{ctx}: ImportKeyMaterial on guarded keys only"
                    );
                }
            }
            for st in &sts {
                let on_keys = strings(&st["Resource"]).iter().any(|r| r.contains(":key/"));
                if on_keys && actions_of(st).iter().any(|a| a.starts_with("kms:")) {
                    assert_eq!(
                        cond_values(st, "StringEquals", "kms:KeyOrigin"),
                        ["EXTERNAL"],
                        "{ctx}: key rights only on EXTERNAL keys: {st:?}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// (d) Automation document ↔ rotation handler (notes/contracts.md)

/// The fields of `RemediationRequest` (src/remediation/request.rs) fixed by the contract between the
/// streams: the document may send exactly these.
const REMEDIATION_REQUEST_FIELDS: [&str; 7] =
    ["action", "keyId", "resourceId", "resourceType", "strategy", "ruleParameters", "keyMaterialId"];

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

fn python() -> PathBuf {
    let py = root().join(".tools/venv/bin/python");
    assert!(py.exists(), "{} missing: run scripts/setup", py.display());
    py
}

/// Runs the document's script step with `events`; Ok(returned object) or Err(message).
fn run_document_script(script: &str, events: serde_json::Value) -> Result<serde_json::Value, String> {
    let runner = format!(
        "{script}\n\nimport json as _j, sys as _s\ntry:\n    _r = {{'ok': handler(_j.loads(_s.argv[1]), None)}}\nexcept Exception as e:\n    _r = {{'error': str(e)}}\nprint(_j.dumps(_r))\n"
    );
    let out = Command::new(python())
        .args(["-c", &runner, &events.to_string()])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("running python");
    assert!(out.status.success(), "script crashed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("runner output");
    match v.get("error") {
        Some(e) => Err(e.as_str().unwrap_or_default().to_string()),
        None => Ok(v["ok"].clone()),
    }
}

#[test]
fn automation_document_sends_the_remediation_request_contract() {
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
    for required in ["Action", "KeyId", "ResourceId", "ResourceType", "Strategy", "RuleParameters", "KeyMaterialId"] {
        assert!(pnames.contains(required), "{doc_id}: parameter {required} missing");
        assert_eq!(params[required]["type"].as_str(), Some("String"), "{doc_id}: {required} is a String");
        assert!(!params[required]["default"].is_null(), "{doc_id}: {required} is optional");
    }
    let values =
        |n: &str| -> Vec<String> { seq(&params[n]["allowedValues"]).iter().filter_map(scalar_string).collect() };
    assert_eq!(values("Strategy"), ["in-place", "alias-swap"], "{doc_id}: Strategy allowedValues");
    assert_eq!(params["Strategy"]["default"].as_str(), Some("in-place"), "{doc_id}: Strategy default");
    assert_eq!(values("Action"), ["rotate", "reimport"], "{doc_id}: Action allowedValues");
    assert_eq!(params["Action"]["default"].as_str(), Some("rotate"), "{doc_id}: Action default");

    // Steps: one script builds the request, one invoke sends exactly its output.
    let rotation_fn = function_for_binary(&s, ROTATION_BINARY);
    let steps = seq(&c["mainSteps"]);
    let step_outputs: BTreeMap<String, String> = steps
        .iter()
        .flat_map(|st| {
            let name = st["name"].as_str().unwrap_or("").to_string();
            seq(&st["outputs"])
                .iter()
                .filter_map(move |o| Some((format!("{name}.{}", o["Name"].as_str()?), name.clone())))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut script = None;
    let mut invokes = 0;
    for st in steps {
        let name = st["name"].as_str().expect("step name");
        let text = serde_yaml::to_string(&st["inputs"]).unwrap();
        for r in mustache_refs(&text) {
            assert!(
                pnames.contains(r.as_str()) || step_outputs.contains_key(&r),
                "{doc_id}/{name}: unknown reference {{{{{r}}}}}"
            );
        }
        match st["action"].as_str() {
            Some("aws:executeScript") => {
                let given: BTreeSet<&str> = st["inputs"]["InputPayload"]
                    .as_mapping()
                    .expect("InputPayload")
                    .keys()
                    .filter_map(|k| k.as_str())
                    .collect();
                let want: BTreeSet<&str> = pnames.iter().copied().filter(|n| *n != "AutomationAssumeRole").collect();
                assert_eq!(given, want, "{doc_id}/{name}: the script sees every request parameter");
                script = Some(st["inputs"]["Script"].as_str().expect("Script").to_string());
            }
            Some("aws:invokeLambdaFunction") => {
                invokes += 1;
                assert_eq!(
                    get_att(&st["inputs"]["FunctionName"]),
                    Some((rotation_fn.clone(), "Arn".into())),
                    "{doc_id}/{name}: FunctionName"
                );
                let payload = st["inputs"]["Payload"].as_str().expect("Payload");
                let refs = mustache_refs(payload);
                assert_eq!(refs.len(), 1, "{doc_id}/{name}: Payload is the built request");
                assert_eq!(
                    payload.trim(),
                    format!("{{{{ {} }}}}", refs[0]),
                    "{doc_id}/{name}: Payload is only the reference"
                );
                assert!(step_outputs.contains_key(&refs[0]), "{doc_id}/{name}: Payload from a script output");
            }
            _ => {}
        }
    }
    assert_eq!(invokes, 1, "{doc_id}: one aws:invokeLambdaFunction step");
    let script = script.expect("an aws:executeScript step builds the request");

    // Run the script: every request it writes has only contract fields, and together
    // they use all of them.
    let rule_parameters = r#"{"maxKeyAgeDays": "365", "expiryWarningDays": "30"}"#;
    let arn = "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let base = serde_json::json!({
        "Action": "rotate", "KeyId": arn, "ResourceId": "bucket-a", "ResourceType": "s3",
        "Strategy": "in-place", "RuleParameters": rule_parameters, "KeyMaterialId": ""
    });
    let with = |changes: serde_json::Value| {
        let mut e = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    let contract: BTreeSet<&str> = REMEDIATION_REQUEST_FIELDS.into_iter().collect();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for events in [
        base.clone(),
        with(serde_json::json!({"Strategy": "alias-swap"})),
        with(serde_json::json!({"Action": "reimport", "KeyMaterialId": "a1b2c3"})),
        with(serde_json::json!({"ResourceId": "", "ResourceType": "", "RuleParameters": ""})),
    ] {
        let out = run_document_script(&script, events.clone()).unwrap_or_else(|e| panic!("{events}: {e}"));
        let text = out["request"].as_str().expect("request is a JSON string");
        let req: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).expect("request JSON");
        for (k, v) in &req {
            assert!(contract.contains(k.as_str()), "{events}: field {k} is not in RemediationRequest's contract");
            assert!(v.is_string(), "{events}: {k} must be a string");
            used.insert(k.clone());
        }
        assert_eq!(req["keyId"], arn, "{events}: keyId");
        assert_eq!(req["action"], events["Action"], "{events}: action");
        if !events["RuleParameters"].as_str().unwrap().is_empty() {
            assert_eq!(req["ruleParameters"], rule_parameters, "{events}: ruleParameters verbatim, as a string");
        }
        if events["Action"] == "reimport" {
            assert_eq!(req["keyMaterialId"], "a1b2c3", "{events}: keyMaterialId");
        }
    }
    assert_eq!(used.iter().map(String::as_str).collect::<BTreeSet<_>>(), contract, "every contract field is sent");
    // What the rotation must never be asked.
    for (events, why) in [
        (with(serde_json::json!({"ResourceType": "rds", "Strategy": "alias-swap"})), "alias-swap on RDS"),
        (with(serde_json::json!({"ResourceType": "dynamodb", "Strategy": "alias-swap"})), "alias-swap on DynamoDB"),
        (with(serde_json::json!({"KeyMaterialId": "a1b2c3"})), "keyMaterialId without reimport"),
        (with(serde_json::json!({"RuleParameters": "[1]"})), "rule parameters that are not an object"),
        (with(serde_json::json!({"KeyId": "", "ResourceId": ""})), "neither key nor resource"),
    ] {
        assert!(run_document_script(&script, events.clone()).is_err(), "{why} must be refused: {events}");
    }

    // The workload remediations pass only parameters the document declares, every
    // parameter without a default, values the document allows, and the rule's parameters.
    let rules = rules();
    for (rid, x) in resources_of_type(&w, "AWS::Config::RemediationConfiguration") {
        let xp = &x["Properties"]["Parameters"];
        let given: BTreeSet<&str> = xp.as_mapping().unwrap().keys().filter_map(|k| k.as_str()).collect();
        for g in &given {
            assert!(pnames.contains(g), "{rid}: parameter {g} is not a document parameter");
        }
        for (k, v) in params {
            let k = k.as_str().unwrap();
            if v["default"].is_null() {
                assert!(given.contains(k), "{rid}: required document parameter {k} not given");
            }
        }
        for (k, v) in xp.as_mapping().unwrap() {
            let allowed: Vec<String> =
                seq(&params[k.as_str().unwrap()]["allowedValues"]).iter().filter_map(scalar_string).collect();
            for sv in seq(&v["StaticValue"]["Values"]) {
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
        // RuleParameters = the rule's InputParameters as JSON, with the same defaults.
        let rule_id = ref_name(&x["Properties"]["ConfigRuleName"]).expect("ConfigRuleName: !Ref");
        let rule_name = resource(&w, rule_id)["Properties"]["ConfigRuleName"].as_str().unwrap();
        let rule = rules.iter().find(|r| r.name == rule_name).expect("rule file");
        let rp = seq(&xp["RuleParameters"]["StaticValue"]["Values"]);
        assert_eq!(rp.len(), 1, "{rid}: RuleParameters is one JSON string");
        let cfn = Cfn::new(&w, &[("SecurityAccountId", "111111111111")]);
        let json = cfn.eval(&rp[0]);
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json.as_str().unwrap()).unwrap_or_else(|e| panic!("{rid}: RuleParameters JSON: {e}"));
        let want: serde_json::Map<String, serde_json::Value> =
            rule.parameters.iter().map(|(n, _, d)| (n.clone(), serde_json::Value::String(d.clone()))).collect();
        assert_eq!(parsed, want, "{rid}: RuleParameters = the rule's InputParameters");
        let input = &resource(&w, rule_id)["Properties"]["InputParameters"];
        for (n, _, _) in &rule.parameters {
            let param = ref_name(&input[n.as_str()]).unwrap();
            let probe = Cfn::new(&w, &[("SecurityAccountId", "111111111111"), (param, "42")]);
            let changed: serde_json::Value = serde_json::from_str(probe.eval(&rp[0]).as_str().unwrap()).unwrap();
            assert_eq!(changed[n.as_str()], "42", "{rid}: RuleParameters.{n} follows stack parameter {param}");
        }
    }
}

/// `RemediationRequest` (src/remediation/request.rs) accepts exactly the contract's fields, the ones the
/// document sends.
#[test]
fn remediation_request_struct_has_the_contract_fields() {
    let src = std::fs::read_to_string(root().join("src/remediation/request.rs")).unwrap();
    let start = src.find("pub struct RemediationRequest").expect("RemediationRequest in src/remediation/request.rs");
    let body = &src[start..start + src[start..].find("\n}").expect("end of struct")];
    let fields: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub ")?.split_once(':').map(|(n, _)| n.trim().to_string()))
        .map(|snake| {
            let mut camel = String::new();
            let mut upper = false;
            for c in snake.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    camel.extend(c.to_uppercase());
                    upper = false;
                } else {
                    camel.push(c);
                }
            }
            camel
        })
        .collect();
    let contract: BTreeSet<String> = REMEDIATION_REQUEST_FIELDS.iter().map(|f| f.to_string()).collect();
    assert_eq!(fields, contract, "RemediationRequest fields = the SSM payload contract");
}

/// Issue 10: RDS and DynamoDB store the key's ARN, never an alias, so their remediation
/// never swaps aliases, whatever RemediationStrategy says.
#[test]
fn rds_and_dynamodb_remediation_never_alias_swap() {
    let w = template(WORKLOAD_TEMPLATE);
    let mut seen = BTreeSet::new();
    for (rid, x) in resources_of_type(&w, "AWS::Config::RemediationConfiguration") {
        let p = &x["Properties"]["Parameters"];
        let ty = seq(&p["ResourceType"]["StaticValue"]["Values"])[0].as_str().unwrap().to_string();
        let strategy = seq(&p["Strategy"]["StaticValue"]["Values"]);
        if ty == "rds" || ty == "dynamodb" {
            let cfn = Cfn::new(&w, &[("SecurityAccountId", "111111111111"), ("RemediationStrategy", "alias-swap")]);
            assert_eq!(strings(&cfn.eval(&Value::Sequence(strategy.to_vec()))), ["in-place"], "{rid}: {ty} strategy");
            seen.insert(ty);
        }
    }
    assert_eq!(seen.len(), 2, "RDS and DynamoDB remediations found");
}

// ---------------------------------------------------------------------------------------
// (f) logs, alerts, dropped evaluations

#[test]
fn functions_log_to_explicit_log_groups_with_retention() {
    for (name, min_days) in [(WORKLOAD_TEMPLATE, 90u32), (SECURITY_TEMPLATE, 1827)] {
        let t = template(name);
        for (id, _) in function_binaries(&t) {
            let f = resource(&t, &id);
            let lg = ref_name(&f["Properties"]["LoggingConfig"]["LogGroup"])
                .unwrap_or_else(|| panic!("{name} {id}: LoggingConfig.LogGroup must !Ref a log group"));
            let g = resource(&t, lg);
            assert_eq!(g["Type"].as_str(), Some("AWS::Logs::LogGroup"), "{name} {id}: {lg}");
            let days_param = ref_name(&g["Properties"]["RetentionInDays"]).expect("RetentionInDays from a parameter");
            let days: u32 = parameter_default(&t, days_param).unwrap().parse().unwrap();
            assert!(days >= min_days, "{name} {lg}: default retention {days} < {min_days} days");
            let key = &g["Properties"]["KmsKeyId"];
            let (f_, inner) = intrinsic(key).unwrap_or_else(|| panic!("{name} {lg}: KmsKeyId must be optional (!If)"));
            assert_eq!(f_, "If", "{name} {lg}: KmsKeyId");
            let parts = seq(inner);
            assert!(ref_name(&parts[1]).is_some() && is_no_value(&parts[2]), "{name} {lg}: KmsKeyId from a parameter");
        }
    }
}

#[test]
fn alert_topic_denies_non_tls_and_takes_a_kms_key() {
    let w = template(WORKLOAD_TEMPLATE);
    let cfn = Cfn::new(
        &w,
        &[("SecurityAccountId", "111111111111"), ("AlertTopicKmsKeyArn", "arn:aws:kms:eu-west-1:1:key/x")],
    );
    let topics = cfn.resources_of_type("AWS::SNS::Topic");
    assert_eq!(topics.len(), 1);
    let (topic, t) = &topics[0];
    assert_eq!(t["Properties"]["KmsMasterKeyId"].as_str(), Some("arn:aws:kms:eu-west-1:1:key/x"), "topic KMS key");
    let policies = cfn.resources_of_type("AWS::SNS::TopicPolicy");
    let deny =
        policies.iter().flat_map(|(_, p)| seq(&p["Properties"]["PolicyDocument"]["Statement"]).to_vec()).find(|s| {
            s["Effect"].as_str() == Some("Deny")
                && s["Condition"]["Bool"]["aws:SecureTransport"].as_str() == Some("false")
                && s["Principal"].as_str() == Some("*")
                && strings(&s["Resource"]).contains(&format!("ref:{topic}"))
        });
    let deny = deny.expect("a Deny for aws:SecureTransport=false on the topic");
    assert!(actions_of(&deny).iter().any(|a| a == "sns:*" || a == "sns:Publish"), "deny covers publishing");
}

#[test]
fn dropped_evaluations_reach_a_queue_and_an_alarm() {
    let w = template(WORKLOAD_TEMPLATE);
    let cfn = Cfn::new(&w, &[("SecurityAccountId", "111111111111")]);
    let binaries = function_binaries(&w);
    let mut queues = BTreeSet::new();
    for id in binaries.keys() {
        let f = resource(&w, id);
        let dlq = function_property(&w, f, "DeadLetterQueue");
        let on_failure = &function_property(&w, f, "EventInvokeConfig")["DestinationConfig"]["OnFailure"];
        let target = if !dlq.is_null() {
            assert_eq!(dlq["Type"].as_str(), Some("SQS"), "{id}: DLQ type");
            get_att(&dlq["TargetArn"])
        } else {
            get_att(&on_failure["Destination"])
        };
        let (q, _) = target.unwrap_or_else(|| panic!("{id}: no DeadLetterQueue or OnFailure destination"));
        assert_eq!(resource(&w, &q)["Type"].as_str(), Some("AWS::SQS::Queue"), "{id}: {q}");
        let role = function_role(f);
        let can_send = cfn.role_statements(&role).iter().any(|s| {
            actions_of(s).iter().any(|a| a == "sqs:SendMessage")
                && strings(&s["Resource"]).contains(&format!("{q}.Arn"))
        });
        assert!(can_send, "{id}: role {role} cannot send to {q}");
        queues.insert(q);
    }
    for q in queues {
        let alarmed = cfn.resources_of_type("AWS::CloudWatch::Alarm").into_iter().any(|(_, a)| {
            let p = &a["Properties"];
            p["Namespace"].as_str() == Some("AWS/SQS")
                && p["MetricName"].as_str() == Some("ApproximateNumberOfMessagesVisible")
                && seq(&p["Dimensions"]).iter().any(|d| d["Value"].as_str() == Some(&format!("{q}.QueueName")))
                && strings(&p["AlarmActions"]).iter().any(|x| x.starts_with("ref:"))
        });
        assert!(alarmed, "no alarm with an action on the depth of {q}");
    }
}

// ---------------------------------------------------------------------------------------
// (g) reaching the HSM

#[test]
fn subnets_bring_the_hsm_security_group_and_the_endpoints() {
    let s = template(SECURITY_TEMPLATE);
    let vpc = [
        ("WorkloadAccountIds", "111111111111"),
        ("SubnetIds", "subnet-1,subnet-2"),
        ("VpcId", "vpc-1"),
        ("HsmSecurityGroupId", "sg-cluster"),
    ];
    let cfn = Cfn::new(&s, &vpc);
    let endpoints: BTreeSet<String> = cfn
        .resources_of_type("AWS::EC2::VPCEndpoint")
        .into_iter()
        .map(|(id, e)| {
            let p = &e["Properties"];
            assert_eq!(p["VpcEndpointType"].as_str(), Some("Interface"), "{id}");
            assert_eq!(strings(&p["SubnetIds"]), ["subnet-1", "subnet-2"], "{id}: subnets");
            assert_eq!(p["PrivateDnsEnabled"].as_bool(), Some(true), "{id}: private DNS");
            p["ServiceName"].as_str().unwrap().strip_prefix(&format!("com.amazonaws.{REGION}.")).unwrap().to_string()
        })
        .collect();
    assert_eq!(
        endpoints,
        ["config", "kms", "logs", "secretsmanager", "sts"].into_iter().map(String::from).collect(),
        "interface endpoints"
    );
    let function = cfn.eval(resource(&s, &function_for_binary(&s, ROTATION_BINARY)));
    let vc = &function["Properties"]["VpcConfig"];
    assert_eq!(strings(&vc["SubnetIds"]), ["subnet-1", "subnet-2"]);
    let groups = strings(&vc["SecurityGroupIds"]);
    assert_eq!(groups.len(), 1, "the stack's own group: {groups:?}");
    let group = groups[0].strip_prefix("ref:").unwrap().to_string();
    // The group's rules: the HSM ports to the cluster's group, HTTPS to the endpoints.
    let egress: Vec<Value> = cfn
        .resources_of_type("AWS::EC2::SecurityGroupEgress")
        .into_iter()
        .map(|(_, r)| r["Properties"].clone())
        .filter(|p| p["GroupId"].as_str() == Some(&format!("ref:{group}")))
        .collect();
    let to_hsm = egress
        .iter()
        .find(|p| p["DestinationSecurityGroupId"].as_str() == Some("sg-cluster"))
        .expect("egress to the CloudHSM cluster");
    assert_eq!(
        (scalar_string(&to_hsm["FromPort"]), scalar_string(&to_hsm["ToPort"])),
        (Some("2223".into()), Some("2225".into()))
    );
    assert_eq!(to_hsm["IpProtocol"].as_str(), Some("tcp"));
    let ingress = cfn
        .resources_of_type("AWS::EC2::SecurityGroupIngress")
        .into_iter()
        .find(|(_, r)| r["Properties"]["GroupId"].as_str() == Some("sg-cluster"))
        .expect("the cluster admits the function");
    assert_eq!(ingress.1["Properties"]["SourceSecurityGroupId"].as_str(), Some(format!("ref:{group}").as_str()));
    assert!(egress.iter().all(|p| scalar_string(&p["FromPort"]) != Some("-1".into())), "no all-ports egress");
    let own = cfn.eval(resource(&s, &group));
    for rule in seq(&own["Properties"]["SecurityGroupEgress"]) {
        assert_eq!(
            rule["CidrIp"].as_str(),
            Some("255.255.255.255/32"),
            "{group}: inline egress only replaces allow-all"
        );
    }

    // Without subnets: nothing of it.
    let cfn = Cfn::new(&s, &[("WorkloadAccountIds", "111111111111"), ("EnableRotation", "false")]);
    for ty in ["AWS::EC2::VPCEndpoint", "AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupEgress"] {
        assert!(cfn.resources_of_type(ty).is_empty(), "{ty} without SubnetIds");
    }
}

/// The Rules section's assertions that fail for these parameters (their descriptions).
fn failed_rules(t: &Value, overrides: &[(&str, &str)]) -> Vec<String> {
    let cfn = Cfn::new(t, overrides);
    let mut failed = Vec::new();
    for (name, rule) in t["Rules"].as_mapping().into_iter().flatten() {
        let applies = rule["RuleCondition"].is_null() || cfn.truth(&rule["RuleCondition"]);
        if !applies {
            continue;
        }
        for a in seq(&rule["Assertions"]) {
            if !cfn.truth(&a["Assert"]) {
                failed.push(format!("{}: {}", name.as_str().unwrap(), a["AssertDescription"].as_str().unwrap_or("")));
            }
        }
    }
    failed
}

#[test]
fn rotation_without_layer_or_subnets_fails_fast() {
    let s = template(SECURITY_TEMPLATE);
    let complete = [
        ("WorkloadAccountIds", "111111111111"),
        ("HsmLayerArn", "arn:aws:lambda:eu-west-1:111111111111:layer:cloudhsm-pkcs11:3"),
        ("SubnetIds", "subnet-1"),
        ("VpcId", "vpc-1"),
        ("HsmSecurityGroupId", "sg-cluster"),
        ("PinSecretArn", "arn:aws:secretsmanager:eu-west-1:111111111111:secret:hsm-pin-AbCdEf"),
    ];
    assert_eq!(failed_rules(&s, &complete), Vec::<String>::new(), "complete parameters deploy");
    for (missing, what) in [
        ("HsmLayerArn", "HsmLayerArn"),
        ("SubnetIds", "SubnetIds"),
        ("PinSecretArn", "PinSecretArn"),
        ("VpcId", "VpcId"),
        ("HsmSecurityGroupId", "HsmSecurityGroupId"),
    ] {
        let params: Vec<(&str, &str)> =
            complete.iter().map(|&(k, v)| if k == missing { (k, "") } else { (k, v) }).collect();
        let failed = failed_rules(&s, &params);
        assert!(failed.iter().any(|f| f.contains(what)), "without {missing} the stack must refuse: {failed:?}");
    }
    // On-premises HSM: a CIDR instead of the cluster's group.
    let onprem: Vec<(&str, &str)> = complete
        .iter()
        .map(|&(k, v)| if k == "HsmSecurityGroupId" { ("HsmCidr", "10.20.0.0/24") } else { (k, v) })
        .collect();
    assert!(failed_rules(&s, &onprem).is_empty(), "HsmCidr is enough");
    // Evaluation only: nothing required.
    assert!(failed_rules(&s, &[("WorkloadAccountIds", "111111111111"), ("EnableRotation", "false")]).is_empty());
    assert!(!failed_rules(&s, &[("WorkloadAccountIds", "111111111111")]).is_empty(), "defaults alone must refuse");
}

#[test]
fn hsm_layer_script_packages_a_pkcs11_module() {
    let module = Path::new("/usr/lib/softhsm/libsofthsm2.so");
    assert!(module.exists(), "SoftHSM2 missing: run scripts/setup");
    let dir = std::env::temp_dir().join(format!("krg-layer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("pkg/opt/vendor/lib")).unwrap();
    std::fs::copy(module, dir.join("pkg/opt/vendor/lib/libvendor_pkcs11.so")).unwrap();
    let tgz = dir.join("vendor-pkcs11.tar.gz");
    let st = Command::new("tar").args(["czf"]).arg(&tgz).args(["-C"]).arg(dir.join("pkg")).arg("opt").status().unwrap();
    assert!(st.success());
    let host = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x86_64",
    };
    let other = if host == "arm64" { "x86_64" } else { "arm64" };
    let run = |arch: &str, out: &Path| {
        Command::new(root().join("scripts/build-hsm-layer"))
            .arg(&tgz)
            .args(["--arch", arch, "--out"])
            .arg(out)
            .output()
            .unwrap()
    };
    let zip = dir.join("layer.zip");
    let ok = run(host, &zip);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "build-hsm-layer failed: {stdout}{}", String::from_utf8_lossy(&ok.stderr));
    let listing = Command::new(python())
        .args(["-c", "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))"])
        .arg(&zip)
        .output()
        .unwrap();
    let files = String::from_utf8_lossy(&listing.stdout).to_string();
    assert!(files.lines().any(|l| l == "vendor/lib/libvendor_pkcs11.so"), "layer paths are /opt-relative: {files}");
    assert!(stdout.contains("/opt/vendor/lib/libvendor_pkcs11.so"), "prints the Pkcs11ModulePath: {stdout}");
    // A library for the wrong architecture is refused (the functions run on arm64).
    let bad = run(other, &dir.join("bad.zip"));
    assert!(!bad.status.success(), "a {host} library must be refused for --arch {other}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("architecture"), "says why");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// (h) checks in the test command

#[test]
fn checkov_passes_with_every_skip_explained_in_one_place() {
    let config = std::fs::read_to_string(root().join(".checkov.yaml")).expect(".checkov.yaml");
    let parsed: Value = serde_yaml::from_str(&config).unwrap();
    let skips: Vec<String> = strings(&parsed["skip-check"]);
    assert!(!skips.is_empty());
    for id in &skips {
        let line = config.lines().find(|l| l.contains(&format!("- {id}"))).unwrap();
        let reason = line.split_once('#').map(|(_, r)| r.trim()).unwrap_or("");
        assert!(reason.len() >= 40, "skip {id} needs its reason on its line: {line:?}");
    }
    for name in [WORKLOAD_TEMPLATE, SECURITY_TEMPLATE] {
        let text = std::fs::read_to_string(root().join(name)).unwrap();
        assert!(!text.contains("checkov:skip"), "{name}: skips belong in .checkov.yaml");
        assert!(strings(&parsed["file"]).contains(&name.to_string()), ".checkov.yaml scans {name}");
    }
    let checkov = root().join(".tools/checkov-venv/bin/checkov");
    assert!(checkov.exists(), "checkov not found at {}: run scripts/setup", checkov.display());
    let out = Command::new(&checkov).args(["--config-file", ".checkov.yaml"]).current_dir(root()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "checkov failed ({}):\n{text}", out.status);
    assert!(text.contains("Failed checks: 0"), "checkov: {text}");
}

#[test]
fn advisories_ignore_only_the_assessed_rsa_timing_advisory() {
    let deny: toml::Table = std::fs::read_to_string(root().join("deny.toml")).unwrap().parse().unwrap();
    let ignore = deny["advisories"]["ignore"].as_array().expect("[advisories] ignore");
    assert_eq!(ignore.len(), 1, "one assessed advisory");
    let entry = ignore[0].as_table().expect("{ id, reason }");
    assert_eq!(entry["id"].as_str(), Some("RUSTSEC-2023-0071"));
    let reason = entry["reason"].as_str().unwrap_or("");
    assert!(reason.contains("public-key"), "the reason says why: {reason}");
    let test = std::fs::read_to_string(root().join("scripts/test")).unwrap();
    assert!(test.contains("scripts/check-advisories"), "scripts/test runs the advisory check");
    let check = std::fs::read_to_string(root().join("scripts/check-advisories")).unwrap();
    assert!(check.contains("--offline check advisories"), "offline against the snapshot");
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
