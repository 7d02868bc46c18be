//! Log setup shared by the CLI and the Lambdas.
//!
//! Whatever level is asked for, the HTTP stack below the SDK is capped at DEBUG: at TRACE
//! it can write raw request and response bytes, and those carry import tokens and wrapped
//! key material (tests/secrets.rs runs a rotation at TRACE and searches the logs).

use tracing_subscriber::EnvFilter;

/// Crates that may log wire bytes at TRACE.
const WIRE_CRATES: [&str; 6] =
    ["aws_smithy_runtime", "aws_smithy_http_client", "aws_smithy_runtime_api", "hyper", "hyper_util", "h2"];

/// `RUST_LOG` if set, else `default`; wire-level crates never below DEBUG. The cap only
/// lowers: a request for WARN leaves them at WARN.
pub fn filter(default: &str) -> EnvFilter {
    let spec = std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| default.to_string());
    let mut f = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(default));
    if spec.to_ascii_lowercase().contains("trace") {
        for c in WIRE_CRATES {
            f = f.add_directive(format!("{c}=debug").parse().expect("static directive"));
        }
    }
    f
}

/// Human-readable logs on stderr (the CLI).
pub fn init_cli(default: &str) {
    let _ = tracing_subscriber::fmt().with_env_filter(filter(default)).with_writer(std::io::stderr).try_init();
}

/// JSON lines (Lambda's structured logging).
pub fn init_json() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter("info"))
        .with_current_span(false)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_cap_lowers_trace_and_never_raises_warn() {
        let warn = filter("warn").to_string();
        assert!(!warn.contains("hyper=debug"), "{warn}");
        let trace = filter("trace").to_string();
        assert!(trace.contains("hyper=debug") && trace.contains("aws_smithy_runtime=debug"), "{trace}");
    }
}
