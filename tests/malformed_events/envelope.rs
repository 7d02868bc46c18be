//! Malformed envelopes and invoking events.

use super::*;

pub(crate) fn cases() -> Vec<Case> {
    use Expect::*;
    let s3 = rule::S3;
    vec![
        // ---- the envelope ----
        case("a JSON array", s3, json!([sample(S3_CHANGE)]), Err(&["must be a JSON object"])),
        case("a JSON string", s3, json!("event"), Err(&["must be a JSON object"])),
        case("null", s3, Value::Null, Err(&["must be a JSON object"])),
        case(
            "invokingEvent an object, not a string",
            s3,
            {
                let mut e = sample(S3_CHANGE);
                e["invokingEvent"] = serde_json::from_str(e["invokingEvent"].as_str().unwrap()).unwrap();
                e
            },
            Err(&["invokingEvent must be a string"]),
        ),
        case(
            "invokingEvent a number",
            s3,
            sample(S3_CHANGE).tap(|e| e["invokingEvent"] = json!(5)),
            Err(&["invokingEvent must be a string"]),
        ),
        case(
            "invokingEvent a string that is not JSON",
            s3,
            sample(S3_CHANGE)
                .tap(|e| e["invokingEvent"] = json!("{\"messageType\": \"ConfigurationItemChangeNotification\", ")),
            Err(&["invokingEvent is not JSON"]),
        ),
        case("invokingEvent missing", s3, without(S3_CHANGE, "invokingEvent"), Err(&["invokingEvent is missing"])),
        case(
            "invokingEvent null",
            s3,
            sample(S3_CHANGE).tap(|e| e["invokingEvent"] = Value::Null),
            Err(&["invokingEvent is missing"]),
        ),
        case(
            "invokingEvent a JSON string of an array",
            s3,
            sample(S3_CHANGE).tap(|e| e["invokingEvent"] = json!("[1, 2]")),
            Err(&["messageType is missing"]),
        ),
        case("resultToken missing", s3, without(S3_CHANGE, "resultToken"), Err(&["resultToken is missing"])),
        case(
            "resultToken empty",
            s3,
            sample(S3_CHANGE).tap(|e| e["resultToken"] = json!("")),
            Err(&["resultToken is missing"]),
        ),
        case(
            "resultToken a number",
            s3,
            sample(S3_CHANGE).tap(|e| e["resultToken"] = json!(42)),
            Err(&["resultToken must be a string"]),
        ),
        case("accountId missing (change event)", s3, without(S3_CHANGE, "accountId"), Err(&["accountId is missing"])),
        case(
            "accountId a number",
            s3,
            sample(S3_CHANGE).tap(|e| e["accountId"] = json!(123456789012u64)),
            Err(&["accountId must be a string"]),
        ),
        case(
            "configRuleName an object",
            s3,
            sample(S3_CHANGE).tap(|e| e["configRuleName"] = json!({})),
            Err(&["configRuleName must be a string"]),
        ),
        case(
            "eventLeftScope a string",
            s3,
            sample(S3_CHANGE).tap(|e| e["eventLeftScope"] = json!("true")),
            Err(&["eventLeftScope must be true or false"]),
        ),
        case(
            "eventLeftScope null",
            s3,
            sample(S3_CHANGE).tap(|e| e["eventLeftScope"] = Value::Null),
            Err(&["eventLeftScope must be true or false"]),
        ),
        // ---- the invoking event ----
        case(
            "unknown messageType",
            s3,
            with_invoking(S3_CHANGE, |inv| inv["messageType"] = json!("ConfigurationSnapshotDeliveryCompleted")),
            Err(&["unknown messageType", "ConfigurationSnapshotDeliveryCompleted"]),
        ),
        case(
            "messageType missing",
            s3,
            with_invoking(S3_CHANGE, |inv| {
                inv.as_object_mut().unwrap().remove("messageType");
            }),
            Err(&["messageType is missing"]),
        ),
        case(
            "messageType a number",
            s3,
            with_invoking(S3_CHANGE, |inv| inv["messageType"] = json!(1)),
            Err(&["messageType must be a string"]),
        ),
        case(
            "configurationItem missing",
            s3,
            with_invoking(S3_CHANGE, |inv| {
                inv.as_object_mut().unwrap().remove("configurationItem");
            }),
            Err(&["configurationItem is missing or not an object"]),
        ),
        case(
            "configurationItem a string",
            s3,
            with_invoking(S3_CHANGE, |inv| inv["configurationItem"] = json!("{}")),
            Err(&["configurationItem is missing or not an object"]),
        ),
        case(
            "configurationItemCaptureTime a number",
            s3,
            with_item(S3_CHANGE, |i| i["configurationItemCaptureTime"] = json!(1_700_000_000_000u64)),
            Err(&["configurationItemCaptureTime must be a string"]),
        ),
        case(
            "configurationItemCaptureTime not a time",
            s3,
            with_item(S3_CHANGE, |i| i["configurationItemCaptureTime"] = json!("yesterday at noon")),
            Err(&["configurationItemCaptureTime is not an ISO 8601 time", "yesterday"]),
        ),
        case(
            "notificationCreationTime missing (periodic)",
            s3,
            with_invoking(PERIODIC, |inv| {
                inv.as_object_mut().unwrap().remove("notificationCreationTime");
            }),
            Err(&["notificationCreationTime is missing"]),
        ),
        case(
            "notificationCreationTime a number (periodic)",
            s3,
            with_invoking(PERIODIC, |inv| inv["notificationCreationTime"] = json!(0)),
            Err(&["notificationCreationTime must be a string"]),
        ),
        case(
            "configurationItemSummary missing (oversized)",
            s3,
            with_invoking(OVERSIZED, |inv| {
                inv.as_object_mut().unwrap().remove("configurationItemSummary");
            }),
            Err(&["configurationItemSummary is missing or not an object"]),
        ),
        case(
            "summary resourceId a number (oversized)",
            s3,
            with_invoking(OVERSIZED, |inv| inv["configurationItemSummary"]["resourceId"] = json!(7)),
            Err(&["resourceId must be a string"]),
        ),
        case(
            "summary configurationItemStatus missing (oversized)",
            s3,
            with_invoking(OVERSIZED, |inv| {
                inv["configurationItemSummary"].as_object_mut().unwrap().remove("configurationItemStatus");
            }),
            Err(&["configurationItemStatus is missing"]),
        ),
    ]
}
