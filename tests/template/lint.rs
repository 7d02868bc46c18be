//! The checks scripts/test also runs: checkov, the advisory ignore list, cfn-lint.

use crate::cfn::strings;
use crate::support::*;

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

/// The templates a StackSet spreads over an organization's Regions lint clean in every
/// Region cfn-lint knows: a resource type CloudFormation lacks somewhere (Lambda resource
/// policies, Config remediation configurations) must be behind a condition on the Region.
/// (security-account.yaml, deployed in one place, is linted for the default Region above:
/// cfn-lint 1.58.0 takes minutes over it in every Region.)
#[test]
fn the_spread_templates_lint_in_every_region() {
    let out = Command::new(root().join(".tools/venv/bin/cfn-lint"))
        .args(["--regions", "ALL_REGIONS", "--", WORKLOAD_TEMPLATE, "member-role.yaml", "retirement.yaml"])
        .current_dir(root())
        .output()
        .expect("cfn-lint (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "cfn-lint in every Region ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
