//! Throwaway certificates for TLS tests, made with the `openssl` command
//! (`$SLUICE_OPENSSL_BIN`, else `openssl` on `PATH`) in a temporary directory
//! that goes away with them: a CA, a server certificate for `127.0.0.1` and
//! `localhost` (subjectAltName `IP:127.0.0.1, DNS:localhost`) and a client
//! certificate, all ECDSA P-256 and valid for a day; and a Google service
//! account's key ([`ServiceAccountKey`]), RSA as Google's are.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// The extensions of each certificate, as an `openssl` config file.
const EXTENSIONS: &str = "\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// A CA and the server and client certificates it signed; see the module
/// documentation. Every file is PEM; keys are unencrypted PKCS#8.
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// Makes a new CA and its server and client certificates.
    pub fn generate() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-certs-")
            .tempdir()
            .context("creating the certificates' temporary directory")?;
        let certs = Self { dir };
        let config = certs.path("openssl.cnf");
        std::fs::write(&config, EXTENSIONS)
            .with_context(|| format!("writing {}", config.display()))?;
        let config = config.to_string_lossy().into_owned();
        let days = "1";

        let (ca, ca_key) = (certs.ca_file(), certs.path("ca-key.pem"));
        // Each CA its own name, so a client trusting another one sees an
        // unknown issuer, as it would in life.
        let unique = certs.dir.path().file_name().unwrap_or_default();
        let ca_name = format!("/CN=Sluice test CA {}", unique.to_string_lossy());
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .arg("-out")
        .arg(&ca_key)
        .run()?;
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-config",
            &config,
            "-extensions",
            "ca",
        ])
        .args(["-subj", &ca_name, "-days", days, "-key"])
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca)
        .run()?;

        for (name, subject) in [("server", "/CN=localhost"), ("client", "/CN=sluice")] {
            let key = certs.path(&format!("{name}-key.pem"));
            let request = certs.path(&format!("{name}.csr"));
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .arg("-out")
            .arg(&key)
            .run()?;
            openssl(&["req", "-new", "-config", &config, "-subj", subject, "-key"])
                .arg(&key)
                .arg("-out")
                .arg(&request)
                .run()?;
            openssl(&["x509", "-req", "-days", days, "-set_serial", "1"])
                .args(["-extfile", &config, "-extensions", name, "-in"])
                .arg(&request)
                .arg("-CA")
                .arg(&ca)
                .arg("-CAkey")
                .arg(&ca_key)
                .arg("-out")
                .arg(certs.path(&format!("{name}.pem")))
                .run()?;
        }
        Ok(certs)
    }

    /// The CA certificate: what clients and etcd (`--trusted-ca-file`) trust.
    pub fn ca_file(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// etcd's certificate, for `127.0.0.1` and `localhost`.
    pub fn server_cert_file(&self) -> PathBuf {
        self.path("server.pem")
    }

    pub fn server_key_file(&self) -> PathBuf {
        self.path("server-key.pem")
    }

    /// The control plane's client certificate, for etcd's `--client-cert-auth`.
    pub fn client_cert_file(&self) -> PathBuf {
        self.path("client.pem")
    }

    pub fn client_key_file(&self) -> PathBuf {
        self.path("client-key.pem")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

struct Openssl(Command);

/// A throwaway Google service account key (RSA 2048, made with `openssl`):
/// its JSON key file, naming the token endpoint a test runs, and a check of
/// the JWTs it signs.
pub struct ServiceAccountKey {
    dir: tempfile::TempDir,
}

impl ServiceAccountKey {
    pub const EMAIL: &'static str = "sluice-test@test-project.iam.gserviceaccount.com";

    /// A new key whose JSON file names `token_uri`.
    pub fn generate(token_uri: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-sa-")
            .tempdir()
            .context("creating the key's temporary directory")?;
        let key = Self { dir };
        let pem = key.path("key.pem");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .arg("-out")
        .arg(&pem)
        .run()?;
        openssl(&["pkey", "-pubout", "-in"])
            .arg(&pem)
            .arg("-out")
            .arg(key.path("public.pem"))
            .run()?;
        let private_key = std::fs::read_to_string(&pem)?;
        let json = serde_json::json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "0123456789abcdef",
            "private_key": private_key,
            "client_email": Self::EMAIL,
            "client_id": "1",
            "token_uri": token_uri,
        });
        std::fs::write(key.key_file(), serde_json::to_vec_pretty(&json)?)?;
        Ok(key)
    }

    /// The JSON key's path.
    pub fn key_file(&self) -> PathBuf {
        self.path("key.json")
    }

    /// The claims of `jwt` if this key signed it (RS256), checked by
    /// `openssl`.
    pub fn verify(&self, jwt: &str) -> anyhow::Result<serde_json::Value> {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = jwt.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bail!("not a JWT: {jwt}");
        };
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header)?)?;
        if header["alg"] != "RS256" {
            bail!("signed with {}", header["alg"]);
        }
        let signed = self.path("signed.txt");
        std::fs::write(
            &signed,
            format!("{}.{claims}", jwt.split('.').next().unwrap_or("")),
        )?;
        let signature_file = self.path("signature.bin");
        std::fs::write(&signature_file, URL_SAFE_NO_PAD.decode(signature)?)?;
        openssl(&["dgst", "-sha256", "-verify"])
            .arg(self.path("public.pem"))
            .arg("-signature")
            .arg(&signature_file)
            .arg(&signed)
            .run()?;
        Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims)?)?)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn openssl(args: &[&str]) -> Openssl {
    let binary = std::env::var_os("SLUICE_OPENSSL_BIN").unwrap_or_else(|| "openssl".into());
    let mut command = Command::new(binary);
    command.args(args);
    Openssl(command)
}

impl Openssl {
    fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.0.arg(arg);
        self
    }

    fn args<const N: usize>(mut self, args: [&str; N]) -> Self {
        self.0.args(args);
        self
    }

    fn run(mut self) -> anyhow::Result<()> {
        let shown = format!("{:?}", self.0);
        let output = self
            .0
            .output()
            .with_context(|| format!("running {shown} (is openssl installed?)"))?;
        if !output.status.success() {
            bail!(
                "{shown} failed with {}:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl std::fmt::Debug for TestCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCerts")
            .field("dir", &self.dir.path())
            .finish()
    }
}
