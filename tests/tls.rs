//! Signaling over TLS: `meetspace serve --tls-cert/--tls-key` and `wss://` clients that
//! trust a self-signed certificate made here with rcgen through `--signal-ca`.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use meetspace::call::{CallError, CallNotice, CallState};
use meetspace::runtime::AsyncRuntime;
use meetspace::signaling::server::{ServerLimits, SignalingServer};
use meetspace::signaling::tls;

const SECOND: Duration = Duration::from_secs(1);

/// A self-signed certificate for `localhost`, as PEM files in a fresh directory.
struct SelfSigned {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl SelfSigned {
    /// `tag` keeps the directories of tests running at once apart.
    fn new(tag: &str) -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = std::env::temp_dir().join(format!("meetspace-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        Self { dir, cert, key }
    }
}

impl Drop for SelfSigned {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_call_signals_over_wss_with_a_self_signed_certificate() {
    let pem = SelfSigned::new("call");
    let runtime = AsyncRuntime::new().unwrap();
    let server = runtime
        .handle()
        .block_on(SignalingServer::bind(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ServerLimits::default(),
        ))
        .unwrap()
        .with_tls(tls::server_config(&pem.cert, &pem.key).unwrap());
    let url = format!("wss://localhost:{}/ws", server.local_addr().port());
    assert!(server.url().starts_with("wss://"));
    runtime.handle().spawn(server.run());

    let trusting = |name: &str| {
        let mut config = config(&url, name, Default::default());
        config.signal_ca = Some(pem.cert.clone());
        client_from(config)
    };
    let mut alice = trusting("Alice");
    let mut bob = trusting("Bob");
    let room = host_room(&mut alice);
    join_room(&mut bob, &room);
    assert!(
        pump_until(&mut [&mut alice, &mut bob], 15 * SECOND, |apps| {
            participant_names(apps[0]) == ["Bob"] && participant_names(apps[1]) == ["Alice"]
        }),
        "{:?}",
        notices(&bob)
    );

    // Without the certificate, the server is not trusted: a clear error, not a hang.
    let mut stranger = client(&url, "Stranger");
    join_room(&mut stranger, &room);
    assert!(
        pump_until(&mut [&mut stranger], 10 * SECOND, |apps| {
            state(apps[0]) == CallState::Idle
                && notices(apps[0]).iter().any(|notice| {
                    matches!(notice, CallNotice::Failed(CallError::SignalingUnreachable(why)) if why.contains("TLS"))
                })
        }),
        "{:?}",
        notices(&stranger)
    );
}

#[test]
fn serve_refuses_a_missing_or_broken_certificate_clearly() {
    let pem = SelfSigned::new("broken");
    let missing = pem.dir.join("nope.pem");
    let error = tls::server_config(&missing, &pem.key).unwrap_err();
    assert!(error.to_string().contains("nope.pem"), "{error}");
    let error = tls::server_config(&pem.key, &pem.key).unwrap_err();
    assert!(error.to_string().contains("no certificate"), "{error}");
}
