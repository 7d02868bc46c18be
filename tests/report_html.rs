//! `scan --format html`: the auditor's page over a seeded moto estate, rendered by a real
//! browser (headless Chromium, Debian `chromium`, installed by scripts/setup). The DOM the
//! browser builds must hold every resource with its verdict, one bar per key, the hostile
//! tag value as text (never as markup), and the SHA-256 of the JSON export.
//!
//! Artifacts are kept in target/report-html/ (report.html, report.json, dom.html,
//! report.png). `KRG_UPDATE_DOCS=1` also copies the screenshot to docs/report.png.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_kms::types::OriginType;
use common::seed::{self, Sse};
use common::tempdir::TempDir;
use common::*;
use serde_json::Value;

/// Set as a rotation tag: were it markup, it would retitle the page.
const HOSTILE: &str = "<script>document.title='pwned'</script>";

fn chromium() -> PathBuf {
    let p = PathBuf::from(std::env::var("KRG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(p.exists(), "{} is missing: run scripts/setup (it installs Debian's chromium)", p.display());
    p
}

/// Headless Chromium with no network chatter and a throwaway profile.
fn browse(args: &[&str], page: &Path) -> std::process::Output {
    let profile = TempDir::new("chromium-profile");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn cli(env: &[(&'static str, String)], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard")).args(args).envs(env.iter().cloned()).output().unwrap()
}

/// The `<tr …>…</tr>` of the resources table whose data-resource is `name`.
fn resource_row<'a>(dom: &'a str, name: &str) -> &'a str {
    let attr = format!("data-resource=\"{name}\"");
    let start = dom.find(&attr).unwrap_or_else(|| panic!("no row for {name} in the DOM"));
    let start = dom[..start].rfind("<tr").unwrap();
    let end = start + dom[start..].find("</tr>").unwrap();
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_shows_every_resource_key_and_verdict_in_a_browser() {
    let moto = Moto::start();
    let (wl, _) = workload(&moto.endpoint).await;
    let arn = |a: &str| format!("arn:aws:kms:{REGION}:{WORKLOAD}:alias/{a}");
    let ago = |d: i64| ymd(days_from_now(-d));
    seed::key(&wl, "payments-rds", OriginType::External, &[("LastRotationDate", &ago(40))]).await;
    seed::key(&wl, "orders-dynamodb", OriginType::External, &[("LastRotationDate", &ago(352))]).await;
    seed::key(&wl, "ledger-rds", OriginType::External, &[("LastRotationDate", &ago(512))]).await;
    seed::key(&wl, "invoices-s3", OriginType::External, &[("LastRotationDate", &ago(120))]).await;
    seed::key(&wl, "archive-s3", OriginType::External, &[]).await;
    seed::key(&wl, "audit-dynamodb", OriginType::External, &[("LastRotationDate", HOSTILE)]).await;
    seed::rds_instance(&wl, "payments-db", Some(&arn("payments-rds"))).await;
    seed::rds_cluster(&wl, "ledger-cluster", Some(&arn("ledger-rds"))).await;
    seed::table(&wl, "orders", Some(&arn("orders-dynamodb"))).await;
    seed::table(&wl, "audit-events", Some(&arn("audit-dynamodb"))).await;
    seed::table(&wl, "sessions", None).await;
    seed::bucket(&wl, "invoices-123456789012", Sse::Kms(Some("alias/invoices-s3"))).await;
    seed::bucket(&wl, "archive-123456789012", Sse::Kms(Some(&arn("archive-s3")))).await;
    seed::bucket(&wl, "static-assets-123456789012", Sse::S3).await;
    let env = moto.env();

    let dir = root().join("target/report-html");
    std::fs::create_dir_all(&dir).unwrap();
    let (html_path, json_path) = (dir.join("report.html"), dir.join("report.json"));
    let now = chrono::Utc::now().to_rfc3339();
    let out = cli(&env, &["scan", "--format", "html", "--output", html_path.to_str().unwrap(), "--now", &now]);
    assert_eq!(out.status.code(), Some(1), "non-compliant resources exist: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "the report goes to the file only");
    let out = cli(&env, &["scan", "--format", "json", "--output", json_path.to_str().unwrap(), "--now", &now]);
    assert_eq!(out.status.code(), Some(1));
    let rows: Vec<Value> = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(rows.len(), 8, "{rows:?}");

    // The page embeds the SHA-256 of the JSON export made at the same --now, as sha256sum
    // computes it (an independent implementation).
    let sum = Command::new("sha256sum").arg(&json_path).output().unwrap();
    let digest = String::from_utf8(sum.stdout).unwrap().split_whitespace().next().unwrap().to_string();
    let page = std::fs::read_to_string(&html_path).unwrap();
    assert!(page.contains(&digest), "the page lacks the JSON export's SHA-256 {digest}");

    // Self-contained: nothing is fetched, whatever the browser.
    for external in ["src=", "href=", "@import", "url(", "http://", "https://"] {
        assert!(!page.contains(external), "{external} in the page");
    }

    // What a browser builds from it.
    let dom = String::from_utf8(browse(&["--dump-dom"], &html_path).stdout).unwrap();
    std::fs::write(dir.join("dom.html"), &dom).unwrap();
    assert!(dom.contains("id=\"payload-sha256\">") && dom.contains(&digest));
    for r in &rows {
        let name = r["resourceName"].as_str().unwrap();
        let verdict = r["compliance"].as_str().unwrap();
        let row = resource_row(&dom, name);
        assert!(row.contains(&format!("data-verdict=\"{verdict}\"")), "{name} is not {verdict} in the DOM: {row}");
        assert!(row.contains(&format!(">{verdict}</span>")), "{name}'s verdict badge is missing: {row}");
    }
    let verdict_of = |name: &str| rows.iter().find(|r| r["resourceName"] == name).unwrap()["compliance"].clone();
    assert_eq!(verdict_of("payments-db"), "COMPLIANT");
    assert_eq!(verdict_of("orders"), "COMPLIANT");
    assert_eq!(verdict_of("ledger-cluster"), "NON_COMPLIANT");
    assert_eq!(verdict_of("audit-events"), "NON_COMPLIANT");

    // One bar per key in use, coloured by verdict; each says when the next rotation is due.
    let bars = dom.matches("<g class=\"bar\"").count();
    assert_eq!(bars, 6, "one bar per KMS key");
    let bar = |alias: &str| {
        dom.split("<g class=\"bar\"")
            .skip(1)
            .find(|b| b.contains(alias))
            .unwrap_or_else(|| panic!("no bar for {alias}"))
    };
    assert!(bar("ledger-rds").contains("data-verdict=\"NON_COMPLIANT\""), "the stale key's bar");
    assert!(bar("ledger-rds").contains("<rect class=\"fill bad\""));
    assert!(bar("payments-rds").contains("<rect class=\"fill ok\""));
    assert!(dom.contains(&format!("overdue since {}", ymd(days_from_now(-512 + 365)))));
    assert!(dom.contains(&format!("next due {}", ymd(days_from_now(-40 + 365)))));
    // Without its tag, a key's age comes from KMS's own record, marked as such.
    assert!(
        bar("archive-s3").contains("<rect class=\"fill bad\"")
            && bar("archive-s3").contains("0d per KMS (no valid rotation tag)")
    );
    assert_eq!(dom.matches("<tr data-key=").count(), 6, "one row per key in the keys table");
    assert!(dom.contains("<span class=\"custody na\">unknown</span>"));

    // The hostile tag is text in the annotation, not an element: the title is intact and
    // the only script element is the page's own.
    assert!(dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"), "hostile tag not shown as text");
    assert!(resource_row(&dom, "audit-events").contains("&lt;script&gt;"));
    assert_eq!(dom.matches("<script").count(), 1);
    assert!(dom.contains("<title>KMS key rotation evidence"), "the page's title was changed");
    // The inline script ran (it reveals the search box, hidden without JS).
    assert!(dom.contains("id=\"search\"") && !dom.contains("aria-label=\"Filter resources\" hidden"));

    // Without script (the file as served; headless Chromium cannot dump the DOM with
    // script disabled) every row is there and the search box, useless then, is hidden.
    assert!(page.contains("aria-label=\"Filter resources\" hidden"));
    for r in &rows {
        resource_row(&page, r["resourceName"].as_str().unwrap());
    }

    // The screenshot, kept as an artifact.
    let png = dir.join("report.png");
    let _ = std::fs::remove_file(&png);
    browse(
        &[&format!("--screenshot={}", png.display()), "--window-size=1440,2500", "--force-device-scale-factor=1"],
        &html_path,
    );
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000, "{} bytes", bytes.len());
    if std::env::var_os("KRG_UPDATE_DOCS").is_some() {
        std::fs::copy(&png, root().join("docs/report.png")).unwrap();
    }
}
