//! The functions' binaries and rules/ ↔ template.yaml.

use crate::cfn::{Cfn, ORG, REGION};
use crate::support::*;

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
        // Wherever the template's Rules let a stack deploy, exactly one of the two exists.
        for (variant, region) in [("true", REGION), ("false", REGION), ("true", "us-east-1"), ("false", "us-east-1")] {
            let params =
                [("SecurityAccountId", "111111111111"), ("DeployToOrganization", variant), ("OrganizationId", ORG)];
            if !crate::network::failed_rules_in(&t, &params, region).is_empty() {
                continue;
            }
            let cfn = Cfn::new(&t, &params).in_region(region);
            assert!(
                cfn.condition(account_cond) != cfn.condition(org_cond),
                "{ctx}: DeployToOrganization={variant} in {region}: exactly one of {id} and {oid}"
            );
        }
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
        // With the account rule only, and with it wherever CloudFormation has the type.
        for (variant, region) in [("false", REGION), ("true", REGION), ("false", "mx-central-1")] {
            let params =
                [("SecurityAccountId", "111111111111"), ("DeployToOrganization", variant), ("OrganizationId", ORG)];
            let cfn = Cfn::new(&t, &params).in_region(region);
            assert!(!cfn.active(x) || cfn.condition(account_cond), "{ctx}: {rid} without the account rule in {region}");
        }
        assert!(Cfn::new(&t, &[("SecurityAccountId", "111111111111")]).active(x), "{ctx}: {rid} with the account rule");
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
