//! TLS for every connection to PostgreSQL, with libpq's `sslmode` semantics.
//!
//! [`PgConnector::new`] turns a connection string plus an optional CA bundle into the
//! `tokio_postgres::Config` and a rustls [`MakeTlsConnect`](tokio_postgres::tls::MakeTlsConnect)
//! that the pool, the LISTEN connection, the leader lock, migrations and the tools all connect
//! with. tokio-postgres itself understands only `sslmode=disable|prefer|require`, so `sslmode`
//! and `sslrootcert` are taken out of the string here (URL `?sslmode=…` and key/value
//! `sslmode=…` alike) and applied by this module:
//!
//! | `sslmode` | encrypted | certificate chain checked | host name checked |
//! |---|---|---|---|
//! | `disable` | no | no | no |
//! | `prefer` (default) | if the server offers TLS | no | no |
//! | `require` | yes | no (but see below) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! As in libpq, `require` with a CA given (`sslrootcert=<file>` or `ASYNC_JOBS_DB_CA_FILE`)
//! behaves like `verify-ca`. The trusted roots of the verifying modes are, in this order:
//! `sslrootcert=<file>` (a PEM file), [`CA_FILE_VAR`] (a PEM bundle, e.g. the RDS global bundle),
//! else the operating system's store (`rustls-native-certs`: `/etc/ssl/certs` on Debian, or
//! `SSL_CERT_FILE` / `SSL_CERT_DIR`). `sslrootcert=system` asks for the system store explicitly
//! and, as in libpq, needs `sslmode=verify-full` (its default then).
//!
//! A certificate the client refuses fails the connection with one line naming the host, the
//! mode and the reason ([`describe_error`]), e.g. `database TLS: certificate for 127.0.0.1 not
//! trusted (sslmode=verify-full, roots from /etc/ssl/rds.pem): issuer not trusted …`.
//!
//! Cryptography is rustls with the aws-lc-rs provider (already built for the AWS SDK; no second
//! provider is compiled). Client certificates (`sslcert`, `sslkey`) are not supported.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls::{OtherError, SignatureScheme};
use tokio_postgres::{Client, Connection, Socket};

pub use tokio_postgres_rustls::MakeRustlsConnect;

/// The setting naming a PEM file of CA certificates that verify the server's certificate
/// (unless the connection string has `sslrootcert`).
pub const CA_FILE_VAR: &str = "ASYNC_JOBS_DB_CA_FILE";

/// The setting the connection string comes from, named in configuration errors.
pub const DSN_VAR: &str = "ASYNC_JOBS_DB_DSN";

/// The TLS stream of a connection made by a [`PgConnector`].
pub type PgTlsStream = <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<Socket>>::Stream;

