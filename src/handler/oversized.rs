//! Oversized configuration items: Config sends a summary instead of the item, which is then
//! read from Config's history (the newest version captured at or before the summary). Reads
//! only.

use serde_json::Value;

use crate::aws::{fail, Aws};
use crate::error::Error;
use crate::event::ItemSummary;

/// Fetches an oversized item: the newest version captured at or before the summary's
/// capture time. A page may come back empty with a nextToken; keep reading.
pub(super) async fn fetch_item(aws: &Aws, s: &ItemSummary) -> Result<Value, Error> {
    let later = aws_smithy_types::DateTime::from_millis(s.captured.timestamp_millis());
    let mut token = None;
    for _ in 0..20 {
        let out = aws
            .config_service()
            .get_resource_config_history()
            .resource_type(aws_sdk_config::types::ResourceType::from(s.resource_type.as_str()))
            .resource_id(&s.resource_id)
            .later_time(later)
            .limit(1)
            .set_next_token(token)
            .send()
            .await
            .map_err(fail("config:GetResourceConfigHistory"))?;
        if let Some(ci) = out.configuration_items().first() {
            return Ok(item_to_json(ci));
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Err(Error::Aws {
        operation: "config:GetResourceConfigHistory",
        transient: true,
        message: format!("no configuration item for {} {} at or before {}", s.resource_type, s.resource_id, s.captured),
    })
}

/// The SDK's item in the JSON shape of invoking events, so one extractor reads both.
fn item_to_json(ci: &aws_sdk_config::types::ConfigurationItem) -> Value {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_string()));
    let supplementary: serde_json::Map<String, Value> = ci
        .supplementary_configuration()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), parse(v))).collect())
        .unwrap_or_default();
    serde_json::json!({
        "resourceType": ci.resource_type().map(|t| t.as_str()),
        "resourceId": ci.resource_id(),
        "resourceName": ci.resource_name(),
        "awsRegion": ci.aws_region(),
        "awsAccountId": ci.account_id(),
        "configurationItemStatus": ci.configuration_item_status().map(|s| s.as_str()),
        "configuration": ci.configuration().map(parse),
        "supplementaryConfiguration": supplementary,
    })
}
