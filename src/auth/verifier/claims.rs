//! The checks besides the signature: time claims with leeway, issuer and audience, and the
//! identity a verified token gives (the user, the claim headers' values).

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
        let user = match claims.get(&rules.user_claim) {
            None | Some(Value::Null) => return Err(TokenError::MissingUser),
            Some(Value::String(s)) => header_value(s).ok_or(TokenError::BadUser)?,
            Some(_) => return Err(TokenError::BadUser),
        };
        let claim_values = rules
            .claim_names
            .iter()
            .map(|name| match name.as_ref().and_then(|n| claims.get(n)) {
                Some(Value::String(s)) => header_value(s),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => header_value(&v.to_string()),
                _ => None,
            })
            .collect();
        Ok(Identity {
            user,
            claim_values,
            claims,
            exp,
        })
    }
}

/// A value an upstream reads back exactly: printable ASCII, no leading or trailing space
/// (which header parsers would trim, turning `" admin"` into `"admin"`).
fn header_value(s: &str) -> Option<HeaderValue> {
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