/// `sslmode`, as in libpq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without checking its certificate (the default).
    Prefer,
    /// TLS, without checking the certificate (unless a CA is given: then like `VerifyCa`).
    Require,
    /// TLS, the certificate chain checked against the trusted roots; any host name.
    VerifyCa,
    /// TLS, the chain checked and the certificate valid for the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// True when the server's certificate chain is checked.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }

    fn wire(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` tries plain first; encrypting when offered is the safer reading.
            "allow" => SslMode::Prefer,
            other => {
                return Err(format!(
                    "sslmode must be disable, prefer, require, verify-ca or verify-full, got {:?}",
                    other.chars().take(40).collect::<String>()
                ))
            }
        })
    }
}

/// Where the trusted roots of the verifying modes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// `sslrootcert=<file>` in the connection string.
    RootCert(PathBuf),
    /// The [`CA_FILE_VAR`] file.
    CaFile(PathBuf),
    /// The operating system's trust store.
    System,
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::RootCert(p) => write!(f, "sslrootcert {}", p.display()),
            Roots::CaFile(p) => write!(f, "{CA_FILE_VAR} {}", p.display()),
            Roots::System => f.write_str("the system trust store"),
        }
    }
}

/// A bad database connection setting: one line naming the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting}: {message}")]
pub struct DbConfigError {
    /// The setting at fault ([`DSN_VAR`] or [`CA_FILE_VAR`] unless renamed).
    pub setting: String,
    /// What is wrong with it.
    pub message: String,
}

impl DbConfigError {
    fn dsn(message: impl Into<String>) -> Self {
        DbConfigError {
            setting: DSN_VAR.to_owned(),
            message: message.into(),
        }
    }

    /// The same error naming `setting` instead of [`DSN_VAR`] (for tools whose connection
    /// string comes from another variable).
    pub fn for_dsn_setting(mut self, setting: &str) -> Self {
        if self.setting == DSN_VAR {
            self.setting = setting.to_owned();
        }
        self
    }
}

/// The value of [`CA_FILE_VAR`] (`None` when unset or blank).
pub fn ca_file_from_env() -> Option<PathBuf> {
    jobs_core::Env::from_process()
        .get(CA_FILE_VAR)
        .map(PathBuf::from)
}

/// How to reach one database: the connection settings and the TLS connector, from a connection
/// string with libpq's `sslmode` / `sslrootcert` and an optional CA file. Cheap to clone.
#[derive(Clone)]
pub struct PgConnector {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    mode: SslMode,
    roots: Option<Roots>,
}

impl fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("PgConnector")
            .field("config", &self.config)
            .field("sslmode", &self.mode)
            .field("roots", &self.roots)
            .finish()
    }
}

impl PgConnector {
    /// Parses `dsn` (a `postgres://` URL or a key/value string) and builds its TLS connector.
    /// `ca_file` is the [`CA_FILE_VAR`] setting: a PEM file of trusted CA certificates, used
    /// when the string has no `sslrootcert`. Reads the CA file (or the system store for the
    /// verifying modes without one) now, so a bad file fails at startup. Errors name
    /// [`DSN_VAR`] or [`CA_FILE_VAR`].
    pub fn new(dsn: &str, ca_file: Option<&Path>) -> Result<PgConnector, DbConfigError> {
        let (rest, params) = split_ssl_params(dsn);
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| DbConfigError::dsn(error_chain(&e)))?;
        let given: Option<SslMode> = params
            .sslmode
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(DbConfigError::dsn)?;
        let (mut mode, roots) = match params.sslrootcert.as_deref() {
            Some("system") => match given {
                None | Some(SslMode::VerifyFull) => (SslMode::VerifyFull, Roots::System),
                Some(weak) => {
                    return Err(DbConfigError::dsn(format!(
                        "sslrootcert=system needs sslmode=verify-full, got sslmode={weak}"
                    )))
                }
            },
            Some("") => return Err(DbConfigError::dsn("sslrootcert is empty")),
            Some(path) => (
                given.unwrap_or(SslMode::Prefer),
                Roots::RootCert(PathBuf::from(path)),
            ),
            None => (
                given.unwrap_or(SslMode::Prefer),
                ca_file.map_or(Roots::System, |p| Roots::CaFile(p.to_owned())),
            ),
        };
        if mode == SslMode::Require && roots != Roots::System {
            // libpq: `require` with a root certificate file verifies the chain.
            mode = SslMode::VerifyCa;
        }
        // A given CA file is read even when this mode does not use it, so a wrong path fails
        // at startup rather than on the day someone turns verification on.
        let store = match (&roots, mode.verifies()) {
            (Roots::System, true) => Some(system_roots()?),
            (Roots::System, false) => None,
            (Roots::RootCert(p), _) => Some(file_roots(p, "sslrootcert", DSN_VAR)?),
            (Roots::CaFile(p), _) => Some(file_roots(p, "file", CA_FILE_VAR)?),
        };
        if !mode.verifies() && matches!(roots, Roots::CaFile(_) | Roots::RootCert(_)) {
            tracing::warn!(
                sslmode = %mode,
                "{roots} is set but sslmode={mode} does not check the server's certificate: \
                 add sslmode=verify-full to {DSN_VAR}"
            );
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match store {
            Some(store) if mode.verifies() => {
                let inner = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(store),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| DbConfigError::dsn(format!("TLS set-up: {e}")))?;
                Arc::new(Verifier {
                    inner,
                    mode,
                    roots: roots.clone(),
                })
            }
            _ => Arc::new(Unchecked {
                provider: Arc::clone(&provider),
            }),
        };
        // libpq connects to `hostaddr` alone as the host; tokio-postgres takes the TLS server
        // name from `host` only, so give it the addresses as names (verify-full then checks the
        // certificate for that IP address).
        if config.get_hosts().is_empty() && !config.get_hostaddrs().is_empty() {
            for addr in config.get_hostaddrs().to_vec() {
                config.host(addr.to_string());
            }
        }
        // libpq ignores sslmode on Unix-domain sockets (no TLS there); so do we, so one DSN
        // convention ("sslmode=require everywhere") also works over a local socket.
        let unix_only = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
        config.ssl_mode(if unix_only {
            tokio_postgres::config::SslMode::Disable
        } else {
            mode.wire()
        });
        Ok(PgConnector {
            config,
            tls: MakeRustlsConnect::new(client_config(provider, verifier)?),
            mode,
            roots: mode.verifies().then_some(roots),
        })
    }

    /// A connector for settings parsed elsewhere: TLS as `config`'s `ssl_mode` says
    /// (`disable`, `prefer` or `require`), certificates not checked.
    pub fn from_config(config: tokio_postgres::Config) -> Result<PgConnector, DbConfigError> {
        let mode = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(Unchecked {
            provider: Arc::clone(&provider),
        });
        Ok(PgConnector {
            config,
            tls: MakeRustlsConnect::new(client_config(provider, verifier)?),
            mode,
            roots: None,
        })
    }

    /// [`new`](PgConnector::new) with the CA file from [`CA_FILE_VAR`].
    pub fn from_env_ca(dsn: &str) -> Result<PgConnector, DbConfigError> {
        PgConnector::new(dsn, ca_file_from_env().as_deref())
    }

    /// The connection settings (`ssl_mode` set for the wire: `require` for the verifying modes).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The connection settings, to change (application name, timeouts, …).
    pub fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    /// Which database the connection string names, as `host[,host…]:port[,port…]/dbname`
    /// (hosts in lower case, port 5432 when none is given, the user's name as the database when
    /// none is given, as in libpq): no user, password or option, so it may be logged, and two
    /// connection strings with the same one reach the same database.
    pub fn database(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.to_ascii_lowercase(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = match self.config.get_ports() {
            [] => vec!["5432".to_owned()],
            ports => ports.iter().map(u16::to_string).collect(),
        };
        let dbname = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or_default();
        format!("{}:{}/{dbname}", hosts.join(","), ports.join(","))
    }

    /// Whether `other` connects exactly as this one does once [`database`](Self::database)
    /// matches: the same user, password, options, application name, host addresses,
    /// `sslmode`, timeouts and keepalives. Two connection strings of one database that differ
    /// in any of these cannot share one pool without one of them being silently ignored.
    pub fn same_connection(&self, other: &PgConnector) -> bool {
        let key = |c: &PgConnector| {
            let k = &c.config;
            (
                c.database(),
                k.get_user().map(str::to_owned),
                k.get_password().map(<[u8]>::to_vec),
                k.get_options().map(str::to_owned),
                k.get_application_name().map(str::to_owned),
                k.get_hostaddrs().to_vec(),
                (
                    c.mode,
                    k.get_connect_timeout().copied(),
                    k.get_tcp_user_timeout().copied(),
                    k.get_keepalives(),
                    k.get_keepalives_idle(),
                    k.get_keepalives_interval(),
                    k.get_keepalives_retries(),
                ),
                (
                    k.get_target_session_attrs(),
                    k.get_channel_binding(),
                    k.get_load_balance_hosts(),
                ),
            )
        };
        key(self) == key(other)
    }

    /// The TLS connector to hand to tokio-postgres or deadpool.
    pub fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// The effective `sslmode` (`require` with a CA reads as `verify-ca`).
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// The roots certificates are checked against (`None` when they are not checked).
    pub fn roots(&self) -> Option<&Roots> {
        self.roots.as_ref()
    }

    /// Opens one connection. Drive the returned connection (spawn it) as with
    /// `tokio_postgres::connect`. A refused certificate reads as [`describe_error`] shows.
    pub async fn connect(
        &self,
    ) -> Result<(Client, Connection<Socket, PgTlsStream>), tokio_postgres::Error> {
        self.config.connect(self.tls()).await
    }

    /// Opens one connection and drives it in a spawned task (ended when the client is dropped);
    /// errors as one line ([`describe_error`]).
    pub async fn connect_spawned(&self) -> Result<Client, String> {
        let (client, connection) = self.connect().await.map_err(|e| describe_error(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %describe_error(&e), "database connection ended");
            }
        });
        Ok(client)
    }
}

