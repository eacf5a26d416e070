//! Claim paths ([`ClaimPath`]): how the config names a claim, top-level or nested.
//!
//! A path is dotted segments into nested JSON objects: `realm_access.roles` is the `roles`
//! member of the `realm_access` object (Keycloak). A segment in double quotes is taken whole, dots
//! and slashes included: `"https://app.example.com/roles"` is one top-level name (Auth0's
//! namespaced claims). A top-level name that contains a dot is found only by quoting it, so
//! `a.b` never means a claim literally named `a.b`.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

/// A claim named in the config: its text as written (for logs and errors) and its segments.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClaimPath {
    text: Arc<str>,
    segments: Box<[Box<str>]>,
}

impl ClaimPath {
    /// Parses `text`: segments separated by `.`, each either bare (no `"`, not empty) or in
    /// double quotes (anything but `"`, not empty).
    pub fn parse(text: &str) -> Result<ClaimPath, String> {
        let mut segments = Vec::new();
        let mut rest = text;
        loop {
            let (segment, after) = if let Some(quoted) = rest.strip_prefix('"') {
                let end = quoted
                    .find('"')
                    .ok_or_else(|| format!("{text:?}: a quoted segment is not closed"))?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = rest.find('.').unwrap_or(rest.len());
                let bare = &rest[..end];
                if bare.contains('"') {
                    return Err(format!(
                        "{text:?}: a quote may only open a segment (write \"a\".\"b.c\")"
                    ));
                }
                (bare, &rest[end..])
            };
            if segment.is_empty() {
                return Err(format!("{text:?}: a claim path segment must not be empty"));
            }
            segments.push(Box::from(segment));
            match after.strip_prefix('.') {
                Some(next) => rest = next,
                None if after.is_empty() => break,
                None => {
                    return Err(format!(
                        "{text:?}: a quoted segment must be followed by '.' or the end"
                    ))
                }
            }
        }
        Ok(ClaimPath {
            text: Arc::from(text),
            segments: segments.into_boxed_slice(),
        })
    }

    /// The claim at this path in `claims`, if every segment but the last names an object.
    pub fn get<'v>(&self, claims: &'v Map<String, Value>) -> Option<&'v Value> {
        let (last, parents) = self.segments.split_last()?;
        let mut object = claims;
        for segment in parents {
            object = claims_object(object.get(&**segment)?)?;
        }
        object.get(&**last)
    }

    /// Puts `value` at this path in `claims`, making the objects on the way (replacing what
    /// is not an object there).
    pub fn insert_into(&self, claims: &mut Map<String, Value>, value: Value) {
        let (last, parents) = self.segments.split_last().expect("a path has a segment");
        let mut object = claims;
        for segment in parents {
            let inner = object
                .entry(segment.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !inner.is_object() {
                *inner = Value::Object(Map::new());
            }
            object = match inner {
                Value::Object(m) => m,
                _ => unreachable!("made an object above"),
            };
        }
        object.insert(last.to_string(), value);
    }

    /// The path as written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The path as written, shared.
    pub fn text(&self) -> &Arc<str> {
        &self.text
    }

    /// True for the top-level claim `name` (one segment).
    pub fn is_top_level(&self, name: &str) -> bool {
        self.segments.len() == 1 && &*self.segments[0] == name
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Box<str>] {
        &self.segments
    }
}

fn claims_object(v: &Value) -> Option<&Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn dotted_paths_walk_nested_objects_and_quotes_keep_dots() {
        let c = claims(json!({
            "sub": "alice",
            "realm_access": {"roles": ["admin", "ops"]},
            "https://app.example.com/roles": ["reader"],
            "a.b": "literal",
            "a": {"b": "nested"},
            "resource_access": {"my.client": {"roles": ["x"]}},
        }));
        let get = |p: &str| ClaimPath::parse(p).unwrap().get(&c).cloned();
        assert_eq!(get("sub"), Some(json!("alice")));
        assert_eq!(get("realm_access.roles"), Some(json!(["admin", "ops"])));
        assert_eq!(
            get("\"https://app.example.com/roles\""),
            Some(json!(["reader"]))
        );
        // A top-level name with a dot is found only quoted.
        assert_eq!(get("a.b"), Some(json!("nested")));
        assert_eq!(get("\"a.b\""), Some(json!("literal")));
        assert_eq!(
            get("resource_access.\"my.client\".roles"),
            Some(json!(["x"]))
        );
        // Through a non-object: nothing.
        assert_eq!(get("sub.x"), None);
        assert_eq!(get("realm_access.roles.0"), None);
        assert_eq!(get("missing.x"), None);
    }

    #[test]
    fn insert_keeps_the_nesting() {
        let mut m = Map::new();
        ClaimPath::parse("realm_access.roles")
            .unwrap()
            .insert_into(&mut m, json!(["a"]));
        ClaimPath::parse("realm_access.x")
            .unwrap()
            .insert_into(&mut m, json!(1));
        ClaimPath::parse("\"https://a/b\"")
            .unwrap()
            .insert_into(&mut m, json!("v"));
        assert_eq!(
            Value::Object(m),
            json!({"realm_access": {"roles": ["a"], "x": 1}, "https://a/b": "v"})
        );
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in [
            "", ".", "a.", ".a", "a..b", "\"\"", "\"a", "a\"b", "\"a\"b", "\"a\".", "a.\"\"",
        ] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        let p = ClaimPath::parse("\"x.y\".z").unwrap();
        assert_eq!(p.segments().len(), 2);
        assert_eq!(p.as_str(), "\"x.y\".z");
        assert!(ClaimPath::parse("scope").unwrap().is_top_level("scope"));
        assert!(!ClaimPath::parse("a.scope").unwrap().is_top_level("scope"));
    }
}
