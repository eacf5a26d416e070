//! `[telemetry]`: where spans go, how many, under which service name.

use super::Problems;
use crate::config::raw::RawTelemetry;
use crate::config::{OtlpProtocol, TelemetryConfig};

pub(super) fn validate_telemetry(raw: RawTelemetry, p: &mut Problems) -> TelemetryConfig {
    let otlp_endpoint = raw.otlp_endpoint.filter(|url| match endpoint_problem(url) {
        None => true,
        Some(why) => {
            p.add("telemetry.otlp_endpoint", why);
            false
        }
    });
    let protocol = raw.protocol.and_then(|name| match protocol(&name) {
        Ok(proto) => Some(proto),
        Err(why) => {
            p.add("telemetry.protocol", why);
            None
        }
    });
    let sample_ratio = raw.sample_ratio.filter(|r| {
        let ok = (0.0..=1.0).contains(r);
        if !ok {
            p.add(
                "telemetry.sample_ratio",
                format!("{r} is not between 0 and 1 (the share of new traces sampled)"),
            );
        }
        ok
    });
    let service_name = raw.service_name.filter(|name| {
        let ok = !name.trim().is_empty();
        if !ok {
            p.add("telemetry.service_name", "must not be empty");
        }
        ok
    });
    TelemetryConfig {
        otlp_endpoint,
        protocol,
        sample_ratio,
        service_name,
        record_user: raw.record_user.unwrap_or(false),
    }
}

/// Why `url` cannot be a collector's endpoint, if it cannot.
pub(crate) fn endpoint_problem(url: &str) -> Option<String> {
    // Never echoed whole: a URL may carry a credential (user:password@, ?api_key=).
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    let shown = if url.contains('@') {
        format!("{scheme}://...")
    } else {
        url.split(['?', '#']).next().unwrap_or("").to_owned()
    };
    if url.contains('#') {
        return Some(format!(
            "{shown:?} is not a collector URL: it has a fragment (#)"
        ));
    }
    match url.parse::<http::Uri>() {
        _ if url.contains('@') => Some(format!(
            "{shown:?}: a user or password in the collector URL is not supported; send credentials with OTEL_EXPORTER_OTLP_HEADERS"
        )),
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty())
                && uri.query().is_none() =>
        {
            None
        }
        _ => Some(format!(
            "{shown:?} is not a collector URL; write http://HOST:PORT (4318 for OTLP over HTTP, 4317 for gRPC) or https://..., without a query"
        )),
    }
}

/// `http` (also `http/protobuf`, the `OTEL_EXPORTER_OTLP_PROTOCOL` spelling) or `grpc`.
pub(crate) fn protocol(name: &str) -> Result<OtlpProtocol, String> {
    match name {
        "http" | "http/protobuf" => Ok(OtlpProtocol::Http),
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/json" => Err(
            "\"http/json\" is not supported; use \"http\" (OTLP/HTTP protobuf) or \"grpc\"".into(),
        ),
        other => Err(format!("{other:?} is not one of: http | grpc")),
    }
}
