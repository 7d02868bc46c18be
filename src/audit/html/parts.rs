//! What one account's report and the organization's page draw alike: the verdict badge and
//! cards, the rule parameters, and the key-age chart (inline SVG, no script needed). Every
//! value from AWS is escaped by maud.

use chrono::{DateTime, NaiveDate, Utc};
use maud::{html, Markup};

use crate::audit::AuditRow;
use crate::params::RuleParams;
use crate::verdict::Compliance;

/// Worst first: NON_COMPLIANT, COMPLIANT, NOT_APPLICABLE.
pub(crate) fn severity(c: Compliance) -> u8 {
    match c {
        Compliance::NonCompliant => 2,
        Compliance::Compliant => 1,
        Compliance::NotApplicable => 0,
    }
}

pub(crate) fn verdict_class(c: Compliance) -> &'static str {
    match c {
        Compliance::Compliant => "ok",
        Compliance::NonCompliant => "bad",
        Compliance::NotApplicable => "na",
    }
}

pub(crate) fn badge(c: Compliance) -> Markup {
    html! { span class={ "badge " (verdict_class(c)) } { (c.as_str()) } }
}

pub(crate) fn dash(v: Option<&str>) -> &str {
    v.unwrap_or("—")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

/// The counts of each verdict and of keys, as the summary's cards (inside `div.cards`).
pub(crate) fn verdict_cards(ok: usize, bad: usize, na: usize, keys: usize) -> Markup {
    html! {
        div.card.bad { span.n id="count-NON_COMPLIANT" { (bad) } span.l { "NON_COMPLIANT" } }
        div.card.ok { span.n id="count-COMPLIANT" { (ok) } span.l { "COMPLIANT" } }
        div.card.na { span.n id="count-NOT_APPLICABLE" { (na) } span.l { "NOT_APPLICABLE" } }
        div.card.keys { span.n { (keys) } span.l { "KMS keys" } }
    }
}

/// The rule parameters the verdicts were reached with (inside `dd.params`).
pub(crate) fn rule_parameters(p: &RuleParams) -> Markup {
    html! {
        code { "maxKeyAgeDays=" (p.max_key_age_days) } " "
        code { "rotationTagKey=" (p.rotation_tag_key) } " "
        code { "keyReaderRoleName=" (dash(p.key_reader_role_name.as_deref())) } " "
        code { "allowAwsManagedKeys=" (p.allow_aws_managed_keys) } " "
        code { "verifyTagAgainstKms=" (p.verify_tag_against_kms) } " "
        code { "expiryWarningDays=" (p.expiry_warning_days) }
    }
}

/// The age of a key's material in days as a bar shows it, and where the date comes from:
/// the rotation tag, else KMS's own record of the current material taking effect.
pub(crate) fn material_age(row: &AuditRow, now: DateTime<Utc>) -> Option<(i64, &'static str)> {
    if let Some(d) = row.key_age_days {
        return Some((d, "tag"));
    }
    let kms = NaiveDate::parse_from_str(row.kms_rotation_date.as_deref()?, "%Y-%m-%d").ok()?;
    Some(((now.date_naive() - kms).num_days().max(0), "KMS"))
}

/// One key's bar.
pub(crate) struct Bar {
    /// The key ARN (or the reference as written): the bar's `data-key` and title.
    pub key: String,
    pub label: String,
    /// The worst verdict of the resources on the key: the bar's colour.
    pub verdict: Compliance,
    pub age: Option<(i64, &'static str)>,
    /// The text at the right end: when rotation is due, or who uses the key.
    pub note: String,
    /// The note names a date already past.
    pub overdue: bool,
    /// (resources, accounts) using the key, as `data-` attributes (the organization page).
    pub usage: Option<(usize, usize)>,
}

/// How a page lays the chart out: the organization page's note is longer, so its bars are
/// shorter and say less after their length.
pub(crate) struct ChartLayout {
    pub bar_width: f64,
    /// After the days, when the age comes from KMS and not from the tag.
    pub kms_note: &'static str,
}

pub(crate) const ACCOUNT_CHART: ChartLayout =
    ChartLayout { bar_width: 470.0, kms_note: " per KMS (no valid rotation tag)" };
pub(crate) const ORGANIZATION_CHART: ChartLayout = ChartLayout { bar_width: 420.0, kms_note: " per KMS" };

const BAR_H: u32 = 30;

/// One bar per key against `max_key_age_days` (a dashed line), worst verdict first, then
/// the oldest.
pub(crate) fn age_chart(mut bars: Vec<Bar>, max_key_age_days: i64, layout: &ChartLayout) -> Markup {
    let limit = max_key_age_days.max(1);
    bars.sort_by_key(|b| (std::cmp::Reverse(severity(b.verdict)), std::cmp::Reverse(b.age.map_or(i64::MAX, |a| a.0))));
    let oldest = bars.iter().filter_map(|b| b.age.map(|a| a.0)).max().unwrap_or(0);
    let scale_max = (limit as f64 * 1.25).max(oldest as f64 * 1.05);
    let (x0, width) = (230.0, layout.bar_width);
    let x = |days: f64| x0 + width * (days / scale_max).min(1.0);
    let height = 40 + BAR_H * bars.len().max(1) as u32 + 10;
    let limit_x = x(limit as f64);
    html! {
        @if bars.is_empty() {
            p.empty { "No resource uses a KMS key." }
        } @else {
            svg.chart viewBox={ "0 0 960 " (height) } role="img"
                aria-label="Key material age per key against the maximum age" {
                @for i in 0..=4 {
                    @let days = scale_max * f64::from(i) / 4.0;
                    line.grid x1=(x(days)) x2=(x(days)) y1="28" y2=(height - 10) {}
                    text.axis x=(x(days)) y="20" text-anchor="middle" { (days.round() as i64) "d" }
                }
                @for (i, b) in bars.iter().enumerate() {
                    @let y = 34 + BAR_H * i as u32;
                    g.bar data-key=(b.key) data-verdict=(b.verdict.as_str())
                        data-resources=[b.usage.map(|u| u.0)] data-accounts=[b.usage.map(|u| u.1)] {
                        title { (b.label) " — " (b.key) " — " (b.verdict.as_str()) }
                        text.label x=(x0 - 10.0) y=(y + 15) text-anchor="end" { (truncate(&b.label, 30)) }
                        @match b.age {
                            Some((days, source)) => {
                                rect class={ "fill " (verdict_class(b.verdict)) } x=(x0) y=(y + 3) rx="3"
                                    width=(format!("{:.1}", (x(days as f64) - x0).max(2.0))) height=(BAR_H - 10) {}
                                text.value x=(x(days as f64) + 6.0) y=(y + 15) {
                                    (days) "d" @if source == "KMS" { (layout.kms_note) }
                                }
                            }
                            None => {
                                rect.unknown x=(x0) y=(y + 3) rx="3" width=(width) height=(BAR_H - 10) {}
                                text.value x=(x0 + 8.0) y=(y + 15) { "age unknown: no rotation date" }
                            }
                        }
                        text class={ "due" @if b.overdue { " overdue" } } x="950" y=(y + 15) text-anchor="end" { (b.note) }
                    }
                }
                line.limit x1=(limit_x) x2=(limit_x) y1="26" y2=(height - 6) {}
                text.limit x=(limit_x) y="9" text-anchor="middle" { "max " (limit) "d" }
            }
        }
    }
}
