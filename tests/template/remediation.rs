//! The Automation documents ↔ the rotation handler's request contract: the operator's
//! (security account, the full contract) and the workload's (template.yaml: asks on the
//! request bus, only "judge this key and rotate it if due").

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

/// The fields a workload account's request may carry (template.yaml's document): "judge
/// this key and rotate it if due", nothing the security account decides.
const WORKLOAD_REQUEST_FIELDS: [&str; 4] = ["keyId", "resourceId", "resourceType", "ruleParameters"];

/// The longest each Automation action may run (Systems Manager Automation actions
/// reference): aws:invokeLambdaFunction 300 s, aws:executeAwsApi 25 s, aws:executeScript 600 s.
fn action_limit(action: &str) -> Option<u64> {
    match action {
        "aws:invokeLambdaFunction" => Some(300),
        "aws:executeAwsApi" => Some(25),
        "aws:executeScript" => Some(600),
        _ => None,
    }
}

/// The one Automation document of a template, checked for its shape: schema, assumeRole,
/// references, and every step within its action's time limit. Returns (id, content).
fn document<'t>(t: &'t Value, name: &str) -> (&'t str, &'t Value) {
    let docs = resources_of_type(t, "AWS::SSM::Document");
    assert_eq!(docs.len(), 1, "{name}: one SSM document");
    let (doc_id, doc) = docs[0];
    let p = &doc["Properties"];
    assert_eq!(p["DocumentType"].as_str(), Some("Automation"), "{doc_id}: DocumentType");
    let c = &p["Content"];
    assert_eq!(scalar_string(&c["schemaVersion"]).as_deref(), Some("0.3"), "{doc_id}: schemaVersion");
    assert_eq!(mustache_refs(c["assumeRole"].as_str().unwrap_or("")), ["AutomationAssumeRole"], "{doc_id}: assumeRole");
    let pnames: BTreeSet<&str> =
        c["parameters"].as_mapping().expect("parameters").keys().filter_map(|k| k.as_str()).collect();
    let steps = seq(&c["mainSteps"]);
    let outputs: BTreeSet<String> = steps
        .iter()
        .flat_map(|st| {
            let name = st["name"].as_str().unwrap_or("").to_string();
            seq(&st["outputs"])
                .iter()
                .filter_map(move |o| Some(format!("{name}.{}", o["Name"].as_str()?)))
                .collect::<Vec<_>>()
        })
        .collect();
    for st in steps {
        let name = st["name"].as_str().expect("step name");
        let action = st["action"].as_str().expect("action");
        let limit = action_limit(action).unwrap_or_else(|| panic!("{doc_id}/{name}: action {action} not modelled"));
        let timeout: u64 = scalar_string(&st["timeoutSeconds"])
            .unwrap_or_else(|| panic!("{doc_id}/{name}: timeoutSeconds missing"))
            .parse()
            .unwrap();
        assert!(timeout <= limit, "{doc_id}/{name}: timeoutSeconds {timeout} > {action}'s {limit} s");
        let text = serde_yaml::to_string(&st["inputs"]).unwrap();
        for r in mustache_refs(&text) {
            assert!(
                pnames.contains(r.as_str()) || outputs.contains(&r),
                "{doc_id}/{name}: unknown reference {{{{{r}}}}}"
            );
        }
    }
    (doc_id, c)
}

fn step<'c>(c: &'c Value, name: &str) -> &'c Value {
    seq(&c["mainSteps"]).iter().find(|st| st["name"].as_str() == Some(name)).unwrap_or_else(|| panic!("step {name}"))
}

