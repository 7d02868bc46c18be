//! Log setup shared by the CLI and the Lambdas.
//!
//! Whatever `RUST_LOG` asks for, the crates that move bytes for the SDK (HTTP client,
//! orchestrator, signer, TLS) never log below DEBUG: at TRACE they write whole requests and
//! responses, and those carry import tokens, wrapped key material and session tokens
//! (tests/secrets.rs runs a rotation under such settings and searches the logs). A more
//! specific directive such as `aws_smithy_runtime::client::orchestrator=trace` cannot lift
//! the cap, because it is a second filter, not a directive of the first.

use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Target prefixes of crates that may log wire bytes or credentials at TRACE.
const WIRE_CRATES: [&str; 9] =
    ["aws_smithy_", "aws_sigv4", "aws_runtime", "aws_config", "hyper", "hyper_util", "h2", "rustls", "tokio_rustls"];

fn is_wire(target: &str) -> bool {
    WIRE_CRATES.iter().any(|c| target == *c || target.starts_with(c) || target.starts_with(&format!("{c}::")))
}

/// lambda_runtime's panic layer logs every handler error a second time, as its Debug form,
/// under this target, although nothing panicked. Its real panic events carry an `error`
/// field; those stay (and the panic hook prints the panic on stderr in any case).
const RUNTIME_PANIC_LAYER: &str = "lambda_runtime::layers::panic";

/// Whether an event or span may be logged at all, whatever the level filter says.
fn allowed(m: &Metadata<'_>) -> bool {
    if is_wire(m.target()) && *m.level() > Level::DEBUG {
        return false;
    }
    if m.target() == RUNTIME_PANIC_LAYER && m.is_event() && m.fields().field("error").is_none() {
        return false;
    }
    true
}

/// The level filter: `RUST_LOG` if set, else `default`; then the wire cap on top.
pub fn filter<S>(default: &str) -> impl Filter<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let spec = std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| default.to_string());
    filter_spec(&spec, default)
}

/// [`filter`] for an explicit directive string (tests use it; `fallback` if it is invalid).
pub fn filter_spec<S>(spec: &str, fallback: &str) -> impl Filter<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let env = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new(fallback));
    env.and(filter_fn(allowed))
}

/// Human-readable logs on stderr (the CLI), coloured only on a terminal.
pub fn init_cli(default: &str) {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_filter(filter(default));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// JSON lines on stdout in Lambda's JSON log format (see [`LambdaJson`]).
pub fn init_json() {
    let _ = tracing_subscriber::registry().with(json_layer(std::io::stdout, filter("info"))).try_init();
}

/// The Lambda log layer with any writer and filter (tests capture it).
pub fn json_layer<S, W, F>(writer: W, filter: F) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    F: Filter<S> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(LambdaJson)
        .with_writer(writer)
        .with_filter(filter)
}

/// One JSON object per line with the keys of Lambda's JSON log format at the top level:
/// `timestamp` (RFC 3339, UTC), `level`, `message`, `requestId` (from lambda_runtime's
/// invocation span), then the event's own fields, so Logs Insights can filter on them.
pub struct LambdaJson;

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        // Lambda's keys first, in its order (serde_json's Map would sort them).
        let mut line = Map::new();
        line.insert("timestamp".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true).into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("message".into(), fields.message.take().unwrap_or_default().into());
        if let Some(id) = request_id(ctx) {
            line.insert("requestId".into(), id.into());
        }
        line.insert("target".into(), meta.target().into());
        let mut out = String::from("{");
        let mut put = |k: &str, v: &Value| {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&Value::from(k).to_string());
            out.push(':');
            out.push_str(&v.to_string());
        };
        for k in ["timestamp", "level", "message", "requestId", "target"] {
            if let Some(v) = line.get(k) {
                put(k, v);
            }
        }
        for (k, v) in &fields.rest {
            if !line.contains_key(k) {
                put(k, v);
            }
        }
        out.push('}');
        writeln!(writer, "{out}")
    }
}

/// The `requestId` field of the innermost span that has one (lambda_runtime's
/// "Lambda runtime invoke" span), as the JSON field formatter stored it.
fn request_id<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    ctx.event_scope()?.find_map(|span| {
        let ext = span.extensions();
        let stored = ext.get::<FormattedFields<N>>()?;
        let v: Value = serde_json::from_str(stored.as_str()).ok()?;
        v.get("requestId").and_then(Value::as_str).map(str::to_string)
    })
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: Vec<(String, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, v: Value) {
        if field.name() == "message" {
            self.message = Some(match v {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.rest.push((field.name().to_string(), v));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(spec: &str, emit: impl FnOnce()) -> Vec<Value> {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::registry().with(json_layer(move || w.clone(), filter_spec(spec, "info")));
        tracing::subscriber::with_default(sub, emit);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn wire_crates_stay_at_debug_whatever_the_directive() {
        for spec in [
            "trace",
            "aws_smithy_runtime::client::orchestrator=trace",
            "aws_sigv4=trace,hyper_util=trace,aws_smithy_runtime=trace",
        ] {
            let out = lines(spec, || {
                tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "transmitting request");
                tracing::trace!(target: "aws_sigv4::http_request::sign", "signing request");
                tracing::trace!(target: "hyper_util::client", "wire bytes");
                tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "beginning attempt #1");
            });
            let msgs: Vec<_> = out.iter().map(|l| l["message"].as_str().unwrap().to_string()).collect();
            assert_eq!(msgs, ["beginning attempt #1"], "{spec}");
        }
        // The cap only lowers: WARN stays WARN.
        let out = lines("warn", || tracing::debug!(target: "hyper", "x"));
        assert!(out.is_empty());
        // Our own TRACE passes.
        let out = lines("trace", || tracing::trace!(target: "kms_rotation_guard::rotation", "ours"));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn lines_have_lambdas_top_level_keys_and_the_request_id() {
        let out = lines("info", || {
            let span = tracing::info_span!("Lambda runtime invoke", requestId = "req-1");
            let _g = span.enter();
            tracing::error!(errorType = "MalformedEvent", "bad event");
        });
        assert_eq!(out.len(), 1);
        let l = &out[0];
        assert_eq!(l["level"], "ERROR");
        assert_eq!(l["message"], "bad event");
        assert_eq!(l["requestId"], "req-1");
        assert_eq!(l["errorType"], "MalformedEvent");
        assert!(chrono::DateTime::parse_from_rfc3339(l["timestamp"].as_str().unwrap()).is_ok(), "{l}");
    }

    #[test]
    fn the_runtime_panic_layer_repeats_no_handler_error() {
        let out = lines("info", || {
            tracing::error!(target: "lambda_runtime::layers::panic", "Diagnostic {{ error_type: \"X\" }}");
            let error = "boom";
            tracing::error!(target: "lambda_runtime::layers::panic", ?error, "user handler panicked");
        });
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["message"], "user handler panicked");
    }
}
