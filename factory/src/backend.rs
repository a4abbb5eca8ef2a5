//! The station's client of the provisioning backend (`lambda/openapi.yaml`):
//! bearer-token calls with retries and backoff for transport failures and
//! server faults; a refusal (4xx) is returned at once with its code.
//!
//! `https://` backends are verified against the system's CA roots, or only
//! against `--ca PEM`; plain `http://` is refused unless the backend is on
//! this machine or `--insecure-http` says so ([`Transport`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use firmware::api::{
    ActivateRequest, ChallengeRequest, ChallengeResponse, DeviceView, ErrorBody, ProvisionRequest,
    ProvisionResponse, VerifyRequest, VerifyResponse,
};
use firmware::record::HwId;
use secrecy::{ExposeSecret, SecretString};

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend could not be reached (after retries).
    #[error("backend {url} unreachable after {attempts} attempts: {reason}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// How many tries.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The backend refused the call.
    #[error("backend refused {what}: {status} {code}: {message}")]
    Refused {
        /// Which call.
        what: &'static str,
        /// HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The backend's URL, or how to reach it, is not acceptable.
    #[error("{0}")]
    Transport(String),
    /// The answer is not what the API specifies.
    #[error("backend answered {what} with something unexpected: {source}")]
    BadAnswer {
        /// Which call.
        what: &'static str,
        /// The problem, as text.
        #[source]
        source: std::io::Error,
    },
}

/// `POST /v1/provision`'s answer.
pub type Provisioned = ProvisionResponse;

/// A device as the backend sees it.
pub type DeviceState = DeviceView;

/// `POST /v1/auth/challenge`'s answer.
pub type Challenge = ChallengeResponse;

/// A backend at `base` (e.g. `http://127.0.0.1:8080`), called with a token.
pub struct Backend {
    base: String,
    token: Option<SecretString>,
    agent: ureq::Agent,
    /// Tries per call.
    pub attempts: u32,
    /// First backoff; doubles each retry.
    pub backoff: Duration,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// How the station reaches the backend (the same flags on every command
/// that calls it).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Transport {
    /// Trust only this CA (PEM) for the backend's certificate, instead of
    /// the system's roots.
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// Allow plain http:// to a backend that is not on this machine: its
    /// token and the records would cross the network in clear.
    #[arg(long)]
    pub insecure_http: bool,
}

/// The host of a plain `http://` URL that is not this machine (loopback
/// addresses and `localhost` are this machine); `None` for anything else.
pub fn remote_plain_http_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| host.to_owned())
}

