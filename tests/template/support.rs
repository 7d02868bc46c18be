//! Shared helpers: loading the templates and rules/, reading YAML and CloudFormation
//! intrinsics, and the IAM statement model.

pub(crate) use std::collections::{BTreeMap, BTreeSet};
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::Command;

pub(crate) use serde_yaml::{Mapping, Value};

pub(crate) fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) const WORKLOAD_TEMPLATE: &str = "template.yaml";
pub(crate) const SECURITY_TEMPLATE: &str = "security-account.yaml";

pub(crate) const ROTATION_BINARY: &str = "rotation-remediation";
pub(crate) const MESSAGE_TYPES: [&str; 3] =
    ["ConfigurationItemChangeNotification", "OversizedConfigurationItemChangeNotification", "ScheduledNotification"];

/// KMS actions that no role of this project may hold.
pub(crate) const FORBIDDEN_KMS: [&str; 5] = [
    "kms:ScheduleKeyDeletion",
    "kms:DeleteImportedKeyMaterial",
    "kms:DisableKey",
    "kms:DeleteAlias",
    "kms:PutKeyPolicy",
];
/// KMS actions without resource-level permissions: IAM only accepts `Resource: "*"` for them.
/// Allowed only for the rotation role's alias-swap strategy, and CreateKey only with conditions.
pub(crate) const KMS_WITHOUT_RESOURCE_LEVEL: [&str; 2] = ["kms:CreateKey", "kms:ListAliases"];
/// The longest region name, for the deterministic role names.
pub(crate) const LONGEST_REGION: &str = "ap-southeast-4";

// ---------------------------------------------------------------------------------------
// loading

pub(crate) fn load_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

pub(crate) fn template(name: &str) -> Value {
    load_yaml(&root().join(name))
}

pub(crate) struct Rule {
    pub(crate) file: PathBuf,
    pub(crate) name: String,
    pub(crate) handler: String,
    pub(crate) resource_types: Vec<String>,
    pub(crate) triggers: Vec<String>,
    pub(crate) default_frequency: String,
    /// (name, type, default)
    pub(crate) parameters: Vec<(String, String, String)>,
}

pub(crate) fn rules() -> Vec<Rule> {
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

pub(crate) fn str_of(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Strings, numbers and booleans as the string CloudFormation would pass on.
pub(crate) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(|s| s.as_slice()).unwrap_or(&[])
}

/// `!Name x` or `{"Fn::Name": x}` / `{"Ref": x}` → ("Name", x).
pub(crate) fn intrinsic(v: &Value) -> Option<(String, &Value)> {
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

pub(crate) fn ref_name(v: &Value) -> Option<&str> {
    match intrinsic(v) {
        Some((n, inner)) if n == "Ref" => inner.as_str(),
        _ => None,
    }
}

/// `!GetAtt X.Arn` → ("X", "Arn").
pub(crate) fn get_att(v: &Value) -> Option<(String, String)> {
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
pub(crate) fn sub_string(v: &Value) -> Option<&str> {
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

pub(crate) fn is_no_value(v: &Value) -> bool {
    ref_name(v) == Some("AWS::NoValue")
}

/// Every value `v` may take: both branches of `!If` (recursively), nothing for AWS::NoValue.
pub(crate) fn branches(v: &Value) -> Vec<&Value> {
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
pub(crate) fn flat_list(v: &Value) -> Vec<&Value> {
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

pub(crate) fn resources(t: &Value) -> &Mapping {
    t["Resources"].as_mapping().expect("Resources mapping")
}

pub(crate) fn resources_of_type<'a>(t: &'a Value, ty: &str) -> Vec<(&'a str, &'a Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .map(|(k, r)| (k.as_str().expect("logical id"), r))
        .collect()
}

pub(crate) fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    let r = &t["Resources"][id];
    assert!(!r.is_null(), "resource {id} missing");
    r
}

pub(crate) fn parameter_default(t: &Value, name: &str) -> Option<String> {
    scalar_string(&t["Parameters"][name]["Default"])
}

/// A function property, falling back to the template's `Globals.Function`.
pub(crate) fn function_property<'a>(t: &'a Value, f: &'a Value, key: &str) -> &'a Value {
    let own = &f["Properties"][key];
    if !own.is_null() {
        own
    } else {
        &t["Globals"]["Function"][key]
    }
}

/// `function logical id → binary` of every SAM function.
pub(crate) fn function_binaries(t: &Value) -> BTreeMap<String, String> {
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

pub(crate) fn function_for_binary(t: &Value, binary: &str) -> String {
    function_binaries(t)
        .into_iter()
        .find(|(_, b)| b == binary)
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("no function builds binary {binary}"))
}

/// Logical id of the IAM role a function runs as (`Role: !GetAtt X.Arn`).
pub(crate) fn function_role(f: &Value) -> String {
    let (role, attr) = get_att(&f["Properties"]["Role"]).expect("Role: !GetAtt <role>.Arn");
    assert_eq!(attr, "Arn");
    role
}

/// Minimal glob (`*` only), as IAM's ArnLike.
pub(crate) fn glob_match(pattern: &str, s: &str) -> bool {
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
pub(crate) struct Statement {
    pub(crate) role: String,
    pub(crate) policy: String,
    pub(crate) actions: Vec<String>,
    /// Plain strings as written; `!Sub` templates as their template string.
    pub(crate) resources: Vec<String>,
    pub(crate) has_condition: bool,
}

/// A policy string. (serde_yaml 0.9's `as_str` looks through tags, so intrinsics go first.)
pub(crate) fn string_or_sub(v: &Value) -> String {
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
pub(crate) fn statements(t: &Value) -> Vec<Statement> {
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

pub(crate) fn is_kms_read(action: &str) -> bool {
    let op = action.strip_prefix("kms:").unwrap_or(action);
    op.starts_with("Describe") || op.starts_with("Get") || op.starts_with("List")
}

pub(crate) fn python() -> PathBuf {
    let py = root().join(".tools/venv/bin/python");
    assert!(py.exists(), "{} missing: run scripts/setup", py.display());
    py
}

#[test]
fn glob_matcher_works() {
    assert!(glob_match("a*-rds", "abc-rds"));
    assert!(glob_match("arn:*:role/x-*-s3", "arn:aws:role/x-eu-west-1-s3"));
    assert!(!glob_match("arn:*:role/x-*-s3", "arn:aws:role/x-eu-west-1-rds"));
    assert!(!glob_match("a*a", "a"));
    assert!(glob_match("exact", "exact"));
}