/// The operator's document (security account only): the full request contract, one
/// invocation of the function, within aws:invokeLambdaFunction's 300 s and above the
/// function's own timeout, so the step always sees the function's answer.
#[test]
fn operator_document_sends_the_remediation_request_contract() {
    let s = template(SECURITY_TEMPLATE);
    let (doc_id, c) = document(&s, SECURITY_TEMPLATE);
    let params = c["parameters"].as_mapping().unwrap();
    let pnames: BTreeSet<&str> = params.keys().filter_map(|k| k.as_str()).collect();
    for required in ["Action", "KeyId", "ResourceId", "ResourceType", "Strategy", "RuleParameters", "KeyMaterialId"] {
        assert!(pnames.contains(required), "{doc_id}: parameter {required} missing");
        assert_eq!(params[required]["type"].as_str(), Some("String"), "{doc_id}: {required} is a String");
    }
    assert!(params["KeyId"]["default"].is_null(), "{doc_id}: an operator names the key");
    let values =
        |n: &str| -> Vec<String> { seq(&params[n]["allowedValues"]).iter().filter_map(scalar_string).collect() };
    assert_eq!(values("Strategy"), ["in-place", "alias-swap"], "{doc_id}: Strategy allowedValues");
    assert_eq!(params["Strategy"]["default"].as_str(), Some("in-place"), "{doc_id}: Strategy default");
    assert_eq!(values("Action"), ["rotate", "reimport"], "{doc_id}: Action allowedValues");
    assert!(!pnames.contains("Force"), "{doc_id}: forcing is the CLI's, never the function's");
    assert_eq!(
        get_att(&params["AutomationAssumeRole"]["default"]),
        Some(("AutomationRole".into(), "Arn".into())),
        "{doc_id}: runs as the security account's operator role"
    );

    let rotation_fn = function_for_binary(&s, ROTATION_BINARY);
    let invoke: Vec<&Value> =
        seq(&c["mainSteps"]).iter().filter(|st| st["action"].as_str() == Some("aws:invokeLambdaFunction")).collect();
    assert_eq!(invoke.len(), 1, "{doc_id}: one aws:invokeLambdaFunction step");
    let st = invoke[0];
    assert_eq!(get_att(&st["inputs"]["FunctionName"]), Some((rotation_fn.clone(), "Arn".into())));
    let payload = st["inputs"]["Payload"].as_str().expect("Payload");
    let refs = mustache_refs(payload);
    assert_eq!(payload.trim(), format!("{{{{ {} }}}}", refs[0]), "{doc_id}: Payload is only the built request");
    let step_timeout: u64 = scalar_string(&st["timeoutSeconds"]).unwrap().parse().unwrap();
    let fn_timeout: u64 =
        scalar_string(function_property(&s, resource(&s, &rotation_fn), "Timeout")).unwrap().parse().unwrap();
    assert!(fn_timeout < step_timeout, "function Timeout {fn_timeout} s must end before the step's {step_timeout} s");

    // Run the script: every request it writes has only contract fields, and together
    // they use all of them.
    let build = step(c, "BuildRotationRequest");
    let given: BTreeSet<&str> =
        build["inputs"]["InputPayload"].as_mapping().expect("InputPayload").keys().filter_map(|k| k.as_str()).collect();
    let want: BTreeSet<&str> = pnames.iter().copied().filter(|n| *n != "AutomationAssumeRole").collect();
    assert_eq!(given, want, "{doc_id}: the script sees every request parameter");
    let script = build["inputs"]["Script"].as_str().expect("Script");
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
        let out = run_document_script(script, events.clone()).unwrap_or_else(|e| panic!("{events}: {e}"));
        let req: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(out["request"].as_str().expect("request is a JSON string")).expect("request JSON");
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
    }
    assert_eq!(used.iter().map(String::as_str).collect::<BTreeSet<_>>(), contract, "every contract field is sent");
    for (events, why) in [
        (with(serde_json::json!({"ResourceType": "rds", "Strategy": "alias-swap"})), "alias-swap on RDS"),
        (with(serde_json::json!({"ResourceType": "dynamodb", "Strategy": "alias-swap"})), "alias-swap on DynamoDB"),
        (with(serde_json::json!({"KeyMaterialId": "a1b2c3"})), "keyMaterialId without reimport"),
        (with(serde_json::json!({"RuleParameters": "[1]"})), "rule parameters that are not an object"),
        (with(serde_json::json!({"KeyId": ""})), "no key"),
    ] {
        assert!(run_document_script(script, events.clone()).is_err(), "{why} must be refused: {events}");
    }
}

