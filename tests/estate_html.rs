//! The organization's HTML page (`estate::report`), rendered by a real browser (headless
//! Chromium, as tests/report_html.rs does) at the size the issue names: 300 accounts × 30
//! resources. The DOM must hold the accounts × services summary worst first, a section per
//! account, one bar per key with how many resources in how many accounts use it, the
//! coverage gaps, hostile values as text, and the SHA-256 of the embedded JSON export.
//! The page's size and Chromium's time to load it are printed (figures, not assertions).
//!
//! Artifacts: target/estate-html/ (estate.html, estate.json, dom.html).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use chrono::{Duration, Utc};
use kms_rotation_guard::audit::AuditRow;
use kms_rotation_guard::estate::{export, report, CoverageRow, CoverageStatus, EstateScan, ScanHeader};
use kms_rotation_guard::params::RuleParams;
use kms_rotation_guard::verdict::Compliance;

const ACCOUNTS: usize = 300;
const PER_ACCOUNT: usize = 30;
const KEYS: usize = 20;
/// Accounts whose member role was refused: nothing seen there.
const UNSEEN: [usize; 3] = [7, 150, 299];
const HOSTILE: &str = "<script>document.title='pwned'</script>";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    let p = PathBuf::from(std::env::var("KRG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(p.exists(), "{} is missing: run scripts/setup (it installs Debian's chromium)", p.display());
    p
}

fn account(i: usize) -> String {
    format!("{}", 400_000_000_000u64 + i as u64)
}

fn key_arn(k: usize) -> String {
    format!("arn:aws:kms:eu-west-1:111111111111:key/{k:08x}-0000-4000-8000-000000000000")
}

/// Key k's tag age: a quarter of the keys are over the 365-day limit.
fn age(k: usize) -> i64 {
    ((k * 53 + 17) % 500) as i64
}

fn estate() -> (EstateScan, ScanHeader) {
    let now = Utc::now();
    let types = ["AWS::RDS::DBInstance", "AWS::DynamoDB::Table", "AWS::S3::Bucket"];
    let mut scan = EstateScan::default();
    for a in 0..ACCOUNTS {
        let id = account(a);
        if UNSEEN.contains(&a) {
            scan.coverage.push(CoverageRow {
                account: id,
                region: "eu-west-1".into(),
                status: CoverageStatus::NotScanned,
                reason: Some(format!(
                    "no access: sts:AssumeRole on arn:aws:iam::{}:role/kms-rotation-guard-member was refused",
                    account(a)
                )),
                resources: 0,
            });
            continue;
        }
        scan.coverage.push(CoverageRow {
            account: id.clone(),
            region: "eu-west-1".into(),
            status: CoverageStatus::Scanned,
            reason: None,
            resources: PER_ACCOUNT,
        });
        for r in 0..PER_ACCOUNT {
            let k = (a * 7 + r) % KEYS;
            let days = age(k);
            let stale = days > 365;
            let rotated = (now - Duration::days(days)).format("%Y-%m-%d").to_string();
            let name = if a == 1 && r == 0 { HOSTILE.to_string() } else { format!("res-{a}-{r}") };
            scan.rows.push(AuditRow {
                account: id.clone(),
                region: "eu-west-1".into(),
                resource_type: types[r % 3].into(),
                resource_id: format!("id-{a}-{r}"),
                resource_name: name,
                key_reference: Some(format!("alias/key-{k:02}")),
                key_arn: Some(key_arn(k)),
                key_alias: Some(format!("alias/key-{k:02}")),
                origin: Some("EXTERNAL".into()),
                rotation_date: Some(rotated.clone()),
                key_age_days: Some(days),
                next_rotation_due: Some((now + Duration::days(365 - days)).format("%Y-%m-%d").to_string()),
                key_state: Some("Enabled".into()),
                kms_rotation_date: None,
                key_material_id: None,
                expiration_model: None,
                material_valid_to: None,
                hsm_holds_material: None,
                compliance: if stale { Compliance::NonCompliant } else { Compliance::Compliant },
                annotation: if stale {
                    format!("KMS key alias/key-{k:02}: material rotated {rotated}, {days} days ago, limit 365 days")
                } else {
                    format!("KMS key alias/key-{k:02}: material rotated {rotated}, {days} days ago")
                },
            });
        }
    }
    scan.keys = export::key_usage(&scan.rows);
    let header = ScanHeader {
        scan_time: now,
        accounts: (0..ACCOUNTS).map(account).collect(),
        regions: vec!["eu-west-1".into()],
        source: "assume-role:kms-rotation-guard-member".into(),
    };
    (scan, header)
}

#[test]
fn the_organization_page_for_300_accounts_opens_in_a_browser() {
    let (scan, header) = estate();
    let rendered = report::render(&header, &scan, &RuleParams::default(), "estate.json");
    let (page, json) = (rendered.html, rendered.json);
    assert_eq!(json, export::json(&scan, &header));
    assert!(!rendered.embedded, "a {} byte export is linked by digest, not embedded", json.len());
    assert!(page.contains("id=\"payload-file\"") && page.contains("<code>estate.json</code>"));
    let dir = root().join("target/estate-html");
    std::fs::create_dir_all(&dir).unwrap();
    let (html_path, json_path) = (dir.join("estate.html"), dir.join("estate.json"));
    std::fs::write(&html_path, &page).unwrap();
    std::fs::write(&json_path, &json).unwrap();

    // The page embeds the SHA-256 of the export, as sha256sum computes it.
    let sum = Command::new("sha256sum").arg(&json_path).output().unwrap();
    let digest = String::from_utf8(sum.stdout).unwrap().split_whitespace().next().unwrap().to_string();
    assert!(page.contains(&digest));
    for external in ["src=", "href=\"http", "@import", "url(", "http://", "https://"] {
        assert!(!page.contains(external), "{external} in the page");
    }

    let profile = dir.join("chromium-profile");
    let started = Instant::now();
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .args(["--disable-component-update", "--no-first-run", "--disable-sync", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", html_path.display()))
        .output()
        .expect("run chromium");
    let load = started.elapsed();
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let dom = String::from_utf8(out.stdout).unwrap();
    std::fs::write(dir.join("dom.html"), &dom).unwrap();
    println!(
        "organization page: {} accounts x {} resources: page {:.1} MiB (JSON export {:.1} MiB, linked by digest), \
         DOM {:.1} MiB, headless Chromium load + dump {:.1} s",
        ACCOUNTS,
        PER_ACCOUNT,
        page.len() as f64 / 1048576.0,
        json.len() as f64 / 1048576.0,
        dom.len() as f64 / 1048576.0,
        load.as_secs_f64()
    );

    // What the browser built: the digest, one section per account, the summary worst first.
    assert!(dom.contains("id=\"payload-sha256\">") && dom.contains(&digest));
    assert_eq!(dom.matches("<details class=\"account\"").count(), ACCOUNTS);
    let matrix = &dom[dom.find("id=\"matrix\"").unwrap()..];
    let order: Vec<&str> = matrix.split("<tr data-account=\"").skip(1).map(|s| &s[..12]).collect();
    assert_eq!(order.len(), ACCOUNTS);
    let unseen: Vec<String> = UNSEEN.iter().map(|a| account(*a)).collect();
    assert_eq!(order[..3].to_vec(), unseen.iter().map(String::as_str).collect::<Vec<_>>(), "not seen first");
    let bad_of =
        |id: &str| scan.rows.iter().filter(|r| r.account == id && r.compliance == Compliance::NonCompliant).count();
    assert!(order[3..].windows(2).all(|w| bad_of(w[0]) >= bad_of(w[1])), "then the most non-compliant");

    // Coverage: the three accounts not seen, with why.
    let coverage = &dom[dom.find("id=\"coverage-table\"").unwrap()..dom.find("id=\"summary\"").unwrap()];
    for a in &unseen {
        assert!(coverage.contains(&format!("data-account=\"{a}\"")) && coverage.contains("not-scanned"));
    }

    // One bar per key, saying how many resources in how many accounts use it.
    assert_eq!(dom.matches("<g class=\"bar\"").count(), KEYS);
    for k in &scan.keys {
        let bar = dom.split("<g class=\"bar\"").skip(1).find(|b| b.contains(&k.key)).unwrap();
        assert!(
            bar.contains(&format!("{} resources in {} accounts", k.resources, k.accounts)),
            "{}: {}",
            k.key,
            &bar[..bar.len().min(600)]
        );
    }

    // The hostile resource name is text, not an element.
    assert!(dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"));
    assert!(dom.contains("<title>KMS key rotation evidence"));
    assert_eq!(dom.matches("<script").count(), 1);
}

#[test]
fn a_small_estate_embeds_its_export() {
    let (mut scan, header) = estate();
    scan.rows.truncate(40);
    scan.keys = export::key_usage(&scan.rows);
    let page = report::render(&header, &scan, &RuleParams::default(), "estate.json");
    assert!(page.embedded);
    assert!(page.html.contains("id=\"payload\"") && !page.html.contains("id=\"payload-file\""));
    let digest = kms_rotation_guard::audit::sha256_hex(page.json.as_bytes());
    assert!(page.html.contains(&digest));
}
