//! The route table: which upstream a request goes to and what authentication it needs.
//!
//! Matching is done on the *normalized* path (see [`crate::wire::uri`]), by whole segments: `/api`
//! matches `/api` and `/api/x`, never `/apix`. Routes with a `host` that equals the request's host
//! (case-insensitive, port ignored) are tried first, then routes without a `host`; within each
//! group the longest matching prefix wins.

use std::collections::HashMap;
use std::sync::Arc;

use http::Uri;
use serde_json::Value;

use super::cors::Cors;
use crate::config::{AuthMode, ClaimPath, ClaimValue, CorsConfig, Requirement, RouteConfig};

/// True when `claim` equals `want` (same JSON type and value), or is an array that contains
/// it; with `words` (the `scope` and `scp` claims), a string claim is a space-separated list
/// of words (RFC 8693 §4.2, RFC 9068 §2.2.3, Entra's `scp`) and each word is a value.
pub fn satisfies(want: &ClaimValue, claim: &Value, words: bool) -> bool {
    let scalar = |v: &Value| match (want, v) {
        (ClaimValue::String(want), Value::String(got)) if words => {
            got.split(' ').any(|w| w == want)
        }
        (ClaimValue::String(want), Value::String(got)) => want == got,
        (ClaimValue::Bool(want), Value::Bool(got)) => want == got,
        (ClaimValue::Integer(want), Value::Number(got)) => got.as_i64() == Some(*want),
        _ => false,
    };
    match claim {
        Value::Array(items) => items.iter().any(scalar),
        v => scalar(v),
    }
}

/// True for the claims whose string form is a space-separated list: `scope` and `scp`.
pub fn is_scope(claim: &ClaimPath) -> bool {
    claim.is_top_level("scope") || claim.is_top_level("scp")
}

/// True when `claims` meet `req`: any one of its values.
fn meets(req: &Requirement, claims: &serde_json::Map<String, Value>) -> bool {
    let words = is_scope(&req.claim);
    req.claim
        .get(claims)
        .is_some_and(|v| req.values.iter().any(|want| satisfies(want, v, words)))
}

/// How a route does CORS.
#[derive(Debug, Clone)]
pub enum RouteCors {
    /// The gateway answers preflights and writes the fields.
    Gateway(Arc<Cors>),
    /// Preflights go to the upstream without a token; CORS is the upstream's.
    Upstream,
}

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the config (`[[route]]` order, among the valid ones): indexes per-route state.
    pub id: usize,
    /// A stable name for logs and metrics: host (if any) followed by the path prefix.
    pub name: Arc<str>,
    /// Normalized path prefix, without a trailing `/` (except the root `/`).
    pub path: String,
    /// Lower-case host without port, if the route is host-specific.
    pub host: Option<String>,
    /// `scheme://authority` of the upstream; `None` for a route only forward-auth checks reach.
    pub upstream: Option<Uri>,
    /// Token policy.
    pub auth: AuthMode,
    /// Claims a token must carry on this route, all of them.
    pub require: Vec<Requirement>,
    /// The query parameter this route also takes a token from; never forwarded.
    pub query_token: Option<Box<str>>,
    /// CORS on this route.
    pub cors: Option<RouteCors>,
    /// The route's RFC 9728 metadata URL, for its 401 challenges.
    pub resource_metadata: Option<Arc<str>>,
    /// Largest request body in bytes (`None`: no limit).
    pub max_body: Option<u64>,
    /// Upgrade protocols tunnelled (lower case).
    pub upgrades: Vec<String>,
}

impl Route {
    /// The route for `config`, the `id`-th one.
    pub fn new(id: usize, config: &RouteConfig) -> Route {
        Route {
            id,
            name: config.name().into(),
            path: config.path.clone(),
            host: config.host.clone(),
            upstream: config.upstream.clone(),
            auth: config.auth,
            require: config.require.clone(),
            query_token: config.query_token.as_deref().map(Box::from),
            cors: config.cors.as_ref().map(|c| match c {
                CorsConfig::Gateway(rules) => RouteCors::Gateway(Arc::new(Cors::new(rules))),
                CorsConfig::Upstream => RouteCors::Upstream,
            }),
            resource_metadata: config
                .resource_metadata
                .as_ref()
                .map(|m| Arc::from(m.url())),
            max_body: config.max_body,
            upgrades: config.upgrades.clone(),
        }
    }

