//! Compiles Envoy's ext_authz protos (`proto/`, vendored unmodified; see `proto/README.md`)
//! into Rust with prost, parsing them with protox: no `protoc` is needed on the machine.

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(["envoy/service/auth/v3/external_auth.proto"], ["proto"])
        .unwrap_or_else(|e| panic!("proto/: {e}"));
    prost_build::Config::new()
        // The protos' comments are Envoy's documentation, not Rust's (some would run as
        // doctests).
        .disable_comments(["."])
        .include_file("protos.rs")
        .compile_fds(files)
        .unwrap_or_else(|e| panic!("proto/: {e}"));
}
