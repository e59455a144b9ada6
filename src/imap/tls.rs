//! The rustls client configuration, built from `[source]`/`[destination]`: ring as the
//! crypto provider (explicitly, never a process default), the platform verifier by default,
//! bundled Mozilla roots for bare containers, an extra PEM trust anchor, or (loudly, warned
//! by the settings layer) no verification at all.

use std::sync::Arc;

use tokio_rustls::rustls::{
    self,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::WebPkiServerVerifier,
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::error::Reason;
use crate::settings::{ServerSettings, TlsRoots};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client configuration; the error is a user-facing sentence.
pub(crate) fn client_config(server: &ServerSettings) -> Result<Arc<ClientConfig>, Reason> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = if server.accept_invalid_certs {
        Arc::new(AcceptAnyCertificate(provider.clone()))
    } else {
        let extra = match &server.ca_file {
            Some(path) => read_anchors(path)?,
            None => Vec::new(),
        };
        let chain: Arc<dyn ServerCertVerifier> = match server.tls_roots {
            TlsRoots::System => Arc::new(
                rustls_platform_verifier::Verifier::new_with_extra_roots(
                    extra.clone(),
                    provider.clone(),
                )
                .map_err(|e| format!("cannot load the system's trusted certificates: {e}"))?,
            ),
            TlsRoots::Mozilla => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                for cert in extra.iter().cloned() {
                    roots
                        .add(cert)
                        .map_err(|e| format!("`ca-file`: unusable certificate: {e}"))?;
                }
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("cannot build the certificate verifier: {e}"))?
            }
        };
        if extra.is_empty() {
            chain
        } else {
            Arc::new(PinnedOrChain {
                pinned: extra,
                chain,
            })
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server name to verify against (a DNS name or an IP address).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("`{host}` is not a valid TLS server name: {e}"))
}

fn read_anchors(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Reason> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read `ca-file` `{}`: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`ca-file` `{}` is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(Reason::hinted(
            format!("`ca-file` `{}` holds no certificate", path.display()),
            "it must contain a `-----BEGIN CERTIFICATE-----` block",
        ));
    }
    Ok(certs)
}

/// Chain verification, plus: a server certificate that is byte for byte one of the
/// `ca-file` certificates is trusted (its name is still checked). A self-signed server
/// certificate usually carries `CA:TRUE` (openssl's default), which WebPKI refuses as an end
/// entity (`CaUsedAsEndEntity`) even when it is a trust anchor; admins pointing `ca-file` at
/// exactly that certificate mean "trust this one".
#[derive(Debug)]
struct PinnedOrChain {
    pinned: Vec<CertificateDer<'static>>,
    chain: Arc<dyn ServerCertVerifier>,
}

impl ServerCertVerifier for PinnedOrChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(ok) => Ok(ok),
            Err(err) => {
                if !self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref())
                {
                    return Err(err);
                }
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// `accept-invalid-certs = true`: any certificate, any name. Signatures are still checked
/// so that the handshake itself stays sound.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(read_anchors(&missing)
            .unwrap_err()
            .text
            .contains("cannot read"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = read_anchors(&empty).unwrap_err();
        assert!(e.text.contains("holds no certificate"), "{e:?}");
        assert!(e.hint.unwrap().contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn ip_addresses_are_valid_server_names() {
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("imap.example.org").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