/// A TLS client configuration trusting the certificates in `ca` (PEM), or
/// the system's roots.
fn tls_config(ca: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, BackendError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let bad =
                |why: String| BackendError::Transport(format!("--ca {}: {why}", path.display()));
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no CERTIFICATE block".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(BackendError::Transport(
                    "no CA certificates found on this system: give the backend's CA with --ca PEM"
                        .into(),
                ));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| BackendError::Transport(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Backend {
    /// A client of the backend at `base`, with `token` (none: only device
    /// authentication, `/v1/auth/*`, which the device's signature
    /// authorizes). Refuses what [`Transport`] does not allow.
    pub fn connect(
        base: &str,
        token: Option<SecretString>,
        transport: &Transport,
    ) -> Result<Self, BackendError> {
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(3))
            .timeout(Duration::from_secs(10));
        if base.starts_with("https://") {
            agent = agent.tls_config(tls_config(transport.ca.as_deref())?);
        } else if base.starts_with("http://") {
            if let Some(host) = remote_plain_http_host(base) {
                if !transport.insecure_http {
                    return Err(BackendError::Transport(format!(
                        "refusing plain http:// to {host}: the token and the records would \
                         cross the network in clear; use https:// (or --insecure-http)"
                    )));
                }
            }
            if transport.ca.is_some() {
                return Err(BackendError::Transport(
                    "--ca is for an https:// backend".into(),
                ));
            }
        } else {
            return Err(BackendError::Transport(format!(
                "--backend {base:?}: an http:// or https:// URL"
            )));
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent: agent.build(),
            attempts: 5,
            backoff: Duration::from_millis(100),
        })
    }

    /// The backend's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn call<T: serde::de::DeserializeOwned, B: serde::Serialize>(
        &self,
        what: &'static str,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, BackendError> {
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        let mut wait = self.backoff;
        for attempt in 1..=self.attempts {
            let mut req = self.agent.request(method, &url);
            if let Some(token) = &self.token {
                req = req.set(
                    "authorization",
                    &format!("Bearer {}", token.expose_secret()),
                );
            }
            let result = match &body {
                Some(b) => req.send_json(b),
                None => req.call(),
            };
            match result {
                Ok(resp) => {
                    return resp
                        .into_json()
                        .map_err(|source| BackendError::BadAnswer { what, source })
                }
                Err(ureq::Error::Status(status, resp)) if status < 500 => {
                    let (code, message) = match resp.into_json::<ErrorBody>() {
                        Ok(e) => (e.error, e.message),
                        Err(_) => ("?".into(), "(no error body)".into()),
                    };
                    return Err(BackendError::Refused {
                        what,
                        status,
                        code,
                        message,
                    });
                }
                Err(ureq::Error::Status(status, _)) => last = format!("HTTP {status}"),
                Err(ureq::Error::Transport(t)) => last = t.to_string(),
            }
            if attempt < self.attempts {
                std::thread::sleep(wait);
                wait *= 2;
            }
        }
        Err(BackendError::Unreachable {
            url,
            attempts: self.attempts,
            reason: last,
        })
    }

    /// `POST /v1/provision`: the chip's serial (idempotent).
    pub fn provision(
        &self,
        hw_id: HwId,
        product: Option<&str>,
    ) -> Result<Provisioned, BackendError> {
        let body = ProvisionRequest {
            hw_id: hw_id.to_string(),
            product: product.map(str::to_owned),
        };
        self.call("provision", "POST", "/v1/provision", Some(&body))
    }

    /// `POST /v1/devices/{serial}/activate` with the record on the chip (the
    /// backend takes the public key and the key's origin from it).
    pub fn activate(&self, serial: u32, record: &[u8]) -> Result<DeviceState, BackendError> {
        let body = ActivateRequest {
            record: hex::encode(record),
        };
        self.call(
            "activate",
            "POST",
            &format!("/v1/devices/{serial}/activate"),
            Some(&body),
        )
    }

    /// `POST /v1/auth/challenge`: a nonce for the device `serial` to sign.
    pub fn challenge(&self, serial: u32) -> Result<Challenge, BackendError> {
        self.call(
            "challenge",
            "POST",
            "/v1/auth/challenge",
            Some(&ChallengeRequest { serial }),
        )
    }

    /// `POST /v1/auth/verify`: the device's answer.
    pub fn verify(
        &self,
        challenge_id: &str,
        serial: u32,
        hw_id: HwId,
        signature: &[u8; 64],
    ) -> Result<(), BackendError> {
        let body = VerifyRequest {
            challenge_id: challenge_id.to_owned(),
            serial,
            hw_id: hw_id.to_string(),
            signature: hex::encode(signature),
        };
        let answer: VerifyResponse = self.call("verify", "POST", "/v1/auth/verify", Some(&body))?;
        if !answer.authenticated || answer.serial != serial {
            return Err(BackendError::BadAnswer {
                what: "verify",
                source: std::io::Error::other("the answer does not authenticate this serial"),
            });
        }
        Ok(())
    }

    /// `GET /v1/devices?hw_id=`: the device, if registered.
    pub fn device(&self, hw_id: HwId) -> Result<Option<DeviceState>, BackendError> {
        match self.call(
            "device lookup",
            "GET",
            &format!("/v1/devices?hw_id={hw_id}"),
            None::<&()>,
        ) {
            Ok(d) => Ok(Some(d)),
            Err(BackendError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_counts_as_this_machine() {
        for local in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9/",
            "http://LOCALHOST:1/v1",
            "http://[::1]:80",
            "http://user@127.0.0.1",
            "https://prov.example.com",
            "ftp://x",
        ] {
            assert_eq!(remote_plain_http_host(local), None, "{local}");
        }
        for (url, host) in [
            ("http://10.0.0.5:8080", "10.0.0.5"),
            ("http://prov.example.com/", "prov.example.com"),
            ("http://127.0.0.1.example.com", "127.0.0.1.example.com"),
            ("http://localhost@10.1.1.1/", "10.1.1.1"),
            ("http://[2001:db8::1]:80", "2001:db8::1"),
            ("http://", ""),
        ] {
            assert_eq!(remote_plain_http_host(url).as_deref(), Some(host), "{url}");
        }
    }

    proptest::proptest! {
        /// Any text: an answer, never a panic; a host is only ever named
        /// for plain http:// URLs.
        #[test]
        fn any_url_gets_an_answer(url in "(https?://)?[ -~]{0,40}") {
            if let Some(host) = remote_plain_http_host(&url) {
                proptest::prop_assert!(url.starts_with("http://"));
                proptest::prop_assert!(url.contains(&host));
            }
        }
    }
}
