//! Expiring imported material: within the warning window, a non-current material's expiry
//! named with its id and the `reimport` command, pending material, and PendingImport keys.

use super::*;

#[test]
fn expiring_material_is_flagged_within_the_warning_window() {
    let expiring = |in_days: i64, from_rotations: bool| {
        let mut f = external(Some(&date(10)));
        rotated_on(&mut f, days_ago(10));
        let v = Some(now() + Duration::days(in_days));
        if from_rotations {
            if let Fact::Known(rs) = &mut f.rotations {
                rs[0].expiration_model = Some("KEY_MATERIAL_EXPIRES".into());
                rs[0].valid_to = v;
            }
        } else {
            f.expiration_model = Some("KEY_MATERIAL_EXPIRES".into());
            f.valid_to = v;
        }
        f
    };
    expect(&judge(expiring(30, false)), Compliance::NonCompliant, &["stops working on", "in 30 days", "reimport"]);
    expect(&judge(expiring(10, true)), Compliance::NonCompliant, &["m2", "expires on", "--key-material-id m2"]);
    expect(&judge(expiring(31, false)), Compliance::Compliant, &[]);
    let mut f = expiring(31, false);
    f.valid_to = None;
    expect(&judge(f), Compliance::NonCompliant, &["ValidTo"]);
    // DescribeKey's ValidTo is the earliest expiry of ANY associated material (KeyMetadata),
    // so it counts even when the key's model (its current material's) does not expire.
    let mut f = expiring(5, false);
    f.expiration_model = Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into());
    expect(&judge(f), Compliance::NonCompliant, &["in 5 days", "reimport"]);
    // Only a rotation tag problem would otherwise decide: the outage is named first.
    let mut f = expiring(5, false);
    f.tags = Fact::Known(BTreeMap::new());
    expect(&judge(f), Compliance::NonCompliant, &["in 5 days"]);
}

const OLD: &str = "8f1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const NEW: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The key of issue 19: a CURRENT material that never expires and a NON_CURRENT one that
/// expires in `days`, as DescribeKey and ListKeyRotations (ALL_KEY_MATERIAL) answer for it.
fn two_materials(days: i64) -> KeyFacts {
    let mut f = external(Some(&date(10)));
    f.current_material_id = Some(NEW.into());
    f.expiration_model = Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into());
    f.valid_to = Some(now() + Duration::days(days));
    f.rotations = Fact::Known(vec![
        Rotation {
            date: None,
            material_id: Some(OLD.into()),
            material_state: Some("NON_CURRENT".into()),
            expiration_model: Some("KEY_MATERIAL_EXPIRES".into()),
            valid_to: Some(now() + Duration::days(days)),
        },
        Rotation {
            date: Some(days_ago(10)),
            material_id: Some(NEW.into()),
            material_state: Some("CURRENT".into()),
            expiration_model: Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into()),
            valid_to: None,
        },
    ]);
    f
}

#[test]
fn a_non_current_material_expiring_names_its_id_date_and_the_reimport_command() {
    let v = judge(two_materials(10));
    let expires = (now() + Duration::days(10)).format("%Y-%m-%d").to_string();
    let new_date = (now() + Duration::days(364)).format("%Y-%m-%d").to_string();
    expect(
        &v,
        Compliance::NonCompliant,
        &[
            OLD,
            &expires,
            "in 10 days",
            &format!("kms-rotation-guard reimport --key alias/prod-s3 --key-material-id {OLD} --valid-to {new_date}"),
        ],
    );
    assert!(!v.annotation.contains("rotate "), "{}", v.annotation);
    expect(&judge(two_materials(400)), Compliance::Compliant, &["10 days ago"]);
    // The listing alone (DescribeKey without ValidTo, as moto answers) still finds it.
    let mut f = two_materials(10);
    f.valid_to = None;
    expect(&judge(f), Compliance::NonCompliant, &[OLD, "in 10 days"]);
    // Without the listing (denied, or LocalStack), DescribeKey's date still decides.
    let mut f = two_materials(10);
    f.rotations = Fact::Denied(Denial { action: "kms:ListKeyRotations".into(), hint: "h".into() });
    let p = RuleParams { verify_tag_against_kms: false, ..RuleParams::default() };
    expect(&judge_with(f, &p), Compliance::NonCompliant, &["in 10 days", "reimport --key alias/prod-s3 --valid-to"]);
}

#[test]
fn material_pending_rotation_does_not_make_the_key_expire() {
    let mut f = two_materials(400);
    if let Fact::Known(rs) = &mut f.rotations {
        for state in ["PENDING_ROTATION", "PENDING_MULTI_REGION_IMPORT_AND_ROTATION"] {
            rs.push(Rotation {
                date: None,
                material_id: Some(state.to_lowercase()),
                material_state: Some(state.into()),
                expiration_model: Some("KEY_MATERIAL_EXPIRES".into()),
                valid_to: Some(now() + Duration::days(3)),
            });
        }
    }
    expect(&judge(f), Compliance::Compliant, &[]);
}

#[test]
fn a_long_key_name_keeps_the_command_with_a_material_id_prefix() {
    let alias = format!("alias/{}", "a".repeat(70));
    let prot = Protection::Kms(KeyRef::parse(&alias).unwrap());
    let v = decide(&prot, Some(&KeyLookup::Found(Box::new(two_materials(10)))), &RuleParams::default(), now());
    expect(&v, Compliance::NonCompliant, &["--key-material-id 8f1b2c3d4e5f6071 --valid-to", "in 10 days"]);
    assert!(!v.annotation.ends_with('…'), "the command is whole: {}", v.annotation);
}

#[test]
fn a_pending_import_key_is_told_to_reimport_and_never_to_rotate() {
    let mut f = two_materials(10);
    f.state = "PendingImport".into();
    let v = judge(f.clone());
    expect(&v, Compliance::NonCompliant, &["PendingImport", "kms-rotation-guard reimport --key alias/prod-s3"]);
    assert!(!v.annotation.contains("rotate"), "{}", v.annotation);
    // Known only from the listing (DescribeKey names no current material).
    f.current_material_id = None;
    expect(&judge(f), Compliance::NonCompliant, &["reimport"]);
    // A key that never had material needs its first import, which is what rotate does.
    let mut empty = external(None);
    empty.state = "PendingImport".into();
    empty.rotations = Fact::NotRead;
    expect(&judge(empty), Compliance::NonCompliant, &["no key material imported yet", "rotate --key"]);
}
