//! Project Wycheproof's signature vectors (tests/corpus/wycheproof/) against jwtgate's provider
//! keys: every `valid` signature verifies and every `invalid` one (malleated, truncated,
//! wrongly encoded, on another curve point, ...) does not, with the key read as a JWK and as a
//! PEM, for each algorithm a provider may use.

use jwtgate::auth::jwk;
use jwtgate::config::Algorithm;
use serde_json::{json, Value};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs one Wycheproof file for `alg`; returns (valid, invalid, acceptable) vectors seen, the
/// invalid ones including those of keys jwtgate refuses outright, and the file's count.
fn run(file: &str, alg: Algorithm) -> (usize, usize, usize, usize) {
    let path = format!(
        "{}/tests/corpus/wycheproof/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (mut valid, mut invalid, mut acceptable) = (0, 0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        let has_valid = group["tests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["result"] == "valid");
        // Some groups' keys have no JWK form (Wycheproof leaves it out); their PEM is read.
        let from_jwk = group
            .get("publicKeyJwk")
            .or_else(|| group.get("keyJwk"))
            .map(|jwk| {
                let doc = json!({ "keys": [jwk] }).to_string();
                jwk::parse_jwks("https://issuer.example", doc.as_bytes())
                    .map(|(mut k, _)| k.remove(0))
            });
        let from_pem = group["publicKeyPem"]
            .as_str()
            .map(|pem| jwk::parse_pem("https://issuer.example", pem.as_bytes()));
        let keys: Vec<jwk::PublicKey> = match (from_jwk, from_pem) {
            (Some(Ok(j)), Some(Ok(p))) => vec![j, p],
            (None, Some(Ok(p))) => vec![p],
            (j, p) => {
                // A key jwtgate refuses must be one no valid signature needs.
                assert!(
                    !has_valid,
                    "{file}: a key with valid signatures refused: {:?} / {:?}",
                    j.map(|r| r.err()),
                    p.map(|r| r.err())
                );
                // Nothing verifies with a refused key.
                for t in group["tests"].as_array().unwrap() {
                    match t["result"].as_str().unwrap() {
                        "invalid" => invalid += 1,
                        _ => acceptable += 1,
                    }
                }
                continue;
            }
        };
        assert!(keys.iter().all(|k| k.fits(alg)), "{file}");
        for t in group["tests"].as_array().unwrap() {
            let msg = hex(t["msg"].as_str().unwrap());
            let sig = hex(t["sig"].as_str().unwrap());
            let id = &t["tcId"];
            let got = keys[0].verify(alg, &msg, &sig);
            for other in &keys[1..] {
                assert_eq!(
                    got,
                    other.verify(alg, &msg, &sig),
                    "{file} #{id}: JWK and PEM disagree"
                );
            }
            match t["result"].as_str().unwrap() {
                "valid" => {
                    assert!(got, "{file} #{id} ({}) refused", t["comment"]);
                    valid += 1;
                }
                "invalid" => {
                    assert!(!got, "{file} #{id} ({}) accepted", t["comment"]);
                    invalid += 1;
                }
                _ => acceptable += 1,
            }
        }
    }
    let total = doc["numberOfTests"].as_u64().unwrap() as usize;
    (valid, invalid, acceptable, total)
}

#[test]
fn wycheproof_signature_vectors() {
    for (file, alg) in [
        ("ecdsa_secp256r1_sha256_p1363_test.json", Algorithm::ES256),
        ("ecdsa_secp384r1_sha384_p1363_test.json", Algorithm::ES384),
        ("rsa_signature_2048_sha256_test.json", Algorithm::RS256),
        ("rsa_pss_2048_sha256_mgf1_32_test.json", Algorithm::PS256),
        ("ed25519_test.json", Algorithm::EdDSA),
    ] {
        let (valid, invalid, acceptable, total) = run(file, alg);
        // Every vector of the file was seen, and both kinds are there.
        assert_eq!(valid + invalid + acceptable, total, "{file}");
        assert!(valid > 0 && invalid > 0, "{file}");
        eprintln!(
            "{file}: {valid} valid and {invalid} invalid signatures agree ({acceptable} acceptable not asserted)"
        );
    }
}
