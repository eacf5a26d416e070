//! The checks besides the signature: time claims with leeway, lifetime, issuer and audience,
//! and the identity a verified token gives (the user, the claim headers' values, rendered as
//! CONTRACT.md's "Claims, token sources, browsers" says).

use std::sync::Arc;

use http::header::HeaderValue;
use serde_json::{Map, Value};

use super::{Identity, Rules, TokenError, Verifier};

impl Verifier {
    pub(super) fn check_claims(
        &self,
        rules: &Rules,
        claims: Map<String, Value>,
        now: f64,
    ) -> Result<Identity, TokenError> {
        let leeway = self.shape.leeway;
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(TokenError::BadTimeClaim),
            Some(_) => Err(TokenError::BadTimeClaim),
        };
        let exp = time("exp")?.ok_or(TokenError::MissingExp)?;
        let nbf = time("nbf")?;
        time("iat")?;
        // RFC 7519 §4.1.4: the token must not be accepted "on or after" exp.
        if now >= exp + leeway {
            return Err(TokenError::Expired);
        }
        if nbf.is_some_and(|nbf| now + leeway < nbf) {
            return Err(TokenError::NotYetValid);
        }
        // A token valid for ever (`exp` = 1e300) is refused when a lifetime bound is set. The
        // verified-token cache keeps it right: `exp - now` only shrinks.
        if self.shape.max_lifetime.is_some_and(|max| exp - now > max) {
            return Err(TokenError::LifetimeTooLong);
        }
        if let Some(want) = &rules.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(want.as_str()) {
                return Err(TokenError::WrongIssuer);
            }
        }
        if !rules.audience.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => rules.audience.iter().any(|w| w == a),
                Some(Value::Array(list)) => list.iter().any(|a| {
                    a.as_str()
                        .is_some_and(|a| rules.audience.iter().any(|w| w == a))
                }),
                _ => false,
            };
            if !ok {
                return Err(TokenError::WrongAudience);
            }
        }
        let user = match rules.user_claim.get(&claims) {
            None | Some(Value::Null) => return Err(TokenError::MissingUser(rules.user_name)),
            Some(Value::String(s)) => user_value(s).ok_or(TokenError::BadUser(rules.user_name))?,
            Some(_) => return Err(TokenError::BadUser(rules.user_name)),
        };
        let mut left_out = Vec::new();
        let claim_values = rules
            .claim_names
            .iter()
            .map(|path| {
                let path = path.as_ref()?;
                match render(path.get(&claims)?, &self.shape.separator) {
                    Ok(v) => v,
                    Err(why) => {
                        left_out.push((path.text().clone(), why));
                        None
                    }
                }
            })
            .collect();
        Ok(Identity {
            user,
            claim_values,
            issuer: rules.issuer_value.clone(),
            left_out,
            claims,
            assertions: Default::default(),
            exp,
        })
    }
}

/// The user claim as a header value, as before claim paths: a non-empty string of printable
/// ASCII (no control characters; upstream frameworks differ on how they decode other bytes, and
/// the user is what they authorize on), without leading or trailing spaces (which header
/// parsers trim, turning `" admin"` into `"admin"`).
fn user_value(s: &str) -> Option<HeaderValue> {
    let ok = !s.is_empty()
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !s.starts_with(' ')
        && !s.ends_with(' ');
    if ok {
        HeaderValue::from_str(s).ok()
    } else {
        None
    }
}

/// C0 (tab included) or DEL: never in a value the gateway writes.
fn has_control(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// A claim header's value: `Ok(None)` for `null` (the header is left out), `Err(reason)` for a
/// value that cannot be passed without ambiguity (also left out, and logged).
///
/// * strings as they are (non-ASCII as UTF-8), unless they hold a control character or start
///   or end with a space (which the upstream's parser would trim away);
/// * numbers and booleans as their JSON text;
/// * arrays of those joined with `separator`; an empty array is an empty value; an element
///   containing the separator, or any nested array, object or `null`, is ambiguous;
/// * an object is ambiguous.
pub(crate) fn render(value: &Value, separator: &str) -> Result<Option<HeaderValue>, &'static str> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::Object(_) => return Err("an object"),
        Value::Array(items) => {
            let mut joined = String::new();
            for (i, item) in items.iter().enumerate() {
                let one = scalar(item)
                    .ok_or("an array holding something else than strings, numbers or booleans")?;
                if one.contains(separator) {
                    return Err("an array element contains the separator");
                }
                if i > 0 {
                    joined.push_str(separator);
                }
                joined.push_str(&one);
            }
            joined
        }
        v => scalar(v).unwrap_or_default().into_owned(),
    };
    if has_control(&text) {
        return Err("a control character");
    }
    if text.starts_with(' ') || text.ends_with(' ') {
        return Err("a leading or trailing space");
    }
    HeaderValue::from_bytes(text.as_bytes())
        .map(Some)
        .map_err(|_| "not a header value")
}

/// A string, number or boolean as text.
fn scalar(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string().into()),
        _ => None,
    }
}

/// The claims left out of one identity, as (claim path, why), for the log.
pub type LeftOut = Vec<(Arc<str>, &'static str)>;

#[cfg(test)]
mod tests {
    use super::render;
    use serde_json::json;

    fn r(v: serde_json::Value) -> Result<Option<String>, &'static str> {
        render(&v, ",").map(|o| o.map(|h| String::from_utf8(h.as_bytes().to_vec()).unwrap()))
    }

    #[test]
    fn values_render_as_the_contract_says() {
        assert_eq!(r(json!("admin")), Ok(Some("admin".into())));
        assert_eq!(r(json!("José")), Ok(Some("José".into())));
        assert_eq!(r(json!("")), Ok(Some("".into())));
        assert_eq!(r(json!(42)), Ok(Some("42".into())));
        assert_eq!(r(json!(-1.5)), Ok(Some("-1.5".into())));
        assert_eq!(r(json!(true)), Ok(Some("true".into())));
        assert_eq!(r(json!(["admin", "ops"])), Ok(Some("admin,ops".into())));
        assert_eq!(r(json!([1, false, "x"])), Ok(Some("1,false,x".into())));
        assert_eq!(r(json!([])), Ok(Some("".into())));
        assert_eq!(r(json!(null)), Ok(None));
        for bad in [
            json!({"a": 1}),
            json!([["a"]]),
            json!([{"a": 1}]),
            json!([null]),
            json!(["a,b", "c"]),
            json!("a\tb"),
            json!("a\r\nX-Auth-User: root"),
            json!("a\u{7f}"),
            json!(["ok", "bad\n"]),
            json!(" admin"),
        ] {
            assert!(r(bad.clone()).is_err(), "{bad} rendered");
        }
        assert_eq!(
            render(&json!(["a,b", "c"]), " ").map(|v| v.unwrap()),
            Ok(http::HeaderValue::from_static("a,b c"))
        );
    }
}