/// The rustls client settings: TLS 1.2 and 1.3, `verifier`, no client certificate.
fn client_config(
    provider: Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<ClientConfig, DbConfigError> {
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbConfigError::dsn(format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Checks the certificate like webpki (chain to the roots, validity, and for `verify-full` the
/// host name), and words a refusal as one line naming the host, mode and roots.
#[derive(Debug)]
struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    mode: SslMode,
    roots: Roots,
}

/// A certificate the client refused (inside the rustls error of the failed handshake).
#[derive(Debug)]
struct Untrusted {
    host: String,
    mode: SslMode,
    roots: Roots,
    reason: String,
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "database TLS: certificate for {} not trusted (sslmode={}, roots from {}): {}",
            self.host, self.mode, self.roots, self.reason
        )
    }
}

impl std::error::Error for Untrusted {}

fn reason(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "its issuer is not among the trusted roots (self-signed, or signed by another CA)"
                    .to_owned()
            }
            CertificateError::BadSignature => "bad signature".to_owned(),
            CertificateError::Expired => "expired".to_owned(),
            CertificateError::NotValidYet => "not valid yet".to_owned(),
            CertificateError::NotValidForName => "not valid for this host name".to_owned(),
            CertificateError::Revoked => "revoked".to_owned(),
            CertificateError::BadEncoding => "malformed certificate".to_owned(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(ok) => Ok(ok),
            // webpki checks the name last, after the chain: verify-ca accepts any name.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.mode == SslMode::VerifyCa => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(Untrusted {
                    host: server_name.to_str().into_owned(),
                    mode: self.mode,
                    roots: self.roots.clone(),
                    reason: reason(&e),
                })),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer` / `require` without a CA: encrypt, accept any certificate (libpq's behaviour). The
/// handshake signature is still checked, so the server holds the certificate's key.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The roots in a PEM file (`what` names the parameter, `setting` the variable, in errors).
fn file_roots(path: &Path, what: &str, setting: &str) -> Result<RootCertStore, DbConfigError> {
    let err = |message: String| DbConfigError {
        setting: setting.to_owned(),
        message,
    };
    let bytes = std::fs::read(path)
        .map_err(|e| err(format!("{what} {}: cannot read: {e}", path.display())))?;
    let mut store = RootCertStore::empty();
    let mut bad = 0usize;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert =
            cert.map_err(|e| err(format!("{what} {}: not a PEM file: {e}", path.display())))?;
        if store.add(cert).is_err() {
            bad += 1;
        }
    }
    if store.is_empty() {
        let detail = if bad > 0 {
            format!("none of its {bad} certificates can be used as a root")
        } else {
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_owned()
        };
        return Err(err(format!("{what} {}: {detail}", path.display())));
    }
    Ok(store)
}

/// The operating system's roots (for the verifying modes without a CA file).
fn system_roots() -> Result<RootCertStore, DbConfigError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(DbConfigError::dsn(format!(
            "the verifying sslmodes need trusted roots, and the system trust store has none{why}: \
             set {CA_FILE_VAR} to a PEM bundle (e.g. the RDS global bundle) or install \
             ca-certificates"
        )));
    }
    Ok(store)
}

/// `sslmode` and `sslrootcert` taken out of a connection string.
#[derive(Debug, Default, PartialEq, Eq)]
struct SslParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl SslParams {
    fn take(&mut self, key: &str, value: String) -> bool {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            _ => return false,
        }
        true
    }
}

/// Splits `sslmode` / `sslrootcert` (decoded) off `dsn`, returning the rest for tokio-postgres
/// unchanged otherwise. A string this cannot read is returned whole, for tokio-postgres to
/// report.
fn split_ssl_params(dsn: &str) -> (String, SslParams) {
    let mut params = SslParams::default();
    for prefix in ["postgres://", "postgresql://"] {
        if let Some(body) = dsn.strip_prefix(prefix) {
            // As tokio-postgres reads it: credentials up to the first '@', then the query
            // after the first '?'.
            let from = body.find('@').map_or(0, |at| at + 1);
            let Some(q) = body[from..].find('?').map(|q| from + q) else {
                return (dsn.to_owned(), params);
            };
            let mut kept = Vec::new();
            for pair in body[q + 1..].split('&') {
                let taken = pair.split_once('=').is_some_and(|(k, v)| {
                    let key = percent_decode_str(k).decode_utf8_lossy();
                    let value = percent_decode_str(v).decode_utf8_lossy().into_owned();
                    params.take(&key, value)
                });
                if !taken {
                    kept.push(pair);
                }
            }
            let mut rest = format!("{prefix}{}", &body[..q]);
            if !kept.is_empty() {
                rest.push('?');
                rest.push_str(&kept.join("&"));
            }
            return (rest, params);
        }
    }
    match key_values(dsn) {
        Some(pairs) => {
            let mut kept = Vec::new();
            for (key, value, raw) in pairs {
                if !params.take(key, value) {
                    kept.push(raw);
                }
            }
            (kept.join(" "), params)
        }
        None => (dsn.to_owned(), SslParams::default()),
    }
}

/// `dsn` with every password hidden, read the way [`PgConnector::new`] reads it: the password
/// of a URL's user info and a `password` query parameter, or a key/value string's `password`
/// (quoted or not). A string neither parser can read is hidden whole rather than risk printing a
/// secret.
pub fn redact_dsn(dsn: &str) -> String {
    const HIDDEN: &str = "***";
    for prefix in ["postgres://", "postgresql://"] {
        if let Some(body) = dsn.strip_prefix(prefix) {
            // As tokio-postgres reads it: credentials up to the first '@', then the query after
            // the first '?'.
            let (userinfo, rest) = match body.find('@') {
                Some(at) => (Some(&body[..at]), &body[at + 1..]),
                None => (None, body),
            };
            let mut out = String::from(prefix);
            if let Some(userinfo) = userinfo {
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:{HIDDEN}@")),
                    None => out.push_str(&format!("{userinfo}@")),
                }
            }
            match rest.split_once('?') {
                Some((path, query)) => {
                    let pairs: Vec<String> = query
                        .split('&')
                        .map(|pair| match pair.split_once('=') {
                            Some((k, _))
                                if percent_decode_str(k)
                                    .decode_utf8_lossy()
                                    .eq_ignore_ascii_case("password") =>
                            {
                                format!("{k}={HIDDEN}")
                            }
                            _ => pair.to_owned(),
                        })
                        .collect();
                    out.push_str(&format!("{path}?{}", pairs.join("&")));
                }
                None => out.push_str(rest),
            }
            return out;
        }
    }
    match key_values(dsn) {
        Some(pairs) => pairs
            .into_iter()
            .map(|(key, _, raw)| {
                if key.eq_ignore_ascii_case("password") {
                    format!("{key}={HIDDEN}")
                } else {
                    raw.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => format!("{HIDDEN} (unreadable connection string)"),
    }
}

/// The `key = value` pairs of a libpq key/value string as (key, unquoted value, raw text), read
/// the way tokio-postgres reads them; `None` when malformed.
fn key_values(s: &str) -> Option<Vec<(&str, String, &str)>> {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    loop {
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = it.peek() else {
            return Some(out);
        };
        let mut key_end = start;
        while let Some((i, _)) = it.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key_end = i + 1;
        }
        if key_end == start {
            return None;
        }
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        it.next_if(|(_, c)| *c == '=')?;
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let end;
        if it.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match it.next()? {
                    (i, '\'') => {
                        end = i + 1;
                        break;
                    }
                    (_, '\\') => value.push(it.next()?.1),
                    (_, c) => value.push(c),
                }
            }
        } else {
            let mut last = None;
            while let Some((i, c)) = it.next_if(|(_, c)| !c.is_whitespace()) {
                last = Some(i + c.len_utf8());
                if c == '\\' {
                    let (j, c2) = it.next()?;
                    last = Some(j + c2.len_utf8());
                    value.push(c2);
                } else {
                    value.push(c);
                }
            }
            end = last?;
        }
        out.push((&s[start..key_end], value, &s[start..end]));
    }
}

/// Every source of `e`, on one line (io::Error's own source skips its inner error, so that is
/// looked into too).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out.replace('\n', " ")
}

/// The refused-certificate line inside `e`, if a certificate was refused.
fn untrusted(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(o))) =
                candidate.downcast_ref::<rustls::Error>()
            {
                if let Some(u) = o.0.downcast_ref::<Untrusted>() {
                    return Some(u.to_string());
                }
            }
        }
        next = err.source();
    }
    None
}

/// A tokio-postgres error as one line: a refused server certificate as `database TLS:
/// certificate for <host> not trusted (sslmode=…, roots from …): <reason>`, a failed handshake
/// as `database TLS: …`, anything else with its causes.
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    if let Some(line) = untrusted(e) {
        return line;
    }
    let line = error_chain(e);
    if line.starts_with("error performing TLS handshake") {
        format!("database TLS: {line}")
    } else {
        line
    }
}

