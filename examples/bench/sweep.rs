//! The child: one rule's sweep exactly as the Lambda runs it, and the /proc readings (peak RSS, CPU).

use super::*;

/// One rule's sweep, as the Lambda runs it: a current-thread runtime, `Aws::from_env`
/// (the parent sets AWS_ENDPOINT_URL_<SERVICE> and static credentials), `handler::handle`.
pub(crate) fn sweep_only(endpoint: Option<&str>, rule_name: &str) -> Result<()> {
    let rule = Rule::find(rule_name).with_context(|| format!("unknown rule {rule_name}"))?;
    if let Some(endpoint) = endpoint {
        std::env::set_var("AWS_ENDPOINT_URL", endpoint);
        for (_, var) in SERVICES {
            std::env::remove_var(var);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let out = rt.block_on(async move {
        let counter = CallCounter::default();
        let aws = Aws::from_env().await.with_counter(counter.clone());
        let short = rule.name.strip_prefix("kms-rotation-").unwrap_or(rule.name);
        let payload: Value = serde_json::from_slice(
            &std::fs::read(Path::new(ROOT).join(format!("events/{short}-periodic.json"))).context("periodic event")?,
        )?;
        let hwm_before = status_kib("VmHWM");
        let cpu_before = self_cpu_seconds();
        let start = Instant::now();
        let outcome = kms_rotation_guard::handler::handle(&aws, rule, payload, chrono::Utc::now(), None)
            .await
            .map_err(|e| anyhow::anyhow!("{} sweep failed: {e}", rule.name))?;
        let wall = start.elapsed().as_secs_f64();
        let cpu = self_cpu_seconds() - cpu_before;
        let mut compliance: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &outcome.evaluations {
            *compliance.entry(e.compliance.as_str()).or_default() += 1;
        }
        Ok::<_, anyhow::Error>(json!({
            "rule": rule.name,
            "evaluations": outcome.evaluations.len(),
            "compliance": compliance,
            "put_evaluation_calls": outcome.put_evaluation_calls,
            "calls": counter.snapshot(),
            "calls_total": counter.total(),
            "wall_s": wall,
            "cpu_s": cpu,
            "vmhwm_before_kib": hwm_before,
            "vmhwm_kib": status_kib("VmHWM"),
            // When each stage finished, from the start of the sweep (they overlap).
            "stages_s": outcome.stages.iter().map(|(name, t)| json!([name, t.as_secs_f64()])).collect::<Vec<_>>(),
        }))
    })?;
    println!("{out}");
    Ok(())
}

/// A field of /proc/self/status in KiB (VmHWM: peak resident set size).
pub(crate) fn status_kib(field: &str) -> u64 {
    proc_status_kib("self", field)
}

pub(crate) fn proc_status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// utime + stime of a process (all its threads), in seconds (USER_HZ = 100 on Linux).
pub(crate) fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

pub(crate) fn self_cpu_seconds() -> f64 {
    cpu_seconds("self")
}
