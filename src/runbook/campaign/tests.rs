//! The pure plan: waves, verdicts, the plan file and the change id.

use super::*;
use std::collections::BTreeMap;

fn candidate(id: &str, env: Option<&str>, guard: bool, need: Need) -> Candidate {
    let mut f = KeyFacts::new(id, "111111111111", "EXTERNAL");
    let mut tags = BTreeMap::new();
    if let Some(e) = env {
        tags.insert("Environment".to_string(), e.to_string());
    }
    if guard {
        tags.insert(GUARD_TAG.to_string(), "enabled".to_string());
    }
    f.tags = Fact::Known(tags);
    Candidate { facts: f, aliases: vec![format!("alias/{id}")], need: Ok(need), on_demand_used: Some(3) }
}

fn campaign(text: &str) -> Campaign {
    PlanFile::parse(text).unwrap().resolve(None).unwrap()
}

#[test]
fn waves_follow_the_environment_tag_dev_int_prod_and_leave_the_rest_outside() {
    let cs = vec![
        candidate("p1", Some("prod"), true, Need::Rotate("old".into())),
        candidate("d1", Some("Dev"), true, Need::Rotate("old".into())),
        candidate("i1", Some("int"), true, Need::Skip("young".into())),
        candidate("x1", Some("sandbox"), true, Need::Rotate("old".into())),
        candidate("u1", Some("dev"), false, Need::Rotate("old".into())),
    ];
    let p = plan(&cs, &campaign(""), Some("CHG-1"));
    let names: Vec<_> = p
        .waves
        .iter()
        .map(|w| (w.name.as_str(), w.keys.iter().map(|k| k.label.as_str()).collect::<Vec<_>>()))
        .collect();
    assert_eq!(names, vec![("dev", vec!["alias/d1"]), ("int", vec!["alias/i1"]), ("prod", vec!["alias/p1"])]);
    assert_eq!(p.waves[1].keys[0].verdict, "skip");
    assert_eq!(p.waves[0].keys[0].rotations_left, Some(22));
    assert!(p.waves[0].keys[0].action.contains("21 of 25"), "{}", p.waves[0].keys[0].action);
    let outside: Vec<_> = p.outside.iter().map(|k| (k.label.as_str(), k.reason.as_str())).collect();
    assert_eq!(
        outside,
        vec![("alias/u1", "not tagged kms-rotation-guard=enabled"), ("alias/x1", "Environment=sandbox is in no wave")]
    );
    assert_eq!(p.rotations(), 2);
    assert!(plan_table(&p).contains("nothing was changed"));
}

#[test]
fn a_plan_file_gives_another_order_or_explicit_waves() {
    let cs = vec![
        candidate("p1", Some("prod"), true, Need::Rotate("old".into())),
        candidate("d1", Some("dev"), true, Need::Rotate("old".into())),
    ];
    let p = plan(&cs, &campaign("order = [\"prod\", \"dev\"]"), None);
    assert_eq!(p.waves[0].name, "prod");
    let p = plan(&cs, &campaign("[[waves]]\nname = \"canary\"\nkeys = [\"alias/d1\", \"alias/nope\"]\n"), None);
    assert_eq!(p.waves.len(), 1);
    assert_eq!(p.waves[0].keys[0].verdict, "rotate");
    assert_eq!(p.waves[0].keys[1].verdict, "missing");
    assert_eq!(p.problems().len(), 1);
    assert_eq!(p.outside.len(), 1);
}

#[test]
fn a_key_rotated_under_this_change_is_done() {
    let mut c = candidate("d1", Some("dev"), true, Need::Skip("young".into()));
    if let Fact::Known(t) = &mut c.facts.tags {
        t.insert(CHANGE_ID_TAG.into(), "CHG-1".into());
    }
    let p = plan(&[c.clone()], &campaign(""), Some("CHG-1"));
    assert_eq!(p.waves[0].keys[0].verdict, "done");
    let p = plan(&[c], &campaign(""), Some("CHG-2"));
    assert_eq!(p.waves[0].keys[0].verdict, "skip");
}

#[test]
fn bad_plans_and_change_ids_are_named() {
    for bad in [
        "order = []",
        "order = [\"dev\"]\n[[waves]]\nname=\"a\"\nkeys=[\"k\"]",
        "soak = 3",
        "strategy = \"sideways\"",
        "[window]\nstart = \"2026-12-05T10:00:00Z\"\nend = \"2026-12-05T09:00:00Z\"",
    ] {
        let r = PlanFile::parse(bad).and_then(|p| p.resolve(None));
        assert!(matches!(r, Err(RunbookError::Input(_))), "{bad}: {r:?}");
    }
    assert!(check_change_id("CHG-1234").is_ok());
    for bad in ["", "-x", "CHG 1", &"x".repeat(65)] {
        assert!(check_change_id(bad).is_err(), "{bad}");
    }
}