    /// The first `require` the token does not meet, if any.
    pub fn unmet_requirement(
        &self,
        claims: &serde_json::Map<String, Value>,
    ) -> Option<&Requirement> {
        self.require.iter().find(|req| !meets(req, claims))
    }

    fn matches(&self, path: &str) -> bool {
        let prefix = self.path.as_str();
        prefix == "/"
            || (path.starts_with(prefix)
                && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
    }
}

/// The routes of one host (or of no host), indexed by the first path segment, since a
/// whole-segment prefix match needs the same first segment: a lookup scans one bucket (longest
/// prefix first) and then the root route, not the whole table.
#[derive(Debug, Clone, Default)]
struct Group {
    by_segment: HashMap<String, Vec<Route>>,
    /// The `/` route, if any.
    root: Option<Route>,
}

impl Group {
    fn insert(&mut self, route: Route) {
        match first_segment(&route.path) {
            "" => self.root = Some(route),
            seg => self
                .by_segment
                .entry(seg.to_owned())
                .or_default()
                .push(route),
        }
    }

    fn sort(&mut self) {
        for routes in self.by_segment.values_mut() {
            routes.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        }
    }

    fn select(&self, path: &str) -> Option<&Route> {
        if self.by_segment.is_empty() {
            // A sidecar's usual table: `/` alone, no hashing needed.
            return self.root.as_ref();
        }
        self.by_segment
            .get(first_segment(path))
            .and_then(|routes| routes.iter().find(|r| r.matches(path)))
            .or(self.root.as_ref())
    }

    fn iter(&self) -> impl Iterator<Item = &Route> {
        self.by_segment.values().flatten().chain(self.root.iter())
    }
}

/// `/api/v1` -> `api`; `/` -> ``.
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

/// All routes, grouped by host.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    by_host: HashMap<String, Group>,
    any_host: Group,
}

impl RouteTable {
    /// The table of a config's routes (validated, see [`crate::config`]); a route's id is its
    /// position.
    pub fn build(routes: &[RouteConfig]) -> Self {
        RouteTable::new(
            routes
                .iter()
                .enumerate()
                .map(|(id, r)| Route::new(id, r))
                .collect(),
        )
    }

    /// Builds the table.
    pub fn new(routes: Vec<Route>) -> Self {
        let mut table = RouteTable::default();
        for r in routes {
            match r.host.clone() {
                Some(h) => table.by_host.entry(h).or_default().insert(r),
                None => table.any_host.insert(r),
            }
        }
        table.by_host.values_mut().for_each(Group::sort);
        table.any_host.sort();
        table
    }

