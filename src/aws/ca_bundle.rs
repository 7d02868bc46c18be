//! The TLS roots of a cold start: one system CA bundle file instead of every certificate
//! directory. Changes what is loaded, never what is trusted.

/// System CA bundles, one file each: Amazon Linux (provided.al2023, the RHEL layout) first,
/// then Debian/Ubuntu.
const CA_BUNDLES: [&str; 3] = [
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/certs/ca-certificates.crt",
];

/// The CA bundle a Lambda should trust, unless the operator chose one: `None` when
/// `SSL_CERT_FILE` or `SSL_CERT_DIR` is set, or no known bundle exists.
pub fn single_ca_bundle(var: impl Fn(&str) -> Option<String>, exists: impl Fn(&str) -> bool) -> Option<&'static str> {
    if var("SSL_CERT_FILE").is_some() || var("SSL_CERT_DIR").is_some() {
        return None;
    }
    CA_BUNDLES.into_iter().find(|p| exists(p))
}

/// Cold start: without SSL_CERT_FILE the SDK's rustls loads the system bundle *and* every
/// file of the certificate directories (on Debian ~300 files; on provided.al2023 the
/// bundle again through /etc/ssl/certs and /etc/pki/tls/certs), before the first poll of
/// the Runtime API. Pointing it at the one bundle file trusts the same roots for less than
/// half the work (scripts/bench prints both). TLS verification is unchanged. Call it
/// before any thread starts (the Lambda binaries run a current-thread runtime).
pub fn prefer_single_ca_bundle() {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(bundle) = single_ca_bundle(var, |p| std::path::Path::new(p).is_file()) {
        std::env::set_var("SSL_CERT_FILE", bundle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_single_bundle_is_used_only_when_the_operator_chose_none() {
        let none = |_: &str| None;
        let all = |_: &str| true;
        assert_eq!(single_ca_bundle(none, all), Some("/etc/pki/tls/certs/ca-bundle.crt"));
        let debian = |p: &str| p == "/etc/ssl/certs/ca-certificates.crt";
        assert_eq!(single_ca_bundle(none, debian), Some("/etc/ssl/certs/ca-certificates.crt"));
        assert_eq!(single_ca_bundle(none, |_: &str| false), None);
        for set in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
            assert_eq!(single_ca_bundle(|k: &str| (k == set).then(|| "/x".to_string()), all), None, "{set}");
        }
    }
}
