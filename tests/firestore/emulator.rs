//! The real Firestore emulator for the tests: one per test binary, started on a free
//! loopback port the first time a test asks for it, and stopped (its whole process
//! group: gcloud starts java) when the test process ends, however it ends. Tests use
//! their own project ids, so they run in parallel on one emulator; each resets its
//! project first through the emulator's REST API.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the emulator may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(90);

const INSTALL_HINT: &str = "the Firestore emulator is needed: install the Debian packages \
     google-cloud-cli-firestore-emulator and default-jre-headless (Google Cloud's apt \
     repository, https://cloud.google.com/sdk/docs/install#deb), or run .ci/run";

/// A running emulator.
pub struct Emulator {
    /// `127.0.0.1:PORT`, as `FIRESTORE_EMULATOR_HOST` names it.
    pub host: String,
    http: reqwest::blocking::Client,
    /// The watchdog shell: it outlives this process on purpose, so it is never waited for.
    _watchdog: std::process::Child,
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

/// The emulator of this test binary, started on first use, with `FIRESTORE_EMULATOR_HOST`
/// pointing at it.
pub fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(Emulator::start)
}

impl Emulator {
    fn start() -> Self {
        let sdk_root = Command::new("gcloud")
            .args(["info", "--format=value(installation.sdk_root)"])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
        let Some(sdk_root) = sdk_root else {
            panic!("gcloud is missing: {INSTALL_HINT}");
        };
        let jar_dir = std::path::Path::new(&sdk_root).join("platform/cloud-firestore-emulator");
        assert!(
            jar_dir.is_dir(),
            "{} is missing: {INSTALL_HINT}",
            jar_dir.display()
        );
        let java = Command::new("java")
            .arg("-version")
            .stderr(Stdio::null())
            .status();
        assert!(
            java.is_ok_and(|status| status.success()),
            "java is missing: {INSTALL_HINT}"
        );
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let host = format!("127.0.0.1:{port}");
        // A shell in a process group of its own runs the emulator and watches this test
        // process: when it is gone, the shell kills gcloud's process group (gcloud makes
        // its own, and its java is in it), then its own.
        let script = format!(
            "gcloud emulators firestore start --host-port={host} >/tmp/meetspace-firestore-emulator-{port}.log 2>&1 & \
             emulator=$!; \
             while kill -0 {test} 2>/dev/null; do sleep 1; done; \
             kill -- -$emulator 2>/dev/null; kill $emulator 2>/dev/null; kill -- -$$",
            test = std::process::id()
        );
        let watchdog = Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("sh starts");
        let emulator = Self {
            host,
            http: reqwest::blocking::Client::new(),
            _watchdog: watchdog,
        };
        let started = Instant::now();
        while emulator.get("/").is_err() {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "the Firestore emulator did not answer within {START_TIMEOUT:?} (see \
                 /tmp/meetspace-firestore-emulator-{port}.log): {INSTALL_HINT}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        // SAFETY: set once, while every other test of this binary waits in `emulator()`
        // for this initialisation and no other thread of ours reads the environment.
        unsafe { std::env::set_var("FIRESTORE_EMULATOR_HOST", &emulator.host) };
        emulator
    }

    fn get(&self, path: &str) -> reqwest::Result<reqwest::blocking::Response> {
        self.http
            .get(format!("http://{}{path}", self.host))
            .timeout(Duration::from_secs(5))
            .send()
    }

    /// Deletes every document of `project`.
    pub fn reset(&self, project: &str) {
        let status = self
            .http
            .delete(format!(
                "http://{}/emulator/v1/projects/{project}/databases/(default)/documents",
                self.host
            ))
            .send()
            .expect("the emulator answers")
            .status();
        assert!(status.is_success(), "reset failed: {status}");
    }

    /// The document at `path` (e.g. `calls/ID`) as the REST API gives it, or `None`.
    pub fn document(&self, project: &str, path: &str) -> Option<Value> {
        let response = self
            .get(&format!(
                "/v1/projects/{project}/databases/(default)/documents/{path}"
            ))
            .expect("the emulator answers");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        Some(response.json().expect("a JSON document"))
    }

    /// The documents of the collection at `path` (e.g. `calls/ID/offerCandidates`).
    pub fn collection(&self, project: &str, path: &str) -> Vec<Value> {
        let listing: Value = self
            .get(&format!(
                "/v1/projects/{project}/databases/(default)/documents/{path}?pageSize=300"
            ))
            .expect("the emulator answers")
            .json()
            .expect("a JSON listing");
        listing["documents"].as_array().cloned().unwrap_or_default()
    }

    /// Writes `fields` (REST-typed values) as the document at `path`.
    pub fn put(&self, project: &str, path: &str, fields: Value) {
        let status = self
            .http
            .patch(format!(
                "http://{}/v1/projects/{project}/databases/(default)/documents/{path}",
                self.host
            ))
            .json(&serde_json::json!({ "fields": fields }))
            .send()
            .expect("the emulator answers")
            .status();
        assert!(status.is_success(), "writing {path} failed: {status}");
    }
}