    /// Every route, host-specific ones first.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.by_host
            .values()
            .flat_map(Group::iter)
            .chain(self.any_host.iter())
    }

    /// True when some route has a `host` (otherwise the request's host need not be looked at).
    pub fn has_host_routes(&self) -> bool {
        !self.by_host.is_empty()
    }

    /// Picks the route for a normalized host (see [`crate::wire::uri::normalize_host`]) and normalized path.
    pub fn select(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        host.and_then(|h| self.by_host.get(h))
            .and_then(|group| group.select(path))
            .or_else(|| self.any_host.select(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, path: &str) -> Route {
        Route {
            id: 0,
            name: format!("{}{}", host.unwrap_or(""), path).into(),
            path: path.into(),
            host: host.map(Into::into),
            upstream: Some("http://127.0.0.1:1".parse().unwrap()),
            auth: AuthMode::Required,
            require: vec![],
            query_token: None,
            cors: None,
            resource_metadata: None,
            max_body: None,
            upgrades: vec![],
        }
    }

    fn table() -> RouteTable {
        RouteTable::new(vec![
            route(None, "/"),
            route(None, "/api"),
            route(None, "/api/admin"),
            route(Some("a.example.com"), "/"),
            route(Some("a.example.com"), "/api"),
        ])
    }

    fn pick(host: Option<&str>, path: &str) -> Option<String> {
        table().select(host, path).map(|r| r.name.to_string())
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        assert_eq!(pick(None, "/api").as_deref(), Some("/api"));
        assert_eq!(pick(None, "/api/x").as_deref(), Some("/api"));
        assert_eq!(pick(None, "/apix").as_deref(), Some("/"));
        assert_eq!(
            pick(None, "/api/admin/users").as_deref(),
            Some("/api/admin")
        );
        assert_eq!(pick(None, "/api/administrator").as_deref(), Some("/api"));
    }

    #[test]
    fn host_routes_come_first_then_fall_back() {
        assert_eq!(
            pick(Some("a.example.com"), "/api/admin").as_deref(),
            Some("a.example.com/api")
        );
        assert_eq!(
            pick(Some("a.example.com"), "/x").as_deref(),
            Some("a.example.com/")
        );
        assert_eq!(
            pick(Some("b.example.com"), "/api/admin").as_deref(),
            Some("/api/admin")
        );
    }

    #[test]
    fn no_match_is_none() {
        let t = RouteTable::new(vec![route(None, "/api")]);
        assert!(t.select(None, "/").is_none());
        assert!(t.select(None, "/apiary").is_none());
    }

    #[test]
    fn require_matches_strings_arrays_and_scalars() {
        let want = ClaimValue::String("admin".into());
        let j = |v| -> Value { v };
        assert!(satisfies(&want, &j(serde_json::json!("admin")), false));
        assert!(satisfies(
            &want,
            &j(serde_json::json!(["user", "admin"])),
            false
        ));
        assert!(!satisfies(&want, &j(serde_json::json!("Admin")), false));
        assert!(!satisfies(
            &want,
            &j(serde_json::json!({"admin": true})),
            false
        ));
        assert!(satisfies(
            &ClaimValue::Bool(true),
            &serde_json::json!(true),
            false
        ));
        assert!(!satisfies(
            &ClaimValue::Bool(true),
            &serde_json::json!("true"),
            false
        ));
        assert!(satisfies(
            &ClaimValue::Integer(3),
            &serde_json::json!([1, 3]),
            false
        ));
        assert!(!satisfies(
            &ClaimValue::Integer(3),
            &serde_json::json!(3.0),
            false
        ));
        // Words only for scope and scp.
        assert!(!satisfies(&want, &serde_json::json!("user admin"), false));
        assert!(satisfies(&want, &serde_json::json!("user admin"), true));
        assert!(!satisfies(&want, &serde_json::json!("user admins"), true));
        assert!(!satisfies(&want, &serde_json::json!("useradmin"), true));
    }

    #[test]
    fn a_route_needs_all_of_its_requirements_and_any_of_each_list() {
        let parse = |s: &str| ClaimPath::parse(s).unwrap();
        let mut r = route(None, "/");
        r.require = vec![
            Requirement {
                claim: parse("realm_access.roles"),
                values: vec![
                    ClaimValue::String("admin".into()),
                    ClaimValue::String("ops".into()),
                ],
            },
            Requirement {
                claim: parse("scp"),
                values: vec![ClaimValue::String("orders.write".into())],
            },
        ];
        let claims = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let ok = claims(serde_json::json!({
            "realm_access": {"roles": ["user", "ops"]}, "scp": "orders.read orders.write"
        }));
        assert!(r.unmet_requirement(&ok).is_none());
        let no_scope = claims(serde_json::json!({
            "realm_access": {"roles": ["ops"]}, "scp": "orders.read"
        }));
        assert_eq!(
            r.unmet_requirement(&no_scope).unwrap().claim.as_str(),
            "scp"
        );
        let no_role = claims(serde_json::json!({
            "realm_access": {"roles": "user"}, "scp": "orders.write"
        }));
        assert_eq!(
            r.unmet_requirement(&no_role).unwrap().claim.as_str(),
            "realm_access.roles"
        );
        // A top-level claim spelled like the path is not the nested one.
        let flat = claims(serde_json::json!({
            "realm_access.roles": ["admin"], "scp": "orders.write"
        }));
        assert!(r.unmet_requirement(&flat).is_some());
    }
}
