//! TLS (rustls): server identities for gRPC and HTTP, client identities for node-to-node
//! traffic (mutual TLS toward the top-level node), and a development CA (`idnode cert`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A server's certificate and key, and the CA its clients' certificates must chain to
/// (mutual TLS) when set.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// How a node connects to other nodes over `https://`: the CA it trusts, and its own
/// certificate for servers that require one.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub identity: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

impl ServerTls {
    /// The tonic (gRPC) server configuration.
    pub fn grpc(&self) -> Result<ServerTlsConfig, TlsError> {
        let mut c = ServerTlsConfig::new()
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?));
        if let Some(ca) = &self.client_ca {
            c = c.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(c)
    }

    /// A rustls server configuration (HTTP).
    pub fn rustls(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls_pemfile_certs(&read(&self.cert)?)?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&read(&self.key)?)
            .map_err(|e| TlsError::Invalid(format!("{}: {e}", self.key.display())))?;
        let builder = rustls::ServerConfig::builder();
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile_certs(&read(ca)?)? {
                    roots
                        .add(c)
                        .map_err(|e| TlsError::Invalid(format!("{}: {e}", ca.display())))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .map_err(|e| TlsError::Invalid(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Invalid(format!("{}: {e}", self.cert.display())))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn rustls_pemfile_certs(
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid(format!("certificate: {e}")))
}

impl ClientTls {
    /// The tonic client configuration.
    pub fn grpc(&self) -> Result<ClientTlsConfig, TlsError> {
        let identity = self
            .identity
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        client_config(Some(&self.ca), identity)
    }
}

/// A tonic client configuration trusting `ca` (PEM) or, without it, the system's roots
/// (`rustls-native-certs`: the platform's store, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when
/// set), and presenting `identity` (certificate and key, PEM) to servers that ask for one.
/// Errors name the file that cannot be read or parsed; missing system roots show when
/// connecting.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientTlsConfig, TlsError> {
    let mut c = match ca {
        Some(ca) => {
            let pem = read(ca)?;
            if rustls_pemfile_certs(&pem)
                .map_err(|e| TlsError::Invalid(format!("{}: {e}", ca.display())))?
                .is_empty()
            {
                return Err(TlsError::Invalid(format!(
                    "{}: no PEM certificate in it",
                    ca.display()
                )));
            }
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
        }
        None => ClientTlsConfig::new().with_native_roots(),
    };
    if let Some((cert, key)) = identity {
        c = c.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(c)
}

/// A lazily connecting channel to another node: `https://` URLs use `tls` (the configured
/// CA and client certificate) or, without it, the platform's roots. Errors are messages.
pub fn lazy_channel(
    url: &str,
    timeout: std::time::Duration,
    tls: Option<&ClientTls>,
) -> Result<tonic::transport::Channel, String> {
    let mut endpoint = tonic::transport::Channel::from_shared(url.to_owned())
        .map_err(|e| format!("bad endpoint {url:?}: {e}"))?
        .connect_timeout(timeout);
    if url.starts_with("https://") {
        let config = match tls {
            Some(t) => t.grpc(),
            None => client_config(None, None),
        }
        .map_err(|e| format!("TLS for {url}: {e}"))?;
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| format!("TLS for {url}: {e}"))?;
    }
    Ok(endpoint.connect_lazy())
}

/// Files written by [`dev_certs`].
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Makes a development CA and, signed by it, a server certificate for `hosts` (names or IP
/// addresses) and a client certificate, as PEM files in `dir` (keys mode 0600). Not for
/// production: the CA key is written next to the certificates.
pub fn dev_certs(dir: &Path, hosts: &[String]) -> Result<DevCerts, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let bad = |e: rcgen::Error| TlsError::Invalid(e.to_string());
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "idnode development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(bad)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(bad)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let mut server = CertificateParams::new(hosts.to_vec()).map_err(bad)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "idnode server");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().map_err(bad)?;
    let server_cert = server.signed_by(&server_key, &issuer).map_err(bad)?;

    let mut client = CertificateParams::new(vec!["idnode-node".to_owned()]).map_err(bad)?;
    client
        .distinguished_name
        .push(DnType::CommonName, "idnode node");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().map_err(bad)?;
    let client_cert = client.signed_by(&client_key, &issuer).map_err(bad)?;

    let out = DevCerts {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    let write = |path: &Path, text: &str, secret: bool| -> Result<(), TlsError> {
        let r = if secret {
            crate::secrets::write_secret_file(path, text)
        } else {
            std::fs::write(path, text)
        };
        r.map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    write(&out.ca, &ca_cert.pem(), false)?;
    write(&dir.join("ca.key"), &ca_key.serialize_pem(), true)?;
    write(&out.server_cert, &server_cert.pem(), false)?;
    write(&out.server_key, &server_key.serialize_pem(), true)?;
    write(&out.client_cert, &client_cert.pem(), false)?;
    write(&out.client_key, &client_key.serialize_pem(), true)?;
    Ok(out)
}
