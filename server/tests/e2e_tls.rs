//! TLS on the gateway port with a certificate generated in the test (rcgen).

mod common;

use common::*;

#[test]
fn serves_over_tls_with_a_generated_certificate() {
    let home = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = home.path().join("tls.crt");
    let key_path = home.path().join("tls.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
    let gw = Gateway::start(
        home.path(),
        &[
            ("OPEN_CLANKER_TLS_CERT_FILE", c),
            ("OPEN_CLANKER_TLS_KEY_FILE", k),
        ],
    );
    let port = gw.addr.rsplit(':').next().unwrap().to_string();
    let https = format!("https://localhost:{port}");
    let run = |args: &[&str]| {
        command(home.path())
            .args(args)
            .env("OPEN_CLANKER_ADDR", &https)
            .output()
            .unwrap()
    };

    // Trusting the generated certificate: status and health over TLS.
    let out = run(&["status", "--ca-cert", c]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("store: sqlite"), "{}", stdout(&out));
    assert!(run(&["health", "--ca-cert", c]).status.success());

    // Without trusting it, the handshake fails; plain HTTP/2 is not served on a TLS port.
    let out = run(&["status"]);
    assert!(!out.status.success());
    assert!(!gw.cli(&["health"]).status.success());

    // Half a TLS configuration is refused with the key to fix.
    let out = command(home.path())
        .args(["config-validate"])
        .env("OPEN_CLANKER_TLS_CERT_FILE", c)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tls"), "{}", stderr(&out));

    // A certificate file that does not exist stops the gateway with a clear error.
    let out = command(home.path())
        .args(["gateway"])
        .env("OPEN_CLANKER_LISTEN", "127.0.0.1:0")
        .env("OPEN_CLANKER_DATA_DIR", home.path().join("data2"))
        .env("OPEN_CLANKER_TLS_CERT_FILE", "/nonexistent/tls.crt")
        .env("OPEN_CLANKER_TLS_KEY_FILE", k)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/tls.crt"),
        "{}",
        stderr(&out)
    );
}
