//! The RFC 7520 / JOSE cookbook signature vectors (tests/corpus/jose-cookbook/) against
//! jwtgate's provider keys: third-party keys and signatures, verified exactly as a provider's
//! JWKS and a token's signature would be.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwtgate::auth::jwk;
use jwtgate::config::Algorithm;
use serde_json::{json, Value};

fn vector(name: &str) -> Value {
    let path = format!(
        "{}/tests/corpus/jose-cookbook/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn rfc7520_and_rfc8037_signatures_verify_and_tampered_ones_do_not() {
    for (file, alg) in [
        ("jws_4_1.rsa_v15_signature.json", Algorithm::RS256),
        ("jws_4_2.rsa-pss_signature.json", Algorithm::PS384),
        ("curve25519_jws.json", Algorithm::EdDSA),
    ] {
        let v = vector(file);
        assert_eq!(v["input"]["alg"], alg.name(), "{file}");
        // The cookbook's keys carry their private members; a JWKS reader takes the public ones.
        let doc = json!({ "keys": [v["input"]["key"]] }).to_string();
        let (keys, skipped) = jwk::parse_jwks("https://issuer.example", doc.as_bytes()).unwrap();
        assert_eq!((keys.len(), skipped.len()), (1, 0), "{file}: {skipped:?}");
        let key = &keys[0];
        assert!(key.fits(alg), "{file}");
        let input = v["signing"]["sig-input"].as_str().unwrap();
        let sig = URL_SAFE_NO_PAD
            .decode(v["signing"]["sig"].as_str().unwrap())
            .unwrap();
        assert!(key.verify(alg, input.as_bytes(), &sig), "{file}");
        // The compact form is the signing input and the signature.
        let compact = v["output"]["compact"].as_str().unwrap();
        assert_eq!(
            compact,
            format!("{input}.{}", v["signing"]["sig"].as_str().unwrap())
        );
        // Tampered signature, tampered input, another algorithm: refused.
        let mut bad = sig.clone();
        bad[0] ^= 0x01;
        assert!(!key.verify(alg, input.as_bytes(), &bad), "{file}");
        let mut other = input.as_bytes().to_vec();
        let last = other.len() - 1;
        other[last] ^= 0x01;
        assert!(!key.verify(alg, &other, &sig), "{file}");
        for wrong in Algorithm::ALL.into_iter().filter(|a| *a != alg) {
            assert!(
                !key.verify(wrong, input.as_bytes(), &sig),
                "{file} as {}",
                wrong.name()
            );
        }
    }
}

#[test]
fn rfc7520_keys_jwtgate_does_not_verify_with_are_skipped_with_a_reason() {
    // §4.3: ES512 with a P-521 key (no provider algorithm); §4.4: HS256 with an `oct` key (a
    // provider's keys are public keys, never HMAC secrets).
    for (file, why) in [
        ("jws_4_3.ecdsa_signature.json", "curve"),
        (
            "jws_4_4.hmac-sha2_integrity_protection.json",
            "\"HS256\" is not a signature algorithm",
        ),
    ] {
        let v = vector(file);
        let doc = json!({ "keys": [v["input"]["key"]] }).to_string();
        let err = jwk::parse_jwks("https://issuer.example", doc.as_bytes()).unwrap_err();
        assert!(err.contains(why), "{file}: {err}");
    }
}
