//! The Automation document ↔ the rotation handler's request contract.

use crate::cfn::*;
use crate::support::*;

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
