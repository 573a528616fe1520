//! TLS for the connections kbdump opens itself (the replication stream of
//! a snapshot, which the client library cannot carry), configured from the
//! same PEM files and options as the library's connections: the CA given
//! (else the system's roots), a client certificate when given, and no
//! verification at all with `--tls-insecure`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// What a TLS connection of our own needs: the PEM bytes of the CA and of
/// the client certificate and key, when given.
#[derive(Debug, Clone, Default)]
pub struct TlsPems {
    pub ca: Option<Vec<u8>>,
    pub client: Option<(Vec<u8>, Vec<u8>)>,
    pub insecure: bool,
}

/// The rustls configuration for `pems`; the error says which part is
/// wrong.
pub fn client_config(pems: &TlsPems) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = if pems.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
    } else {
        builder.with_root_certificates(roots(pems.ca.as_deref())?)
    };
    let config = match &pems.client {
        Some((cert, key)) => {
            let chain = certificates(cert, "client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| format!("client key: not a PEM private key ({e})"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate and key: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name the server's certificate must carry: the URL's host (an IP
/// address is matched against the certificate's IP SANs).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("TLS server name {host:?}: {e}"))
}

fn roots(ca: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in certificates(pem, "CA certificate")? {
                store
                    .add(cert)
                    .map_err(|e| format!("CA certificate: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("no CA certificate given and none found on the system \
                            (pass --tls-ca FILE)"
                    .into());
            }
        }
    }
    Ok(store)
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: not PEM ({e})"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate in the file"));
    }
    Ok(certs)
}

/// `--tls-insecure`: any certificate is taken (the signatures of the
/// handshake are still checked, so the session is with whoever holds the
/// key of the certificate shown; who that is goes unverified).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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
    fn files_that_are_not_pem_are_refused_naming_the_part() {
        let bad = TlsPems {
            ca: Some(b"not a certificate".to_vec()),
            ..TlsPems::default()
        };
        let err = client_config(&bad).unwrap_err();
        assert!(err.contains("CA certificate"), "{err}");
        let insecure = TlsPems {
            insecure: true,
            ..TlsPems::default()
        };
        assert!(client_config(&insecure).is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("redis.example").is_ok());
    }
}
