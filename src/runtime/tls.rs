//! TLS with rustls (ring provider), built from PEM bytes the build step read: the public
//! listener's server config (ALPN `h2`, `http/1.1`), and the upstream client configs (the webpki
//! roots, plus an optional CA file per route for private upstreams).

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE in the file".to_owned());
    }
    Ok(certs)
}

/// The listener's TLS config from a PEM certificate chain and a PEM private key (PKCS#8,
/// PKCS#1 or SEC1). Errors name the part (`cert`, `key`, or the pair).
pub fn server_config(cert: &[u8], key: &[u8]) -> Result<Arc<ServerConfig>, (&'static str, String)> {
    let chain = certs(cert).map_err(|e| ("cert", e))?;
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| ("key", format!("no usable private key: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("cert", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            (
                "key",
                format!("certificate and key do not match or are unusable: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The upstream client's default TLS config: the webpki roots. Built once per process.
pub fn default_client_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| client_with_roots(webpki_roots()))
        .clone()
}

/// The webpki roots plus the CAs in a PEM CA file, for an upstream with a private CA.
pub fn client_config_with_ca(pem: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = webpki_roots();
    for cert in certs(pem)? {
        roots
            .add(cert)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    Ok(client_with_roots(roots))
}

fn webpki_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

fn client_with_roots(roots: RootCertStore) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        // Fails only for a provider without TLS 1.2/1.3 cipher suites; ring's default
        // provider has both, so this cannot fail.
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = config;
    // The upstream client speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