/// [`describe_error`] for any error that may wrap a tokio-postgres one.
pub fn describe_any(e: &(dyn std::error::Error + 'static)) -> String {
    match untrusted(e) {
        Some(line) => line,
        None => error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hostaddr_alone_is_the_tls_name_and_unix_sockets_skip_tls() {
        let c =
            PgConnector::new("hostaddr=127.0.0.1 user=u dbname=d sslmode=require", None).unwrap();
        assert_eq!(
            c.config().get_hosts(),
            &[tokio_postgres::config::Host::Tcp("127.0.0.1".into())]
        );
        assert_eq!(
            c.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let c = PgConnector::new("host=/var/run/postgresql user=u sslmode=require", None).unwrap();
        assert_eq!(
            c.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        assert_eq!(c.ssl_mode(), SslMode::Require);
        let c = PgConnector::new("host=db user=u sslmode=require", None).unwrap();
        assert_eq!(
            c.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn redact_dsn_hides_every_password() {
        for (dsn, want) in [
            (
                "postgres://app:s3cret@db:5432/jobs",
                "postgres://app:***@db:5432/jobs",
            ),
            ("postgres://app@db/jobs", "postgres://app@db/jobs"),
            (
                "postgresql://app@db/jobs?password=s3cret&sslmode=require",
                "postgresql://app@db/jobs?password=***&sslmode=require",
            ),
            (
                "postgres://a:p%40ss@db/j?Password=x",
                "postgres://a:***@db/j?Password=***",
            ),
            (
                "host=db user=app password=s3cret",
                "host=db user=app password=***",
            ),
            (
                "host=db password = s3cret user=app",
                "host=db password=*** user=app",
            ),
            (
                "host=db password='a s3cret' user=app",
                "host=db password=*** user=app",
            ),
            (
                "host=db password='unterminated",
                "*** (unreadable connection string)",
            ),
        ] {
            let got = redact_dsn(dsn);
            assert_eq!(got, want, "{dsn}");
            assert!(!got.contains("s3cret"), "{dsn}");
        }
    }

    fn split(dsn: &str) -> (String, Option<String>, Option<String>) {
        let (rest, p) = split_ssl_params(dsn);
        (rest, p.sslmode, p.sslrootcert)
    }

    #[test]
    fn url_params_are_split_off_and_decoded() {
        assert_eq!(
            split("postgres://u:p@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem"),
            (
                "postgres://u:p@h:5432/db?application_name=x".to_owned(),
                Some("verify-full".to_owned()),
                Some("/tmp/ca.pem".to_owned())
            )
        );
        assert_eq!(
            split("postgresql://h/db?sslmode=require"),
            (
                "postgresql://h/db".to_owned(),
                Some("require".to_owned()),
                None
            )
        );
        assert_eq!(
            split("postgres://h/db"),
            ("postgres://h/db".to_owned(), None, None)
        );
        // A '?' in the password is not the query.
        assert_eq!(
            split("postgres://u:pa?ss@h/db?sslmode=disable"),
            (
                "postgres://u:pa?ss@h/db".to_owned(),
                Some("disable".to_owned()),
                None
            )
        );
    }

    #[test]
    fn key_value_params_are_split_off_and_unquoted() {
        assert_eq!(
            split("host=h sslmode=verify-ca  dbname=db sslrootcert='/a b/ca.pem' password='x y'"),
            (
                "host=h dbname=db password='x y'".to_owned(),
                Some("verify-ca".to_owned()),
                Some("/a b/ca.pem".to_owned())
            )
        );
        assert_eq!(
            split("host = h sslmode = require"),
            ("host = h".to_owned(), Some("require".to_owned()), None)
        );
        assert_eq!(
            split(r"host=h sslrootcert=/x\ y.pem"),
            ("host=h".to_owned(), None, Some("/x y.pem".to_owned()))
        );
        // Malformed: passed whole to tokio-postgres, which reports it.
        assert_eq!(split("host=h port").0, "host=h port");
        assert_eq!(split("host='h").0, "host='h");
    }

    fn connector(dsn: &str, ca: Option<&Path>) -> Result<PgConnector, DbConfigError> {
        PgConnector::new(dsn, ca)
    }

    /// A real PEM certificate to stand for a CA bundle (any parsable certificate will do).
    fn pem_file(dir: &Path) -> PathBuf {
        // Debian's snakeoil certificate exists where the test database runs; else the system
        // bundle.
        for candidate in [
            "/etc/ssl/certs/ssl-cert-snakeoil.pem",
            "/etc/ssl/certs/ca-certificates.crt",
        ] {
            if Path::new(candidate).exists() {
                let to = dir.join("ca.pem");
                std::fs::copy(candidate, &to).unwrap();
                return to;
            }
        }
        panic!("no PEM certificate on this machine to test with");
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("jobs-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn each_sslmode_in_both_forms() {
        for (value, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            for dsn in [
                format!("postgres://u@db.example/app?sslmode={value}"),
                format!("host=db.example user=u dbname=app sslmode={value}"),
            ] {
                let c = connector(&dsn, None).unwrap();
                assert_eq!(c.ssl_mode(), mode, "{dsn}");
                assert_eq!(c.config().get_ssl_mode(), mode.wire(), "{dsn}");
                assert_eq!(c.config().get_dbname(), Some("app"));
                assert_eq!(
                    c.roots(),
                    mode.verifies().then_some(&Roots::System),
                    "{dsn}"
                );
            }
        }
        let c = connector("postgres://u@h/app", None).unwrap();
        assert_eq!(c.ssl_mode(), SslMode::Prefer);
        assert_eq!(c.roots(), None);
    }

    #[test]
    fn rootcert_and_ca_file() {
        let dir = temp_dir("roots");
        let ca = pem_file(&dir);
        let ca_s = ca.display().to_string();
        // sslrootcert in the string wins over the CA file; require with a CA means verify-ca.
        let c = connector(
            &format!("host=h sslmode=require sslrootcert={ca_s}"),
            Some(Path::new("/nonexistent")),
        );
        // The CA file is not consulted when sslrootcert is given.
        let c = c.unwrap();
        assert_eq!(c.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(c.roots(), Some(&Roots::RootCert(ca.clone())));
        let c = connector("postgres://h/db?sslmode=verify-full", Some(&ca)).unwrap();
        assert_eq!(c.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(c.roots(), Some(&Roots::CaFile(ca.clone())));
        let c = connector("postgres://h/db?sslmode=require", Some(&ca)).unwrap();
        assert_eq!(c.ssl_mode(), SslMode::VerifyCa);
        // prefer stays prefer (libpq), the file is still read.
        let c = connector("postgres://h/db", Some(&ca)).unwrap();
        assert_eq!(c.ssl_mode(), SslMode::Prefer);
        assert!(connector("postgres://h/db", Some(Path::new("/nonexistent"))).is_err());
        // sslrootcert=system: the system store, verify-full only.
        let c = connector("postgres://h/db?sslrootcert=system", None).unwrap();
        assert_eq!(
            (c.ssl_mode(), c.roots()),
            (SslMode::VerifyFull, Some(&Roots::System))
        );
        let err = connector("host=h sslrootcert=system sslmode=require", None).unwrap_err();
        assert_eq!(err.setting, DSN_VAR);
        assert!(err.message.contains("verify-full"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_values_are_one_line_errors_naming_the_setting() {
        let dir = temp_dir("bad");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let cases: Vec<(String, Option<&Path>, &str, &str)> = vec![
            (
                "postgres://h/db?sslmode=verify".into(),
                None,
                DSN_VAR,
                "sslmode must be",
            ),
            (
                "host=h sslmode=VERIFY-FULL".into(),
                None,
                DSN_VAR,
                "sslmode must be",
            ),
            ("host=h sslmode=".into(), None, DSN_VAR, ""),
            (
                "postgres://h/db?sslmode=require".into(),
                Some(Path::new("/nonexistent/ca.pem")),
                CA_FILE_VAR,
                "cannot read",
            ),
            (
                "postgres://h/db?sslmode=verify-full".into(),
                Some(&empty),
                CA_FILE_VAR,
                "no PEM certificate",
            ),
            (
                "postgres://h/db".into(),
                Some(&dir),
                CA_FILE_VAR,
                "cannot read",
            ),
            (
                format!("host=h sslmode=verify-ca sslrootcert={}", empty.display()),
                None,
                DSN_VAR,
                "sslrootcert",
            ),
            (
                "postgres://h/db?sslrootcert=".into(),
                None,
                DSN_VAR,
                "sslrootcert",
            ),
            (
                "postgres://h/db?nonsense=1".into(),
                None,
                DSN_VAR,
                "nonsense",
            ),
        ];
        for (dsn, ca, setting, text) in cases {
            let err = connector(&dsn, ca).unwrap_err();
            assert_eq!(err.setting, setting, "{dsn}: {err}");
            assert!(err.message.contains(text), "{dsn}: {err}");
            let line = err.to_string();
            assert!(line.starts_with(&format!("invalid {setting}: ")), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
        assert_eq!(
            connector("postgres://h/db?sslmode=bad", None)
                .unwrap_err()
                .for_dsn_setting("OTHER_DSN")
                .setting,
            "OTHER_DSN"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn other_parameters_reach_tokio_postgres() {
        let c = connector(
            "postgres://app:s3cret@db.example:6432/jobs?application_name=me&sslmode=require&connect_timeout=3",
            None,
        )
        .unwrap();
        let cfg = c.config();
        assert_eq!(cfg.get_application_name(), Some("me"));
        assert_eq!(cfg.get_ports(), [6432]);
        assert_eq!(cfg.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(
            cfg.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
