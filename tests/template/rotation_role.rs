//! The rotation role's rights (issue 12).

use crate::cfn::*;
use crate::support::*;

// ---------------------------------------------------------------------------------------
// (c3) the rotation role (issue 12)

/// Condition values of `op` / `key` in a statement, as strings (absent: empty).
fn cond_values(st: &Value, op: &str, key: &str) -> Vec<String> {
    strings(&st["Condition"][op][key])
}

/// The PIN secret's key: decrypt only through Secrets Manager, only for that secret.
fn is_pin_decrypt(st: &Value, secret: &str) -> bool {
    actions_of(st) == ["kms:Decrypt"]
        && cond_values(st, "StringEquals", "kms:ViaService") == [format!("secretsmanager.{REGION}.amazonaws.com")]
        && cond_values(st, "StringEquals", "kms:EncryptionContext:SecretARN") == [secret]
}

const GIVEN_SECRET: &str = "arn:aws:secretsmanager:eu-west-1:999999999999:secret:hsm-pin-AbCdEf";
const GIVEN_PIN_KEY: &str = "arn:aws:kms:eu-west-1:999999999999:key/pin";

#[test]
fn rotation_role_encrypts_and_decrypts_only_the_probe() {
    let s = template(SECURITY_TEMPLATE);
    // (overrides, the PIN secret, its key's decrypt grant)
    type Pin<'a> = (Vec<(&'a str, &'a str)>, &'a str, Option<&'a str>);
    let pins: [Pin; 3] = [
        (vec![], "ref:PinSecret", Some("PinSecretKey.Arn")),
        (vec![("PinSecretArn", GIVEN_SECRET)], GIVEN_SECRET, None),
        (
            vec![("PinSecretArn", GIVEN_SECRET), ("PinSecretKmsKeyArn", GIVEN_PIN_KEY)],
            GIVEN_SECRET,
            Some(GIVEN_PIN_KEY),
        ),
    ];
    for swap in ["false", "true"] {
        for (pin, secret, pin_key) in &pins {
            let mut o = vec![("AllowAliasSwap", swap)];
            o.extend(pin.iter().copied());
            let cfn = Cfn::security(&s, &o);
            let sts = cfn.role_statements(ROTATION_ROLE);
            let reads = allowing(&sts, "secretsmanager:GetSecretValue");
            assert_eq!(reads.len(), 1, "{o:?}");
            assert_eq!(strings(&reads[0]["Resource"]), [*secret], "{o:?}: the PIN secret only");
            let pin_grants: Vec<&Value> = sts.iter().filter(|st| is_pin_decrypt(st, secret)).collect();
            match pin_key {
                Some(k) => {
                    assert_eq!(pin_grants.len(), 1, "{o:?}: the PIN key grant");
                    assert_eq!(strings(&pin_grants[0]["Resource"]), [*k], "{o:?}");
                }
                None => assert!(pin_grants.is_empty(), "{o:?}: aws/secretsmanager needs no grant"),
            }
            probe_only(&sts, secret);
        }
    }
}

