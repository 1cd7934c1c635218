//! Issue 17, item 6: one HTTP client. The opencode download and the registry reads run against
//! HTTPS servers of the test's own, whose certificates a CA made per test signed, a CA the
//! binaries can trust only through `SSL_CERT_FILE`: with it they succeed, without it they stop
//! with one line naming it. And `HTTPS_PROXY` carries both: a CONNECT proxy in the test sees
//! every connection, to hosts (`*.test`) that only it can resolve.
//!
//! The servers are real: TLS fronts (tokio-rustls) before the plain file server of
//! `util::serve` (the GitHub API and its release asset) and before the password registry on
//! 127.0.0.1:5001, which hjk then reads over HTTPS.

use crate::util::registry::{copy_fixture, password, release_args, REGISTRY, USER};
use crate::util::{fake_elf, need, serve_listener, sha256_hex, tar_gz, Need, TestEnv, X86_64};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A CA of the test's own and one server certificate it signed, for `names` (host names and IP
/// addresses); `ca_pem` is the CA's PEM file, the one to name in `SSL_CERT_FILE`.
struct Pki {
    _dir: tempfile::TempDir,
    ca_pem: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

impl Pki {
    fn new(names: &[String]) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // a name of its own: a verifier finds an issuer by name, and two test CAs of one name
        // would fail as a bad signature, not as an unknown issuer
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        ca.distinguished_name.push(
            DnType::CommonName,
            format!("agent-images test CA {} {n}", std::process::id()),
        );
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(names.to_vec()).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone(), ca_cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = dir.path().join("test-ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
        Pki {
            _dir: dir,
            ca_pem,
            server: Arc::new(server),
        }
    }

    fn ca_file(&self) -> String {
        self.ca_pem.display().to_string()
    }
}

/// Runs `fut` on a runtime of its own, on a thread of its own, for the rest of the test binary
/// (each server's listener is the test's, on a port no other test has).
fn background(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fut)
    });
}

/// Passes bytes both ways until either side closes.
async fn pipe(a: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin, upstream: SocketAddr) {
    let mut a = a;
    if let Ok(mut b) = tokio::net::TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    }
}

/// An HTTPS front, listening on `listener`, for the plain HTTP server at `upstream`: TLS with
/// `pki`'s server certificate, then the bytes passed through. Counts the TLS sessions it
/// completed (a client that refused the certificate completes none).
fn tls_front(pki: &Pki, listener: TcpListener, upstream: SocketAddr) -> Arc<AtomicUsize> {
    let sessions = Arc::new(AtomicUsize::new(0));
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    let counted = sessions.clone();
    listener.set_nonblocking(true).unwrap();
    background(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    counted.fetch_add(1, Ordering::SeqCst);
                    pipe(tls, upstream).await;
                }
            });
        }
    });
    sessions
}

/// A CONNECT proxy on 127.0.0.1 that resolves every `<name>.test:<port>` to 127.0.0.1:<port>
/// (`.test` is reserved: nothing else resolves it), and records each target it was asked for.
struct ConnectProxy {
    url: String,
    targets: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let targets: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = targets.clone();
        background(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut conn = BufReader::new(tcp);
                    let mut line = String::new();
                    if conn.read_line(&mut line).await.is_err() {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if conn.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let mut words = line.split_whitespace();
                    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
                        let _ = conn
                            .get_mut()
                            .write_all(
                                b"HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\n\r\n",
                            )
                            .await;
                        return;
                    };
                    seen.lock().unwrap().push(target.to_string());
                    let upstream = target
                        .rsplit_once(':')
                        .filter(|(host, _)| host.ends_with(".test"))
                        .and_then(|(_, port)| port.parse::<u16>().ok())
                        .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
                    let Some(upstream) = upstream else {
                        let _ = conn
                            .get_mut()
                            .write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                            .await;
                        return;
                    };
                    let _ = conn
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    pipe(conn, upstream).await;
                });
            }
        });
        ConnectProxy { url, targets }
    }

    /// How many tunnels were asked for to `target` (`host:port`).
    fn tunnels_to(&self, target: &str) -> usize {
        self.targets
            .lock()
            .unwrap()
            .iter()
            .filter(|t| *t == target)
            .count()
    }
}

