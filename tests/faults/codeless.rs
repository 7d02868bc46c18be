//! Regression, once a bug: a 404 or 403 without an AWS error code is read as a finding.

use super::*;

/// Regression test, once a bug (src/aws.rs, `classify`: `(c.is_empty() && status == Some(403))` → Denied and
/// `(c.is_empty() && status == Some(404))` → NotFound). A 403/404 whose body names no AWS
/// error (an HTML page from an intermediary, an empty body) becomes a finding, not a
/// failed invocation:
///
/// - a bare 404 on kms:DescribeKey turns a COMPLIANT key into NON_COMPLIANT "KMS key …
///   not found" (src/key/lookup.rs `describe`);
/// - a bare 403 on kms:ListResourceTags turns it into NON_COMPLIANT "… denied";
/// - a bare 404 on dynamodb:DescribeTable during a sweep drops the table from the sweep
///   (src/resource/dynamodb.rs `enumerate`), which is then reported as complete (and,
///   outside TestMode, the table's earlier result would be retired as "resource no
///   longer exists"); with every DescribeTable answered so, the sweep reports nothing at
///   all, successfully. (S3's SDK names a codeless 404 "NotFound", which is not in
///   `NOT_FOUND`, so the S3 sweep fails cleanly: the last case is a control.)
///
/// AWS itself always names the error (`__type` / `<Code>`), so this needs a broken
/// intermediary; the fallback exists for moto's XML-bodied IAM 403s on JSON services.
/// Expected: a codeless 403/404 fails the invocation (transient or "other") unless the
/// body is recognisably the emulator's denial. Run with
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codeless_403_and_404_never_become_verdicts() {
    let moto = Moto::start();
    let keys = seed::event_estate(&moto).await;
    let now = days_from_now(30);
    let mut wrong = Vec::new();
    for (kind, matching, file, rule) in [
        ("bare404", "TrentService.DescribeKey", "dynamodb-table-lowercase-fields.json", rule::DYNAMODB),
        ("bare403", "TrentService.ListResourceTags", "dynamodb-table-lowercase-fields.json", rule::DYNAMODB),
        ("bare404", "DynamoDB_20120810.DescribeTable", "dynamodb-periodic.json", rule::DYNAMODB),
        ("bare404", "encryption", "s3-periodic.json", rule::S3),
    ] {
        let (aws, _) = faulty_aws(&moto.endpoint).await;
        let want = sorted(handler::handle(&aws, rule, keys.event(file), now, None).await.unwrap().evaluations);
        let proxy = FaultProxy::start_matching(moto.port, 1.0, 1, kind, matching);
        let (aws, _) = faulty_aws(&proxy.endpoint).await;
        match handler::handle(&aws, rule, keys.event(file), now, None).await {
            Err(e) => println!("{kind} on {matching}, {file}: failed cleanly: {e}"),
            Ok(out) => {
                let got = sorted(out.evaluations);
                if got != want {
                    let show = |e: &[Evaluation]| {
                        e.iter()
                            .map(|e| format!("{} {} {}", e.resource_id, e.compliance.as_str(), e.annotation))
                            .collect::<Vec<_>>()
                    };
                    wrong.push(format!(
                        "{kind} on {matching}, {file}:\n  fault-free: {:#?}\n  with fault: {:#?}",
                        show(&want),
                        show(&got)
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "codeless 403/404 answers became verdicts:\n{}", wrong.join("\n"));
}
