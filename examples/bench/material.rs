//! moto's DescribeKey names no current key material (docs/emulators.md); AWS always does, and
//! a warm rule Lambda keeps a key's tags and rotations only while DescribeKey names the same
//! material (`key::cache`). The organization rules are therefore measured with the id AWS
//! would give: one per key, derived from the key id, since no key rotates during the run.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

#[derive(Debug, Default)]
pub(crate) struct MaterialIds;

impl Intercept for MaterialIds {
    fn name(&self) -> &'static str {
        "MaterialIds"
    }

    fn modify_before_attempt_completion(
        &self,
        ctx: &mut FinalizerInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(out)) = ctx.output_or_error_mut() else { return Ok(()) };
        let Some(o) = out.downcast_mut::<aws_sdk_kms::operation::describe_key::DescribeKeyOutput>() else {
            return Ok(());
        };
        if let Some(m) = o.key_metadata.as_mut() {
            if m.current_key_material_id.is_none() {
                m.current_key_material_id = Some(kms_rotation_guard::audit::sha256_hex(m.key_id.as_bytes()));
            }
        }
        Ok(())
    }
}