/// opencode `version`'s GitHub release over HTTPS on 127.0.0.1, as `host` names it: the API's
/// release document and the asset it links, behind a TLS front. Returns the API's base URL
/// (`OCX_GITHUB_API_URL`), the front's `host:port` and its TLS session count.
fn github_over_https(pki: &Pki, host: &str, version: &str) -> (String, String, Arc<AtomicUsize>) {
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = format!("{host}:{}", front.local_addr().unwrap().port());
    let asset = tar_gz("opencode", &fake_elf(X86_64, 0));
    let release = format!(
        r#"{{"tag_name": "v{version}", "assets": [{{"name": "opencode-linux-x64.tar.gz", "digest": "sha256:{}", "browser_download_url": "https://{authority}/dl/opencode-linux-x64.tar.gz"}}]}}"#,
        sha256_hex(&asset)
    );
    let mut files = BTreeMap::new();
    files.insert("/dl/opencode-linux-x64.tar.gz".to_string(), asset);
    files.insert(
        format!("/repos/sst/opencode/releases/tags/v{version}"),
        release.into_bytes(),
    );
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = plain.local_addr().unwrap();
    serve_listener(plain, files);
    let sessions = tls_front(pki, front, upstream);
    (format!("https://{authority}"), authority, sessions)
}

/// An ocx project on the fake podman whose opencode `version` comes from the GitHub API at
/// `api`.
fn github_project(api: &str, version: &str) -> TestEnv {
    let mut env = TestEnv::new();
    env.fake("podman");
    env.images_exist(&[("myproject-dev", "null")]);
    env.set("OCX_GITHUB_API_URL", api);
    env.write(
        "project/ocx.json",
        &format!(r#"{{"custom_base_image": "myproject-dev", "opencode_version": "{version}", "uid": 1000, "gid": 1000}}"#),
    );
    env
}

fn cached_opencode(env: &TestEnv, version: &str) -> Option<Vec<u8>> {
    std::fs::read(env.root().join(format!(
        "cache/ocx/opencode/{version}/opencode-linux-x64/opencode"
    )))
    .ok()
}

/// An address of this machine that is not loopback (hjk speaks plain HTTP to a loopback
/// registry, HTTPS to any other): the one its default route leaves from. A UDP `connect` sends
/// nothing; it only picks the source address.
fn host_ip() -> IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    probe
        .connect("192.0.2.1:9")
        .or_else(|_| probe.connect("203.0.113.1:9"))
        .expect("this machine has no route off loopback, so no registry address that hjk reads over HTTPS");
    let ip = probe.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

/// `hjk images release --dry-run` of the release fixture to `repo` (a repository on the
/// password registry, through an HTTPS front): it reads the registry (is it there, which tags
/// exist) and plans the builds, on the fake podman.
fn release_env(pw: &str) -> (TestEnv, String) {
    let mut env = TestEnv::new();
    env.fake("podman");
    env.set("HJK_REGISTRY_CREDS", format!("{USER}:{pw}"));
    env.set("HJK_AUTH", "raw");
    let images = copy_fixture(&env);
    (env, images)
}

fn dry_run_release<'a>(images: &'a str, repo: &'a str, meta: &'a str) -> Vec<&'a str> {
    let mut args = release_args(images, repo, "linux/amd64", meta);
    args.extend(["--backend", "podman", "--dry-run"]);
    args
}

fn fresh(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("hjk-test/{name}-{}-{nanos}", std::process::id())
}

fn password_registry() -> SocketAddr {
    REGISTRY.parse().unwrap()
}

/// (a) The GitHub source over HTTPS: refused without `SSL_CERT_FILE`, in one line that names
/// it (exit 2, nothing cached, nothing built); downloaded, checked and cached with it.
#[test]
fn the_opencode_download_trusts_a_ca_only_ssl_cert_file_names() {
    let pki = Pki::new(&["127.0.0.1".into()]);
    let (api, authority, sessions) = github_over_https(&pki, "127.0.0.1", "2.0.1");
    let mut env = github_project(&api, "2.0.1");
    env.ocx(&["build"])
        .bad_input()
        .stderr_has(format!(
            "error: GET {api}/repos/sst/opencode/releases/tags/v2.0.1: the TLS certificate of {authority} is not signed by a CA this machine trusts (invalid peer certificate: UnknownIssuer); if your own CA signs it"
        ))
        .stderr_has("name the CA's PEM file in SSL_CERT_FILE")
        .run();
    assert_eq!(sessions.load(Ordering::SeqCst), 0);
    assert!(cached_opencode(&env, "2.0.1").is_none());
    env.assert_nothing_built();

    // a CA file that does not hold the signer says so
    let other = Pki::new(&["127.0.0.1".into()]);
    env.set("SSL_CERT_FILE", other.ca_file());
    env.ocx(&["build"])
        .bad_input()
        .stderr_has(format!(
            "SSL_CERT_FILE={} does not hold the CA that signed it",
            other.ca_file()
        ))
        .run();

    env.set("SSL_CERT_FILE", pki.ca_file());
    env.ocx(&["build"]).run();
    assert_eq!(cached_opencode(&env, "2.0.1"), Some(fake_elf(X86_64, 0)));
    // the release document and the asset, each over TLS
    assert!(sessions.load(Ordering::SeqCst) >= 2);
}

