//! Reaching the HSM: subnets, security groups, endpoints, the PKCS#11 layer.

use crate::cfn::*;
use crate::support::*;

// ---------------------------------------------------------------------------------------
// (g) reaching the HSM

#[test]
fn subnets_bring_the_hsm_security_group_and_the_endpoints() {
    let s = template(SECURITY_TEMPLATE);
    let vpc = [("SubnetIds", "subnet-1,subnet-2"), ("VpcId", "vpc-1"), ("HsmSecurityGroupId", "sg-cluster")];
    let cfn = Cfn::security(&s, &vpc);
    let endpoints: BTreeSet<String> = cfn
        .resources_of_type("AWS::EC2::VPCEndpoint")
        .into_iter()
        .map(|(id, e)| {
            let p = &e["Properties"];
            assert_eq!(p["VpcEndpointType"].as_str(), Some("Interface"), "{id}");
            assert_eq!(strings(&p["SubnetIds"]), ["subnet-1", "subnet-2"], "{id}: subnets");
            p["ServiceName"].as_str().unwrap().strip_prefix(&format!("com.amazonaws.{REGION}.")).unwrap().to_string()
        })
        .collect();
    // Exactly the services the function calls (no STS, no Logs: Lambda's logs do not pass
    // through the VPC, and the function assumes no role).
    assert_eq!(
        endpoints,
        ["config", "kms", "secretsmanager"].into_iter().map(String::from).collect(),
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
    let cfn = Cfn::security(&s, &[("EnableRotation", "false")]);
    for ty in ["AWS::EC2::VPCEndpoint", "AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupEgress"] {
        assert!(cfn.resources_of_type(ty).is_empty(), "{ty} without SubnetIds");
    }
}

/// Issue 20: each endpoint admits only the rotation role on this account's resources, and
/// private DNS, which would take the service's public name from every workload of a shared
/// VPC, is opt-in; without it the function is pointed at the endpoints' own names.
#[test]
fn endpoints_admit_only_the_rotation_role_and_private_dns_is_opt_in() {
    let s = template(SECURITY_TEMPLATE);
    let vpc = [("SubnetIds", "subnet-1"), ("VpcId", "vpc-1"), ("HsmSecurityGroupId", "sg-cluster")];
    let variable = |service: &str| match service {
        "kms" => "AWS_ENDPOINT_URL_KMS",
        "secretsmanager" => "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "config" => "AWS_ENDPOINT_URL_CONFIG_SERVICE",
        other => panic!("no endpoint variable for {other}"),
    };
    for private in ["false", "true"] {
        let mut o = vpc.to_vec();
        o.push(("EndpointPrivateDns", private));
        let cfn = Cfn::security(&s, &o);
        let f = cfn.eval(resource(&s, &function_for_binary(&s, ROTATION_BINARY)));
        let env = &f["Properties"]["Environment"]["Variables"];
        let endpoints = cfn.resources_of_type("AWS::EC2::VPCEndpoint");
        assert_eq!(endpoints.len(), 3);
        for (id, e) in endpoints {
            let p = &e["Properties"];
            let service = p["ServiceName"].as_str().unwrap().rsplit('.').next().unwrap().to_string();
            assert_eq!(p["PrivateDnsEnabled"].as_bool(), Some(private == "true"), "{id}: EndpointPrivateDns={private}");
            let url = env[variable(&service)].as_str();
            if private == "true" {
                assert_eq!(url, None, "{id}: private DNS answers for the public name");
            } else {
                let want = format!("https://vpce-{}.{REGION}.vpce.amazonaws.com", id.to_ascii_lowercase());
                assert_eq!(url, Some(want.as_str()), "{id}: the function uses the endpoint's own name");
            }
            let sts = seq(&p["PolicyDocument"]["Statement"]);
            assert!(!sts.is_empty(), "{id}: an endpoint policy");
            for st in sts {
                assert_eq!(st["Effect"].as_str(), Some("Allow"), "{id}");
                assert_eq!(
                    strings(&st["Condition"]["ArnEquals"]["aws:PrincipalArn"]),
                    [format!("{ROTATION_ROLE}.Arn")],
                    "{id}: the rotation role only"
                );
                assert_eq!(
                    strings(&st["Condition"]["StringEquals"]["aws:ResourceAccount"]),
                    [ACCOUNT],
                    "{id}: this account's resources only"
                );
                assert!(
                    actions_of(st).iter().all(|a| a.starts_with(&format!("{service}:"))),
                    "{id}: actions of its own service: {st:?}"
                );
            }
        }
    }
    assert_eq!(parameter_default(&s, "EndpointPrivateDns").as_deref(), Some("false"), "opt-in");
}

/// Issue 20: the PKCS#11 library runs next to the PIN. Its layer comes from this account
/// unless another account is named, and signed code can be enforced.
#[test]
fn the_hsm_layer_is_this_accounts_and_code_signing_is_enforced_when_asked() {
    let s = template(SECURITY_TEMPLATE);
    let layer = |o: &[(&str, &str)]| {
        let mut all = vec![("HsmLayerName", "cloudhsm-pkcs11"), ("HsmLayerVersion", "3")];
        all.extend_from_slice(o);
        let cfn = Cfn::security(&s, &all);
        let f = cfn.eval(resource(&s, &function_for_binary(&s, ROTATION_BINARY)));
        (strings(&f["Properties"]["Layers"]), f["Properties"]["CodeSigningConfigArn"].clone(), cfn)
    };
    let (own, signing, cfn) = layer(&[]);
    assert_eq!(own, [format!("arn:aws:lambda:{REGION}:{ACCOUNT}:layer:cloudhsm-pkcs11:3")], "this account's layer");
    assert!(signing.is_null(), "no signing profile, no CodeSigningConfig");
    assert!(cfn.resources_of_type("AWS::Lambda::CodeSigningConfig").is_empty());
    let (other, _, _) = layer(&[("HsmLayerAccountId", "123456789012")]);
    assert_eq!(other, [format!("arn:aws:lambda:{REGION}:123456789012:layer:cloudhsm-pkcs11:3")], "named account");
    let profile = "arn:aws:signer:eu-west-1:999999999999:/signing-profiles/krg/AbCdEf1234";
    let (_, signing, cfn) = layer(&[("SigningProfileVersionArn", profile)]);
    let configs = cfn.resources_of_type("AWS::Lambda::CodeSigningConfig");
    assert_eq!(configs.len(), 1);
    let (id, c) = &configs[0];
    assert_eq!(signing.as_str(), Some(format!("ref:{id}").as_str()), "the function uses it");
    assert_eq!(c["Properties"]["CodeSigningPolicies"]["UntrustedArtifactOnDeployment"].as_str(), Some("Enforce"));
    assert_eq!(strings(&c["Properties"]["AllowedPublishers"]["SigningProfileVersionArns"]), [profile]);
    assert!(s["Parameters"]["HsmLayerArn"].is_null(), "a full layer ARN would take any account's layer by default");
}

/// The Rules section's assertions that fail for these parameters (their descriptions).
pub(crate) fn failed_rules(t: &Value, overrides: &[(&str, &str)]) -> Vec<String> {
    failed_rules_in(t, overrides, REGION)
}

/// `failed_rules` for a deployment in `region`.
pub(crate) fn failed_rules_in(t: &Value, overrides: &[(&str, &str)], region: &str) -> Vec<String> {
    let cfn = Cfn::new(t, overrides).in_region(region);
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
        ("OrganizationId", ORG),
        ("HsmLayerName", "cloudhsm-pkcs11"),
        ("SubnetIds", "subnet-1"),
        ("VpcId", "vpc-1"),
        ("HsmSecurityGroupId", "sg-cluster"),
    ];
    assert_eq!(
        failed_rules(&s, &complete),
        Vec::<String>::new(),
        "complete parameters deploy (the stack creates the PIN secret)"
    );
    for (missing, what) in [
        ("HsmLayerName", "HsmLayerName"),
        ("SubnetIds", "SubnetIds"),
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
    assert!(failed_rules(&s, &[("OrganizationId", ORG), ("EnableRotation", "false")]).is_empty());
    assert!(!failed_rules(&s, &[("OrganizationId", ORG)]).is_empty(), "defaults alone must refuse");
    // A PIN key belongs to a given secret; alias-swap as the policy needs the break glass.
    let mut pin_key = complete.to_vec();
    pin_key.push(("PinSecretKmsKeyArn", "arn:aws:kms:eu-west-1:999999999999:key/pin"));
    assert!(failed_rules(&s, &pin_key).iter().any(|f| f.contains("PinSecretArn")), "PinSecretKmsKeyArn alone");
    let mut swap = complete.to_vec();
    swap.push(("RotationStrategy", "alias-swap"));
    assert!(failed_rules(&s, &swap).iter().any(|f| f.contains("AllowAliasSwap")));
    swap.push(("AllowAliasSwap", "true"));
    assert!(failed_rules(&s, &swap).is_empty());
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
