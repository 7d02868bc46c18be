//! One convention on every command (issue 18): each subcommand takes `--format`, keeps the
//! older `--json` as a hidden alias, and the top-level help shows the one exit-status table.
//! The subcommands are read from the help itself, so a new command is held to it too.

mod common;

use std::process::{Command, Output};

use common::Moto;

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard"))
        .args(args)
        // Nothing here may reach AWS: no credentials, no instance metadata.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The subcommands the top-level help lists (clap's own `help` left out).
fn subcommands() -> Vec<String> {
    let help = stdout(&cli(&["--help"]));
    let listed = help.split("Commands:\n").nth(1).expect("a Commands: section").split("\n\n").next().unwrap();
    let names: Vec<String> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 6, "{help}");
    names
}

#[test]
fn the_top_level_help_shows_one_exit_status_table() {
    let out = cli(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    let table = help.split("Exit status (every command):").nth(1).unwrap_or_else(|| panic!("no table:\n{help}"));
    for (code, meaning) in [("0", "ok"), ("1", "findings"), ("2", "error"), ("3", "incomplete coverage")] {
        assert!(
            table.lines().any(|l| l.trim_start().starts_with(&format!("{code}  {meaning}"))),
            "exit status {code} ({meaning}) missing:\n{help}"
        );
    }
}

#[test]
fn every_command_takes_format_and_the_json_alias() {
    for name in subcommands() {
        let help = stdout(&cli(&[&name, "--help"]));
        assert!(help.contains("--format <FORMAT>"), "{name} has no --format:\n{help}");
        assert!(help.contains("possible values: ") && help.contains("json"), "{name}: --format json:\n{help}");
        assert!(!help.contains("--json"), "{name}: --json is a hidden alias, not a second convention:\n{help}");

        // Values are checked before anything else: a typo never reaches AWS or the HSM.
        let bad = cli(&[&name, "--format", "yaml"]);
        assert_eq!(bad.status.code(), Some(2), "{name}: {}", stderr(&bad));
        assert!(stderr(&bad).contains("invalid value 'yaml' for '--format <FORMAT>'"), "{name}: {}", stderr(&bad));

        // The alias exists (clap knows it) and cannot contradict --format.
        let both = cli(&[&name, "--json", "--format", "table"]);
        assert_eq!(both.status.code(), Some(2), "{name}: {}", stderr(&both));
        assert!(
            stderr(&both).contains("'--json' cannot be used with '--format <FORMAT>'"),
            "{name}: {}",
            stderr(&both)
        );
    }
}

/// `evaluate` prints JSON lines by default, as before; `--format json` and `--json` print
/// the same bytes; `--format table` the same evaluation as columns.
#[test]
fn evaluate_formats_agree() {
    let moto = Moto::start();
    let event = common::root().join("events/rds-instance-unencrypted.json");
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard"))
            .args(["evaluate", "--event", event.to_str().unwrap(), "--now", "2026-11-23T00:00:00Z"])
            .args(extra)
            .envs(moto.env())
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        stdout(&out)
    };
    let default = run(&[]);
    let line: serde_json::Value = serde_json::from_str(default.lines().next().unwrap()).unwrap();
    let (id, compliance) = (line["resourceId"].as_str().unwrap(), line["compliance"].as_str().unwrap());
    assert_eq!(run(&["--format", "json"]), default);
    assert_eq!(run(&["--json"]), default);

    let table = run(&["--format", "table"]);
    let mut lines = table.lines();
    let head = lines.next().unwrap();
    assert!(head.starts_with("RESOURCE TYPE") && head.ends_with("ANNOTATION"), "{table}");
    let row = lines.next().unwrap_or_else(|| panic!("no row:\n{table}"));
    assert!(row.starts_with("AWS::RDS::DBInstance") && row.contains(id) && row.contains(compliance), "{table}");
    assert!(serde_json::from_str::<serde_json::Value>(row).is_err(), "a table, not JSON: {table}");
}

/// `rotate`: `--format json` makes every outcome JSON (the plan too), `--format table` makes
/// every outcome text, and without `--format` the output is what scripts already parse.
/// The software source (development only) stands in for the HSM: formats are the subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_formats_every_outcome() {
    use aws_sdk_kms::types::OriginType;
    use serde_json::Value;

    let ls = common::LocalStack::start();
    let aws = kms_rotation_guard::aws::Aws::new(common::sdk_config(&ls.endpoint, common::static_creds()).await);
    let id = common::seed::key(&aws, "formats", OriginType::External, &[]).await;
    let rotate = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard"))
            .args(["rotate", "--key", "alias/formats", "--hsm", "software"])
            // LocalStack refuses RSA_AES_KEY_WRAP_SHA_1 (docs/emulators.md).
            .args(["--wrapping-algorithm", "RSAES_OAEP_SHA_1", "--wrapping-key-spec", "RSA_2048"])
            .args(extra)
            .envs([
                ("AWS_ENDPOINT_URL", ls.endpoint.as_str()),
                ("AWS_REGION", common::REGION),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("AWS_CONFIG_FILE", "/dev/null"),
                ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        stdout(&out)
    };
    let json = |s: String| serde_json::from_str::<Value>(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"));

    // A key without material is due (its first import): the plan, in each format.
    let plan = json(rotate(&["--dry-run", "--format", "json"]));
    assert_eq!(plan["status"], "planned", "{plan}");
    assert!(plan["reason"].as_str().unwrap().contains("first import"), "{plan}");
    assert!(plan["keyArn"].as_str().unwrap().ends_with(&id) && plan["strategy"] == "in-place", "{plan}");
    assert_eq!(plan["wrappingAlgorithm"], "RSAES_OAEP_SHA_1", "{plan}");
    let text = rotate(&["--dry-run", "--format", "table"]);
    assert!(text.contains("strategy:   in-place") && text.contains(&id), "{text}");
    assert_eq!(rotate(&["--dry-run"]), text, "without --format a plan stays text");

    // The rotation's record as aligned lines.
    let record = rotate(&["--format", "table"]);
    assert!(record.lines().any(|l| l.starts_with("keyArn") && l.ends_with(&id)), "{record}");
    assert!(record.lines().any(|l| l.starts_with("strategy") && l.ends_with("in-place")), "{record}");
    assert!(serde_json::from_str::<Value>(record.trim()).is_err(), "a table, not JSON: {record}");

    // Now fresh: the gate skips it, as JSON by default and with --format json, as text with table.
    let skipped = rotate(&[]);
    assert_eq!(json(skipped.clone())["status"], "skipped", "{skipped}");
    assert_eq!(rotate(&["--format", "json"]), skipped);
    let text = rotate(&["--format", "table"]);
    assert!(text.starts_with("not rotated: ") && text.contains("does not need rotating"), "{text}");
}