/// Runs the workload document's send step with a stand-in boto3 whose events client
/// records its calls and answers `answer`.
fn run_send_script(
    script: &str,
    events: serde_json::Value,
    answer: serde_json::Value,
) -> (Result<serde_json::Value, String>, serde_json::Value) {
    let stub = format!(
        "import sys, types, json as _json\n_calls = []\nclass _Events:\n    def put_events(self, **kw):\n        _calls.append(kw)\n        return _json.loads({answer:?})\n_b = types.ModuleType('boto3')\n_b.client = lambda name: _Events() if name == 'events' else (_ for _ in ()).throw(ValueError(name))\nsys.modules['boto3'] = _b\n",
        answer = answer.to_string()
    );
    let runner = format!(
        "{stub}\n{script}\n\nimport json as _j, sys as _s\ntry:\n    _r = {{'ok': handler(_j.loads(_s.argv[1]), None)}}\nexcept Exception as e:\n    _r = {{'error': str(e)}}\n_r['calls'] = _calls\nprint(_j.dumps(_r))\n"
    );
    let out = Command::new(python()).args(["-c", &runner, &events.to_string()]).output().expect("running python");
    assert!(out.status.success(), "script crashed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("runner output");
    let result = match v.get("error") {
        Some(e) => Err(e.as_str().unwrap_or_default().to_string()),
        None => Ok(v["ok"].clone()),
    };
    (result, v["calls"].clone())
}

/// The workload account's own document: it builds a request with only the fields a
/// workload may send and puts it on the security account's bus, failing when EventBridge
/// does not accept it.
#[test]
fn workload_document_asks_on_the_bus_and_nothing_more() {
    let w = template(WORKLOAD_TEMPLATE);
    let (doc_id, c) = document(&w, WORKLOAD_TEMPLATE);
    let params = c["parameters"].as_mapping().unwrap();
    let pnames: BTreeSet<&str> = params.keys().filter_map(|k| k.as_str()).collect();
    assert_eq!(
        pnames,
        ["AutomationAssumeRole", "KeyId", "ResourceId", "ResourceType", "RuleParameters"].into_iter().collect(),
        "{doc_id}: no Action, Strategy, KeyMaterialId or force: those are the security account's"
    );
    for st in seq(&c["mainSteps"]) {
        assert_ne!(st["action"].as_str(), Some("aws:invokeLambdaFunction"), "{doc_id}: asks, never invokes");
    }
    let build = step(c, "BuildRotationRequest")["inputs"]["Script"].as_str().unwrap();
    let arn = "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let rule_parameters = r#"{"maxKeyAgeDays": "365"}"#;
    let mut used = BTreeSet::new();
    for events in [
        serde_json::json!({"KeyId": arn, "ResourceId": "bucket-a", "ResourceType": "s3", "RuleParameters": rule_parameters}),
        serde_json::json!({"KeyId": arn, "ResourceId": "", "ResourceType": "", "RuleParameters": ""}),
    ] {
        let out = run_document_script(build, events.clone()).unwrap_or_else(|e| panic!("{events}: {e}"));
        let req: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(out["request"].as_str().unwrap()).unwrap();
        for k in req.keys() {
            assert!(WORKLOAD_REQUEST_FIELDS.contains(&k.as_str()), "{events}: a workload request carries {k}");
            used.insert(k.clone());
        }
        assert_eq!(req["keyId"], arn);
    }
    assert_eq!(used.len(), WORKLOAD_REQUEST_FIELDS.len(), "{used:?}");
    let bad = serde_json::json!({"KeyId": "", "ResourceId": "", "ResourceType": "", "RuleParameters": ""});
    assert!(run_document_script(build, bad).is_err(), "neither key nor resource");

    // The send step, with the bus of the security account (template parameters).
    let send = step(c, "SendRotationRequest");
    assert_eq!(send["action"].as_str(), Some("aws:executeScript"));
    let cfn = Cfn::new(&w, &[("SecurityAccountId", "111111111111")]);
    let inputs = cfn.eval(&send["inputs"]["InputPayload"]);
    let bus = format!("arn:aws:events:{REGION}:111111111111:event-bus/kms-rotation-guard-requests");
    assert_eq!(inputs["Bus"].as_str(), Some(bus.as_str()), "{doc_id}: the security account's bus");
    assert_eq!(inputs["Request"].as_str(), Some("{{ BuildRotationRequest.Request }}"));
    let script = send["inputs"]["Script"].as_str().unwrap();
    let request = r#"{"keyId": "k", "resourceId": "b"}"#;
    let events = serde_json::json!({"Request": request, "Bus": bus});
    let ok = serde_json::json!({"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]});
    let (result, calls) = run_send_script(script, events.clone(), ok);
    assert_eq!(result.unwrap()["eventId"], "e-1");
    let entries = &calls[0]["Entries"];
    assert_eq!(calls.as_array().unwrap().len(), 1, "one PutEvents");
    assert_eq!(entries.as_array().unwrap().len(), 1, "one entry");
    assert_eq!(entries[0]["Source"], "kms-rotation-guard.workload");
    assert_eq!(entries[0]["DetailType"], "Rotation Requested");
    assert_eq!(entries[0]["Detail"], request, "the built request, as the event's detail");
    assert_eq!(entries[0]["EventBusName"], bus.as_str());
    let refused = serde_json::json!({"FailedEntryCount": 1, "Entries": [{"ErrorCode": "AccessDeniedException", "ErrorMessage": "no"}]});
    let (result, _) = run_send_script(script, events, refused);
    assert!(result.unwrap_err().contains("AccessDeniedException"), "a refused request fails the step");

    // The remediations use this document, pass only its parameters, and every required one.
    let rules = rules();
    for (rid, x) in resources_of_type(&w, "AWS::Config::RemediationConfiguration") {
        assert_eq!(ref_name(&x["Properties"]["TargetId"]), Some(doc_id), "{rid}: this account's own document");
        let xp = &x["Properties"]["Parameters"];
        let given: BTreeSet<&str> = xp.as_mapping().unwrap().keys().filter_map(|k| k.as_str()).collect();
        assert_eq!(
            given,
            ["AutomationAssumeRole", "ResourceId", "ResourceType", "RuleParameters"].into_iter().collect(),
            "{rid}"
        );
        for (k, v) in params {
            if v["default"].is_null() {
                assert!(given.contains(k.as_str().unwrap()), "{rid}: required document parameter {k:?} not given");
            }
        }
        let ty = seq(&xp["ResourceType"]["StaticValue"]["Values"])[0].as_str().unwrap().to_string();
        let allowed: Vec<String> =
            seq(&params["ResourceType"]["allowedValues"]).iter().filter_map(scalar_string).collect();
        assert!(allowed.contains(&ty), "{rid}: ResourceType {ty}");
        // RuleParameters = the rule's InputParameters as JSON, with the same defaults.
        let rule_id = ref_name(&x["Properties"]["ConfigRuleName"]).expect("ConfigRuleName: !Ref");
        let rule_name = resource(&w, rule_id)["Properties"]["ConfigRuleName"].as_str().unwrap();
        let rule = rules.iter().find(|r| r.name == rule_name).expect("rule file");
        let rp = seq(&xp["RuleParameters"]["StaticValue"]["Values"]);
        assert_eq!(rp.len(), 1, "{rid}: RuleParameters is one JSON string");
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