/// (b) The registry over HTTPS (the password registry behind a TLS front on this machine's
/// address): a release's reads fail without `SSL_CERT_FILE` in one line naming it, at once
/// (a refused certificate is not retried), and succeed with it.
#[test]
#[ignore = "needs registry: scripts/test-engines.sh up, then make test"]
fn the_registry_trusts_a_ca_only_ssl_cert_file_names() {
    need(&[Need::Registry]);
    let pw = password();
    let ip = host_ip();
    let pki = Pki::new(&[ip.to_string()]);
    let front = TcpListener::bind((ip, 0)).unwrap();
    let host = format!("{ip}:{}", front.local_addr().unwrap().port());
    let sessions = tls_front(&pki, front, password_registry());
    let repo = format!("{host}/{}", fresh("tls"));
    let (mut env, images) = release_env(&pw);
    let meta = env.root().join("meta.json").display().to_string();
    let args = dry_run_release(&images, &repo, &meta);

    let out = env
        .hjk(&args)
        .bad_input()
        .stderr_has(format!(
            "error: registry {host}: connecting to read {repo}: the TLS certificate of {host} is not signed by a CA this machine trusts"
        ))
        .stderr_has("name the CA's PEM file in SSL_CERT_FILE")
        .run();
    assert!(!out.stderr.contains("trying again"), "{}", out.stderr);
    assert_eq!(sessions.load(Ordering::SeqCst), 0);

    env.set("SSL_CERT_FILE", pki.ca_file());
    let out = env.hjk(&args).run();
    assert!(
        out.stdout
            .contains(&format!(" --tag {repo}:stage-base-amd64-")),
        "{}",
        out.stdout
    );
    assert!(sessions.load(Ordering::SeqCst) >= 1);
}

/// (c) `HTTPS_PROXY`: the download goes through it (its host resolves only there), and trusts
/// the CA `SSL_CERT_FILE` names through the tunnel.
#[test]
fn https_proxy_carries_the_download() {
    let pki = Pki::new(&["opencode.test".into()]);
    let proxy = ConnectProxy::start();
    let (api, authority, _) = github_over_https(&pki, "opencode.test", "2.0.3");
    let mut env = github_project(&api, "2.0.3");
    env.set("SSL_CERT_FILE", pki.ca_file());
    // the release document is asked for, the name does not resolve, and no tunnel was made
    let unresolved = |env: &TestEnv| {
        env.ocx(&["build"])
            .status(1)
            .stderr_has(format!(
                "GET {api}/repos/sst/opencode/releases/tags/v2.0.3: "
            ))
            .run();
        assert_eq!(proxy.tunnels_to(&authority), 0);
    };
    // without the proxy the name does not resolve
    unresolved(&env);
    // NO_PROXY names it: no tunnel, so again nothing resolves it
    env.set("HTTPS_PROXY", &proxy.url);
    env.set("NO_PROXY", "opencode.test");
    unresolved(&env);
    env.vars.remove("NO_PROXY");
    env.ocx(&["build"]).run();
    assert_eq!(cached_opencode(&env, "2.0.3"), Some(fake_elf(X86_64, 0)));
    // the release document, then the asset (the test's file server closes each connection)
    assert_eq!(proxy.tunnels_to(&authority), 2, "{:?}", proxy.targets);
}

/// (c) for the registry: a release's reads go through `HTTPS_PROXY` to a host only it
/// resolves, and trust the CA `SSL_CERT_FILE` names through the tunnel.
#[test]
#[ignore = "needs registry: scripts/test-engines.sh up, then make test"]
fn https_proxy_carries_the_registry() {
    need(&[Need::Registry]);
    let pki = Pki::new(&["registry.test".into()]);
    let proxy = ConnectProxy::start();
    let pw = password();
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("registry.test:{}", front.local_addr().unwrap().port());
    tls_front(&pki, front, password_registry());
    let repo = format!("{host}/{}", fresh("proxy"));
    let (mut env, images) = release_env(&pw);
    env.set("SSL_CERT_FILE", pki.ca_file());
    env.set("HTTPS_PROXY", &proxy.url);
    let meta = env.root().join("meta.json").display().to_string();
    let out = env.hjk(&dry_run_release(&images, &repo, &meta)).run();
    assert!(
        out.stdout
            .contains(&format!(" --tag {repo}:stage-base-amd64-")),
        "{}",
        out.stdout
    );
    assert!(proxy.tunnels_to(&host) >= 1, "{:?}", proxy.targets);
}
