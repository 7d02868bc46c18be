//! The page against hostile values, its embedded JSON and digest, and custody columns.

use super::*;
use crate::audit::tests::row;

fn header() -> ReportHeader {
    ReportHeader::new(vec!["111122223333".into()], "eu-west-1", Utc::now(), &RuleParams::default())
}

#[test]
fn values_from_aws_never_become_markup() {
    let mut hostile = row("KMS key alias/x: tag LastRotationDate=\"<script>alert(1)</script>\" is not a date");
    hostile.resource_name = "<img src=x onerror=alert(2)>".into();
    hostile.key_alias = Some("alias/\"><svg onload=alert(3)>".into());
    let page = render(&header(), &[hostile]);
    for raw in ["<script>alert", "<img src", "<svg onload"] {
        assert!(!page.contains(raw), "{raw} reached the page unescaped");
    }
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&lt;img src=x onerror=alert(2)&gt;"));
    // Only this module's own script element.
    assert_eq!(page.matches("<script").count(), 1);
}

#[test]
fn embeds_the_json_payload_and_its_digest() {
    let rows = [row("a"), row("b & <c>")];
    let page = render(&header(), &rows);
    let digest = crate::audit::sha256_hex(crate::audit::json(&rows).as_bytes());
    assert!(page.contains(&format!("id=\"payload-sha256\">{digest}<")), "digest missing");
    let start = page.find("<pre id=\"payload\">").unwrap() + "<pre id=\"payload\">".len();
    let end = start + page[start..].find("</pre>").unwrap();
    let unescaped =
        page[start..end].replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
    assert_eq!(crate::audit::sha256_hex(unescaped.as_bytes()), digest);
}

#[test]
fn custody_shows_held_not_held_and_unknown() {
    let on = |key: &str, held: Option<bool>| AuditRow {
        key_arn: Some(format!("arn:aws:kms:eu-west-1:111122223333:key/{key}")),
        hsm_holds_material: held,
        ..row("a")
    };
    let rows = [on("k1", Some(true)), on("k2", None), on("k3", Some(false))];
    let page = render(&header(), &rows);
    let cell = |key: &str| {
        let start = page.find(&format!("<tr data-key=\"arn:aws:kms:eu-west-1:111122223333:key/{key}\"")).unwrap();
        let end = start + page[start..].find("</tr>").unwrap();
        page[start..end].to_string()
    };
    assert!(cell("k1").contains(r#"<span class="custody ok">held</span>"#), "{}", cell("k1"));
    assert!(cell("k2").contains(r#"<span class="custody na">unknown</span>"#), "{}", cell("k2"));
    assert!(cell("k3").contains(">NOT HELD</span>") && cell("k3").contains("custody bad"), "{}", cell("k3"));
    // The JSON row the page's digest covers says the same.
    assert!(crate::audit::json(&rows[2..]).contains(r#""hsmHoldsMaterial": false"#));
}

#[test]
fn one_bar_per_key_coloured_by_its_worst_verdict() {
    let mut a = row("stale");
    a.key_arn = Some("arn:aws:kms:eu-west-1:111122223333:key/k1".into());
    let mut b = a.clone();
    b.compliance = Compliance::Compliant;
    let mut c = row("fresh");
    c.key_arn = Some("arn:aws:kms:eu-west-1:111122223333:key/k2".into());
    c.compliance = Compliance::Compliant;
    c.key_age_days = Some(10);
    let page = render(&header(), &[a, b, c]);
    assert_eq!(page.matches("<g class=\"bar\"").count(), 2);
    assert!(page.contains(r#"data-key="arn:aws:kms:eu-west-1:111122223333:key/k1" data-verdict="NON_COMPLIANT""#));
    assert!(page.contains(r#"data-key="arn:aws:kms:eu-west-1:111122223333:key/k2" data-verdict="COMPLIANT""#));
    assert!(page.contains("next due 2027-01-01"));
}

#[test]
fn nothing_is_loaded_from_elsewhere() {
    let page = render(&header(), &[row("a")]);
    for external in ["src=", "href=", "@import", "url("] {
        assert!(!page.contains(external), "{external} in the page");
    }
}
