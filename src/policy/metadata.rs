//! RFC 9728 protected resource metadata: the document a route's `resource_metadata` describes,
//! served without a token at the path §3.1 derives from its `resource`
//! (`/.well-known/oauth-protected-resource` followed by the resource's path), and the URL a
//! 401's challenge names (`resource_metadata="..."`, what MCP clients follow).

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::RouteConfig;

/// Every route's metadata document, by the path it is served at.
#[derive(Debug, Default)]
pub struct Documents {
    by_path: HashMap<String, Arc<[u8]>>,
}

impl Documents {
    /// The documents of `routes` (the first route wins a path; validation refuses two that
    /// differ).
    pub fn new(routes: &[RouteConfig]) -> Documents {
        let mut by_path = HashMap::new();
        for r in routes {
            let Some(m) = &r.resource_metadata else {
                continue;
            };
            let mut methods = vec!["header"];
            if r.query_token.is_some() {
                methods.push("query");
            }
            let mut doc = serde_json::json!({
                "resource": m.resource_text,
                "authorization_servers": m.authorization_servers,
                "bearer_methods_supported": methods,
            });
            if !m.scopes.is_empty() {
                doc["scopes_supported"] = serde_json::json!(m.scopes);
            }
            by_path
                .entry(m.well_known_path())
                .or_insert_with(|| Arc::from(doc.to_string().into_bytes()));
        }
        Documents { by_path }
    }

    /// The document served at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Arc<[u8]>> {
        if self.by_path.is_empty() {
            return None;
        }
        self.by_path.get(path)
    }
}
