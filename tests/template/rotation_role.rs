//! The rotation role's rights (issue 12).

use crate::cfn::*;
use crate::support::*;

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
