//! A route's CORS (the Fetch standard's protocol), prepared once per (re)load: which origins,
//! methods and request headers a preflight may ask for, and the fields every answer to a
//! listed origin carries. The rules, in CONTRACT.md's order:
//!
//! 1. a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from a listed
//!    origin asking for listed methods and headers is answered by the gateway (204, no token,
//!    nothing forwarded), with the configured methods and headers; any other preflight gets 403
//!    without CORS fields;
//! 2. every answer on the route carries `Vary: Origin`; one to a listed origin also
//!    `Access-Control-Allow-Origin` (that origin; `*` only for `origins = ["*"]`, which
//!    cannot have credentials), `-Expose-Headers` and `-Allow-Credentials` as configured, the
//!    gateway's own refusals included; the upstream's own `Access-Control-*` fields are removed.

use std::borrow::Cow;

use http::header::{HeaderName, HeaderValue};

use crate::config::CorsRules;
use crate::ops::access::Decorations;

static VARY: HeaderName = HeaderName::from_static("vary");
static ALLOW_ORIGIN: HeaderName = HeaderName::from_static("access-control-allow-origin");
static ALLOW_CREDENTIALS: HeaderName = HeaderName::from_static("access-control-allow-credentials");
static EXPOSE: HeaderName = HeaderName::from_static("access-control-expose-headers");

/// A route's CORS, as the gateway answers it.
#[derive(Debug)]
pub struct Cors {
    /// `origins = ["*"]`.
    any: bool,
    /// Allowed origins, lower case.
    origins: Vec<String>,
    methods: Vec<String>,
    /// Allowed request headers, lower case.
    headers: Vec<HeaderName>,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    credentials: bool,
}

impl Cors {
    /// Prepares `rules`.
    pub fn new(rules: &CorsRules) -> Cors {
        let join = |items: Vec<&str>| {
            HeaderValue::from_str(&items.join(", ")).expect("validated names are header text")
        };
        Cors {
            any: rules.origins.iter().any(|o| o == "*"),
            origins: rules.origins.clone(),
            methods: rules.methods.clone(),
            headers: rules.headers.clone(),
            allow_methods: join(rules.methods.iter().map(String::as_str).collect()),
            allow_headers: join(rules.headers.iter().map(HeaderName::as_str).collect()),
            expose: (!rules.expose.is_empty())
                .then(|| join(rules.expose.iter().map(HeaderName::as_str).collect())),
            max_age: rules.max_age.map(|d| HeaderValue::from(d.as_secs())),
            credentials: rules.credentials,
        }
    }

    /// True when `origin` (an `Origin` value) is listed (`*` lists every origin).
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.any || self.listed(origin)
    }

    /// True when `origin` is named in the list (`*` never counts: cookie tokens).
    pub fn listed(&self, origin: &[u8]) -> bool {
        self.origins
            .iter()
            .any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
    }

    /// What every answer to a request with `origin` (its one `Origin` value, if any) carries.
    pub fn decorations(&self, origin: Option<&[u8]>) -> Decorations {
        let mut fields = vec![(VARY.clone(), HeaderValue::from_static("Origin"))];
        if let Some(origin) = origin.filter(|o| self.allows(o)) {
            let allow = match self.any {
                true => Some(HeaderValue::from_static("*")),
                false => HeaderValue::from_bytes(origin).ok(),
            };
            if let Some(allow) = allow {
                fields.push((ALLOW_ORIGIN.clone(), allow));
                if self.credentials {
                    fields.push((ALLOW_CREDENTIALS.clone(), HeaderValue::from_static("true")));
                }
                if let Some(expose) = &self.expose {
                    fields.push((EXPOSE.clone(), expose.clone()));
                }
            }
        }
        Decorations {
            fields,
            owns_cors: true,
            resource_metadata: None,
            request_id: None,
        }
    }

    /// True when a preflight from `origin` asking for `method` and `headers` (the
    /// `Access-Control-Request-Headers` values) is allowed: the origin listed, the method one
    /// of the configured (exactly: the Fetch standard uppercases only the standard methods),
    /// every header one of the configured (letter case aside).
    pub fn preflight_allowed(&self, origin: &[u8], method: &[u8], headers: &[&[u8]]) -> bool {
        self.allows(origin)
            && self.methods.iter().any(|m| m.as_bytes() == method)
            && headers
                .iter()
                .flat_map(|v| v.split(|&b| b == b','))
                .map(<[u8]>::trim_ascii)
                .filter(|h| !h.is_empty())
                .all(|h| {
                    self.headers
                        .iter()
                        .any(|n| n.as_str().as_bytes().eq_ignore_ascii_case(h))
                })
    }

    /// The fields of the gateway's answer to an allowed preflight, besides the decorations.
    pub fn preflight_fields(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        let text = |v: &HeaderValue| Cow::Owned(v.to_str().unwrap_or_default().to_owned());
        let mut fields = vec![
            (
                Cow::Borrowed("access-control-allow-methods"),
                text(&self.allow_methods),
            ),
            (
                Cow::Borrowed("access-control-allow-headers"),
                text(&self.allow_headers),
            ),
        ];
        if let Some(age) = &self.max_age {
            fields.push((Cow::Borrowed("access-control-max-age"), text(age)));
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors::new(&CorsRules {
            origins: origins.iter().map(|s| s.to_string()).collect(),
            methods: vec!["GET".into(), "POST".into()],
            headers: vec![
                HeaderName::from_static("authorization"),
                HeaderName::from_static("content-type"),
            ],
            expose: vec![HeaderName::from_static("x-request-id")],
            max_age: Some(Duration::from_secs(600)),
            credentials,
        })
    }

    fn field<'d>(d: &'d Decorations, name: &str) -> Option<&'d str> {
        d.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn listed_origins_get_the_fields_others_only_vary() {
        let c = cors(&["https://app.example.com"], true);
        let d = c.decorations(Some(b"https://app.example.com"));
        assert_eq!(field(&d, "vary"), Some("Origin"));
        assert_eq!(
            field(&d, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(field(&d, "access-control-allow-credentials"), Some("true"));
        assert_eq!(
            field(&d, "access-control-expose-headers"),
            Some("x-request-id")
        );
        let d = c.decorations(Some(b"https://evil.example"));
        assert_eq!(d.fields.len(), 1);
        assert_eq!(c.decorations(None).fields.len(), 1);
        let star = cors(&["*"], false);
        let d = star.decorations(Some(b"https://anyone.example"));
        assert_eq!(field(&d, "access-control-allow-origin"), Some("*"));
        assert_eq!(field(&d, "access-control-allow-credentials"), None);
        assert!(!star.listed(b"https://anyone.example"));
    }

    #[test]
    fn preflights_must_ask_for_listed_methods_and_headers() {
        let c = cors(&["https://app.example.com"], false);
        let o = b"https://app.example.com";
        assert!(c.preflight_allowed(o, b"GET", &[]));
        assert!(c.preflight_allowed(o, b"POST", &[b"Authorization, content-type"]));
        assert!(!c.preflight_allowed(o, b"DELETE", &[]));
        assert!(!c.preflight_allowed(o, b"post", &[]));
        assert!(!c.preflight_allowed(o, b"GET", &[b"authorization, x-other"]));
        assert!(!c.preflight_allowed(b"https://evil.example", b"GET", &[]));
    }
}
