//! A KMS key's tags, every page: the one reader of ListResourceTags's pagination for the
//! evaluators, the gate, the rotation and the runbook. Callers map the SDK error into their
//! own error (a finding for the evaluators, a failure elsewhere); nothing here judges.

use std::collections::BTreeMap;

use aws_sdk_kms::operation::list_resource_tags::ListResourceTagsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

/// Every tag of `key` (id or ARN; ListResourceTags does not take an alias), following
/// `NextMarker` until KMS says the list is complete.
pub async fn key_tags(
    kms: &aws_sdk_kms::Client,
    key: &str,
) -> Result<BTreeMap<String, String>, SdkError<ListResourceTagsError, HttpResponse>> {
    let mut tags = BTreeMap::new();
    let mut marker = None;
    loop {
        let out = kms.list_resource_tags().key_id(key).set_marker(marker).send().await?;
        tags.extend(out.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())));
        marker = out.next_marker().map(str::to_string);
        if !out.truncated() || marker.is_none() {
            return Ok(tags);
        }
    }
}