fn probe_only(sts: &[Value], secret: &str) {
    {
        for action in ["kms:Encrypt", "kms:Decrypt"] {
            let grants: Vec<&Value> =
                allowing(sts, action).into_iter().filter(|st| !is_pin_decrypt(st, secret)).collect();
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
        for st in sts {
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
        let cfn = Cfn::security(&s, overrides);
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
        // Multi-Region replicas: only with RotateMultiRegionKeys (below).
        for st in &sts {
            assert!(
                strings(&st["Resource"]).iter().all(|r| !r.starts_with("arn:aws:kms:*:")),
                "{overrides:?}: other Regions' keys without RotateMultiRegionKeys: {st:?}"
            );
        }
        for needed in ["kms:ListKeyRotations", "kms:DescribeKey", "kms:RotateKeyOnDemand"] {
            assert!(!allowing(&sts, needed).is_empty(), "{overrides:?}: {needed} missing");
        }
    }
}

/// Replicas of multi-Region keys (stream i19): the same material imported in their Region
/// and the rotation record tagged there - only where the multi-Region path runs.
#[test]
fn other_regions_multi_region_keys_only_with_rotate_multi_region_keys() {
    let s = template(SECURITY_TEMPLATE);
    let mrk = format!("arn:aws:kms:*:{ACCOUNT}:key/mrk-*");
    let replica_actions = [
        "kms:DescribeKey",
        "kms:ListKeyRotations",
        "kms:ListResourceTags",
        "kms:GetParametersForImport",
        "kms:ImportKeyMaterial",
        "kms:TagResource",
        "kms:UntagResource",
    ];
    let on = Cfn::security(&s, &[("RotateMultiRegionKeys", "true"), ("CreateVpcEndpoints", "false")]);
    let sts = on.role_statements(ROTATION_ROLE);
    let mut granted = BTreeSet::new();
    for st in &sts {
        if strings(&st["Resource"]).contains(&mrk) {
            assert_eq!(cond_values(st, "StringEquals", "kms:KeyOrigin"), ["EXTERNAL"], "{st:?}");
            granted.extend(actions_of(st));
        }
    }
    let want: BTreeSet<String> = replica_actions.iter().map(|a| a.to_string()).collect();
    assert_eq!(granted, want, "replica rights");
    // The replica's rotation record: the same tag keys as the primary's, nothing more.
    for st in allowing(&sts, "kms:TagResource") {
        assert!(!cond_values(st, "ForAllValues:StringEquals", "aws:TagKeys").is_empty(), "{st:?}");
    }
    for st in allowing(&sts, "kms:RotateKeyOnDemand") {
        assert!(!strings(&st["Resource"]).contains(&mrk), "on-demand rotation is started on the primary only");
    }
    // The function's gate lets multi-Region primaries through exactly then.
    let f = function_for_binary(&s, ROTATION_BINARY);
    let gate = |cfn: &Cfn| {
        cfn.eval(resource(&s, &f))["Properties"]["Environment"]["Variables"]["KRG_ROTATE_MULTI_REGION"].clone()
    };
    assert_eq!(gate(&on).as_str(), Some("true"));
    let off = Cfn::security(&s, &[]);
    assert_eq!(gate(&off).as_str(), Some("false"));
    for st in off.role_statements(ROTATION_ROLE) {
        assert!(!strings(&st["Resource"]).contains(&mrk), "default: no other Region's keys: {st:?}");
    }
    // It needs a route to the other Regions: refused with this stack's (regional) endpoints.
    let rules = crate::network::failed_rules(
        &s,
        &[("OrganizationId", ORG), ("RotateMultiRegionKeys", "true"), ("EnableRotation", "false")],
    );
    assert!(rules.iter().any(|r| r.contains("CreateVpcEndpoints=false")), "{rules:?}");
}

/// Alias-swap creates the successor with the old key's policy: CreateKey's policy-lockout
/// check then needs the caller to be allowed kms:PutKeyPolicy on the new key (CreateKey API
/// reference, `Policy` and `BypassPolicyLockoutSafetyCheck`). With the account-root statement
/// of a default key policy that is an IAM right - granted here, with AllowAliasSwap only, on
/// this Region's EXTERNAL keys, and never with the check bypassed.
#[test]
fn alias_swap_passes_the_policy_lockout_check_and_never_bypasses_it() {
    let s = template(SECURITY_TEMPLATE);
    let off = Cfn::security(&s, &[]);
    assert!(allowing(&off.role_statements(ROTATION_ROLE), "kms:PutKeyPolicy").is_empty(), "not by default");
    let on = Cfn::security(&s, &[("AllowAliasSwap", "true")]);
    let sts = on.role_statements(ROTATION_ROLE);
    let put = allowing(&sts, "kms:PutKeyPolicy");
    assert_eq!(put.len(), 1, "{put:?}");
    assert_eq!(actions_of(put[0]), ["kms:PutKeyPolicy"], "PutKeyPolicy alone");
    assert_eq!(strings(&put[0]["Resource"]), [format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/*")]);
    assert_eq!(cond_values(put[0], "StringEquals", "kms:KeyOrigin"), ["EXTERNAL"]);
    assert_eq!(allowing(&sts, "kms:GetKeyPolicy").len(), 1, "the old key's policy is read");
    // The explicit Deny of a bypassed check.
    let role = on.eval(resource(&s, ROTATION_ROLE));
    let denies: Vec<Value> = seq(&role["Properties"]["Policies"])
        .iter()
        .flat_map(|p| seq(&p["PolicyDocument"]["Statement"]).to_vec())
        .filter(|st| st["Effect"].as_str() == Some("Deny"))
        .collect();
    let bypass = denies
        .iter()
        .find(|st| cond_values(st, "Bool", "kms:BypassPolicyLockoutSafetyCheck") == ["true"])
        .expect("a Deny when kms:BypassPolicyLockoutSafetyCheck is true");
    let mut acts = actions_of(bypass);
    acts.sort();
    assert_eq!(acts, ["kms:CreateKey", "kms:PutKeyPolicy"]);
    assert_eq!(strings(&bypass["Resource"]), ["*"]);
    // An alert when the role does change a key policy (the code never calls PutKeyPolicy).
    let watch = on.resources_of_type("AWS::Events::Rule").into_iter().find(|(_, r)| {
        strings(&r["Properties"]["EventPattern"]["detail"]["eventName"]).contains(&"PutKeyPolicy".to_string())
    });
    let (_, watch) = watch.expect("an EventBridge rule on PutKeyPolicy by the rotation role");
    let pattern = &watch["Properties"]["EventPattern"]["detail"];
    assert_eq!(
        strings(&pattern["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"]),
        [format!("{ROTATION_ROLE}.Arn")]
    );
    assert_eq!(strings(&seq(&watch["Properties"]["Targets"])[0]["Arn"]), ["ref:AlertTopic"]);
    assert!(off
        .resources_of_type("AWS::Events::Rule")
        .iter()
        .all(|(id, _)| id == "RequestRule" || id == "WatcherRule"));
}

#[test]
fn alias_swap_is_break_glass_and_no_right_rests_on_a_tag_the_role_writes() {
    let s = template(SECURITY_TEMPLATE);
    for swap in ["false", "true"] {
        for guard in ["enabled", ""] {
            let cfn = Cfn::security(&s, &[("AllowAliasSwap", swap), ("RotatableKeyTagValue", guard)]);
            let sts = cfn.role_statements(ROTATION_ROLE);
            let ctx = format!("AllowAliasSwap={swap} RotatableKeyTagValue={guard:?}");
            if swap == "false" {
                for a in ["kms:CreateKey", "kms:UpdateAlias", "kms:ListAliases", "kms:PutKeyPolicy"] {
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
                let pin = is_pin_decrypt(st, "ref:PinSecret");
                if on_keys && !pin && actions_of(st).iter().any(|a| a.starts_with("kms:")) {
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
