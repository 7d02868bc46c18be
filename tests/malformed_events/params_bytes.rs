//! Malformed rule parameters (on every sample shape) and raw bytes, as the CLI reads them.

use super::*;

pub(crate) fn cases() -> Vec<Case> {
    use Expect::*;
    let (s3, rds) = (rule::S3, rule::RDS);
    let mut cases = Vec::new();
    // ---- rule parameters: every change, oversized and periodic sample shape ----
    for (label, params, fragments) in [
        (
            "ruleParameters not JSON",
            json!("{\"maxKeyAgeDays\": "),
            &["invalid rule parameter ruleParameters", "not JSON"][..],
        ),
        (
            "ruleParameters a JSON array",
            json!("[1]"),
            &["invalid rule parameter ruleParameters", "must be a JSON object"],
        ),
        (
            "ruleParameters an object, not a string",
            json!({"maxKeyAgeDays": "365"}),
            &["ruleParameters must be a string"],
        ),
        ("ruleParameters a number", json!(365), &["ruleParameters must be a string"]),
        (
            "maxKeyAgeDays zero",
            json!("{\"maxKeyAgeDays\": \"0\"}"),
            &["invalid rule parameter maxKeyAgeDays", "out of range"],
        ),
        (
            "maxKeyAgeDays negative",
            json!("{\"maxKeyAgeDays\": -30}"),
            &["invalid rule parameter maxKeyAgeDays", "out of range"],
        ),
        (
            "maxKeyAgeDays too large",
            json!("{\"maxKeyAgeDays\": \"36501\"}"),
            &["invalid rule parameter maxKeyAgeDays", "out of range"],
        ),
        ("maxKeyAgeDays a fraction", json!("{\"maxKeyAgeDays\": 1.5}"), &["invalid rule parameter maxKeyAgeDays"]),
        ("maxKeyAgeDays a word", json!("{\"maxKeyAgeDays\": \"a year\"}"), &["invalid rule parameter maxKeyAgeDays"]),
        ("maxKeyAgeDays a boolean", json!("{\"maxKeyAgeDays\": true}"), &["invalid rule parameter maxKeyAgeDays"]),
        ("maxKeyAgeDays null", json!("{\"maxKeyAgeDays\": null}"), &["invalid rule parameter maxKeyAgeDays"]),
        (
            "expiryWarningDays negative",
            json!("{\"expiryWarningDays\": \"-1\"}"),
            &["invalid rule parameter expiryWarningDays", "out of range"],
        ),
        (
            "allowAwsManagedKeys yes",
            json!("{\"allowAwsManagedKeys\": \"yes\"}"),
            &["invalid rule parameter allowAwsManagedKeys"],
        ),
        (
            "verifyTagAgainstKms a number",
            json!("{\"verifyTagAgainstKms\": 0}"),
            &["invalid rule parameter verifyTagAgainstKms"],
        ),
        ("rotationTagKey empty", json!("{\"rotationTagKey\": \"\"}"), &["invalid rule parameter rotationTagKey"]),
        (
            "keyReaderRoleName with a space",
            json!("{\"keyReaderRoleName\": \"key reader\"}"),
            &["invalid rule parameter keyReaderRoleName"],
        ),
        (
            "misspelt parameter",
            json!("{\"maxKeyAgeDay\": \"30\"}"),
            &["invalid rule parameter maxKeyAgeDay", "unknown parameter"],
        ),
    ] {
        for (sample_name, r) in [(S3_CHANGE, s3), (OVERSIZED, s3), (PERIODIC, s3), ("rds-instance-deleted.json", rds)] {
            cases.push(Case {
                name: Box::leak(format!("{label} ({sample_name})").into_boxed_str()),
                rule: r,
                payload: Payload::Json(with_params(sample_name, params.clone())),
                expect: Err(fragments),
            });
        }
    }

    // ---- raw bytes, as the CLI reads them ----
    let mut big = sample(S3_CHANGE);
    big["padding"] = Value::String("x".repeat(7 * 1024 * 1024));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut deep_invoking = sample(S3_CHANGE);
    deep_invoking["invokingEvent"] = Value::String(format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000)));
    for (name, bytes, fragments) in [
        ("not JSON", b"this is not an event".to_vec(), &["not JSON"][..]),
        ("empty", Vec::new(), &["not JSON"]),
        ("invalid UTF-8", vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'], &["not JSON"]),
        (
            "JSON with trailing garbage",
            [serde_json::to_vec(&sample(S3_CHANGE)).unwrap(), b" }".to_vec()].concat(),
            &["not JSON"],
        ),
        ("truncated JSON", serde_json::to_vec(&sample(S3_CHANGE)).unwrap()[..700].to_vec(), &["not JSON"]),
        ("a 7 MB payload", serde_json::to_vec(&big).unwrap(), &["over the 6291456-byte limit"]),
        ("100 000 nested arrays", deep.into_bytes(), &["not JSON", "recursion limit"]),
        (
            "invokingEvent nested 50 000 deep",
            serde_json::to_vec(&deep_invoking).unwrap(),
            &["invokingEvent is not JSON", "recursion limit"],
        ),
    ] {
        cases.push(Case { name, rule: s3, payload: Payload::Bytes(bytes), expect: Err(fragments) });
    }
    cases
}
