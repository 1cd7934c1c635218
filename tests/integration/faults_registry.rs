//! Issue 18 against a real registry (the password one on 127.0.0.1:5001) and real podman and
//! dockerd: a flaky registry (a proxy in the test that injects 500s, resets, hangs and delays
//! per kind of request), tags moved by compare-and-swap under two concurrent releases, the
//! metadata file as an output (a planted link, an input as output, a full disk after the tags
//! moved), `--gates-dir` checked before any build, credentials a killed run left, the local
//! stage images, `merge` of digests the registry lacks and a variant directory linked outside
//! the images directory.

use crate::util::process::{hjk_bin, spawn_group};
use crate::util::real::PodmanStore;
use crate::util::registry::{
    assert_published, auth_dirs, fake_gate_tools, raw, read_meta, release_args, setup, uploads,
    Setup, REGISTRY, USER,
};
use crate::util::{need, wait, Need, TestEnv};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The kinds of registry request a fault can be aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ManifestGet,
    ManifestHead,
    /// A manifest PUT under a tag.
    TagPut,
    /// A manifest PUT by digest (an index).
    IndexPut,
    /// The POST that starts a blob upload session.
    BlobPost,
    BlobPatch,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `500 Internal Server Error`, after reading the request.
    Status500,
    /// The connection is reset after the request was read, with no answer.
    Reset,
    /// The request is read and never answered.
    Hang,
    /// The request reaches the registry this much later.
    Delay(Duration),
}

struct Rule {
    kind: Kind,
    fault: Fault,
    /// How many matching requests get it (`usize::MAX`: all).
    times: usize,
    /// Only requests hjk makes itself (its user agent, `agent_images::http::USER_AGENT`), not
    /// the engine's pushes.
    hjk_only: bool,
}

/// A proxy in front of the password registry that injects faults per kind of request. Each
/// request gets its own upstream connection (`Connection: close` both ways), so a fault hits
/// exactly one request.
struct Proxy {
    port: u16,
    rules: Arc<Mutex<Vec<Rule>>>,
    /// `<kind> <method> <path> <fault or ->`, one per request.
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            rules: Arc::default(),
            log: Arc::default(),
            stop: Arc::default(),
        };
        let (rules, log, stop) = (proxy.rules.clone(), proxy.log.clone(), proxy.stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (rules, log, stop) = (rules.clone(), log.clone(), stop.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &rules, &log, &stop);
                });
            }
        });
        proxy
    }

    /// `fault` for the next `times` requests of `kind` (hjk's own, with `hjk_only`).
    fn inject(&self, kind: Kind, fault: Fault, times: usize, hjk_only: bool) {
        self.rules.lock().unwrap().push(Rule {
            kind,
            fault,
            times,
            hjk_only,
        });
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// `host:port/path` of `repo` (a repository on the password registry) through the proxy.
    fn repo(&self, repo: &str) -> String {
        let path = repo.split_once('/').unwrap().1;
        format!("127.0.0.1:{}/{path}", self.port)
    }

    /// A skopeo auth file for the proxy's host too (`auth` is the password registry's): what a
    /// release through the proxy published names the proxy's host in its base labels.
    fn authfile(&self, env: &TestEnv, pw: &str) -> std::path::PathBuf {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{pw}", USER));
        let p = env.root().join("proxy-auth.json");
        std::fs::write(
            &p,
            format!(
                r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"{token}"}},"{REGISTRY}":{{"auth":"{token}"}}}}}}"#,
                self.port
            ),
        )
        .unwrap();
        p
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn classify(method: &str, path: &str) -> Kind {
    let path = path.split('?').next().unwrap_or(path);
    if let Some((_, reference)) = path.rsplit_once("/manifests/") {
        return match method {
            "GET" => Kind::ManifestGet,
            "HEAD" => Kind::ManifestHead,
            "PUT" if reference.starts_with("sha256:") => Kind::IndexPut,
            "PUT" => Kind::TagPut,
            _ => Kind::Any,
        };
    }
    match (method, path.contains("/blobs/uploads/")) {
        ("POST", true) => Kind::BlobPost,
        ("PATCH", true) => Kind::BlobPatch,
        _ => Kind::Any,
    }
}

/// How a message's body is framed.
enum Framing {
    None,
    Length(u64),
    Chunked,
}

fn framing(head: &[String]) -> Framing {
    let header = |name: &str| {
        head.iter().skip(1).find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Framing::Chunked
    } else {
        match header("content-length").and_then(|v| v.parse().ok()) {
            Some(n) => Framing::Length(n),
            None => Framing::None,
        }
    }
}

/// Copies one body with its framing as it is (chunk sizes included).
fn copy_body(from: &mut impl BufRead, to: &mut impl Write, f: &Framing) -> std::io::Result<()> {
    match f {
        Framing::None => Ok(()),
        Framing::Length(n) => std::io::copy(&mut from.take(*n), to).map(drop),
        Framing::Chunked => loop {
            let mut size_line = String::new();
            from.read_line(&mut size_line)?;
            to.write_all(size_line.as_bytes())?;
            let size = u64::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if size == 0 {
                // trailers, then the empty line
                loop {
                    let mut l = String::new();
                    from.read_line(&mut l)?;
                    to.write_all(l.as_bytes())?;
                    if l == "\r\n" || l.is_empty() {
                        return Ok(());
                    }
                }
            }
            std::io::copy(&mut from.take(size + 2), to)?;
        },
    }
}

fn handle(
    client: TcpStream,
    rules: &Mutex<Vec<Rule>>,
    log: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    // a client that tries TLS first (BuildKit) falls back to plain HTTP when it gets a plain
    // HTTP answer, as from the registry itself
    let mut first = [0u8; 1];
    if client.peek(&mut first)? == 1 && first[0] == 0x16 {
        let mut c = client;
        c.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        )?;
        return Ok(());
    }
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let mut words = head[0].split_whitespace();
    let (method, path) = (
        words.next().unwrap_or("").to_string(),
        words.next().unwrap_or("").to_string(),
    );
    let ours = format!("user-agent: {}", agent_images::http::USER_AGENT).to_ascii_lowercase();
    let hjk = head
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with(&ours));
    let kind = classify(&method, &path);
    let fault = {
        let mut rules = rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| {
                r.times > 0 && (r.kind == kind || r.kind == Kind::Any) && (hjk || !r.hjk_only)
            })
            .map(|r| {
                r.times = r.times.saturating_sub(1);
                r.fault
            })
    };
    log.lock().unwrap().push(format!(
        "{kind:?} {method} {path} {}",
        fault.map(|f| format!("{f:?}")).unwrap_or("-".into())
    ));
    let body = framing(&head);
    match fault {
        Some(Fault::Status500) => {
            copy_body(&mut reader, &mut std::io::sink(), &body)?;
            let mut c = client;
            c.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 8\r\nConnection: close\r\n\r\ninjected",
            )?;
            return Ok(());
        }
        Some(Fault::Reset) => {
            copy_body(&mut reader, &mut std::io::sink(), &body)?;
            use std::os::fd::AsRawFd;
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on a socket we own, with a valid struct; closing it then
            // sends a reset instead of a FIN
            unsafe {
                libc::setsockopt(
                    client.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &linger as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            return Ok(());
        }
        Some(Fault::Hang) => {
            // the fault itself: a registry that never answers, until the proxy stops
            wait::holds(Duration::MAX, || stop.load(Ordering::SeqCst));
            return Ok(());
        }
        // the fault itself: a slow answer
        Some(Fault::Delay(d)) => std::thread::sleep(d),
        None => {}
    }
    let mut up = TcpStream::connect(REGISTRY)?;
    let mut out = Vec::new();
    for (i, h) in head.iter().enumerate() {
        if i > 0 && h.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    up.write_all(&out)?;
    copy_body(&mut reader, &mut up, &body)?;
    // the registry closes after its answer (we asked it to), and so do we
    let mut c = client;
    std::io::copy(&mut up, &mut c)?;
    c.shutdown(std::net::Shutdown::Both)
}

/// Runs hjk to its end (at most `limit`), returning exit code, stdout, stderr and the time.
fn run_hjk(
    env: &TestEnv,
    args: &[&str],
    limit: Duration,
) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(hjk_bin())
        .args(args)
        .env_clear()
        .envs(&env.vars)
        .current_dir(env.project())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (o, e) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let o = std::thread::spawn(move || std::io::read_to_string(o).unwrap_or_default());
    let e = std::thread::spawn(move || std::io::read_to_string(e).unwrap_or_default());
    let Some(status) = wait::poll(limit, || child.try_wait().unwrap()) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "hjk {args:?} did not end within {limit:?}:\n{}",
            e.join().unwrap()
        )
    };
    (
        status.code(),
        o.join().unwrap(),
        e.join().unwrap(),
        started.elapsed(),
    )
}

/// A one-platform release of the fixture into `s.repo` through `proxy` (faults injected) on
/// `backend`, which must succeed within `limit_s` seconds despite the faults and publish the
/// release whole: its stderr, the proxy's log (one line per request, the fault it got or ` -`)
/// and the lines of that log that got a fault.
fn release_through(
    proxy: &Proxy,
    s: &Setup,
    backend: &str,
    limit_s: u64,
) -> (String, Vec<String>, Vec<String>) {
    let via = proxy.repo(&s.repo);
    let meta = s.env.root().join("meta.json").display().to_string();
    let mut args = release_args(&s.images, &via, "linux/amd64", &meta);
    args.extend(["--backend", backend, "--auth", "raw"]);
    let (code, stdout, stderr, took) = run_hjk(&s.env, &args, Duration::from_secs(limit_s));
    let log = proxy.log();
    eprintln!("{backend} released through the flaky proxy in {took:?}; log: {log:#?}");
    assert_eq!(code, Some(0), "{stdout}\n{stderr}\n{log:#?}");
    let injected = log.iter().filter(|l| !l.ends_with(" -")).cloned().collect();
    let meta = read_meta(Path::new(&meta));
    assert_published(
        &proxy.authfile(&s.env, &s.pw),
        &via,
        &meta,
        "v0.1.0",
        &["amd64"],
    );
    (stderr, log, injected)
}

/// Items 8 and 12: one injected 500 on each kind of request hjk makes (a manifest GET, a
/// manifest HEAD, a tag PUT, an index PUT) and a reset connection no longer fail a release: each
/// is tried again, saying so, and the release is published whole. A digest in those lines is
/// `repo@sha256:...`, not `repo:sha256:...`.
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn podman_a_500_or_a_reset_on_each_kind_of_request_does_not_fail_a_release() {
    need(&[Need::Podman, Need::Registry]);
    let s = setup("faults-flaky");
    let proxy = Proxy::start();
    for kind in [
        Kind::ManifestGet,
        Kind::ManifestHead,
        Kind::TagPut,
        Kind::IndexPut,
    ] {
        proxy.inject(kind, Fault::Status500, 1, true);
    }
    proxy.inject(Kind::ManifestGet, Fault::Reset, 1, true);
    let (stderr, log, injected) = release_through(&proxy, &s, "podman", 600);
    for want in ["ManifestGet", "ManifestHead", "TagPut", "IndexPut"] {
        assert!(
            injected
                .iter()
                .any(|l| l.starts_with(want) && l.ends_with("Status500")),
            "no 500 on {want}: {log:#?}"
        );
    }
    assert!(injected.iter().any(|l| l.ends_with("Reset")), "{log:#?}");
    let retries: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("trying again in"))
        .collect();
    // the HEAD's 500 carries no digest header, and oci-client then asks with a GET itself
    assert!(retries.len() >= 4, "{stderr}");
    assert!(
        retries.iter().any(|l| l.contains("it answered HTTP 500")),
        "{stderr}"
    );
    assert!(
        !stderr.contains(":sha256:"),
        "a digest shown as a tag: {stderr}"
    );
}

/// Item 8: a blob upload (hjk pushes the OCI layouts buildx writes) whose session the registry
/// fails (a 500 on its POST, a reset PATCH) is started again from its first byte.
#[test]
#[ignore = "needs docker and registry: scripts/test-engines.sh up, then make test"]
fn docker_a_failed_blob_upload_session_is_started_again() {
    need(&[Need::Docker, Need::Registry]);
    let s = setup("faults-blob");
    let proxy = Proxy::start();
    proxy.inject(Kind::BlobPost, Fault::Status500, 1, true);
    proxy.inject(Kind::BlobPatch, Fault::Reset, 1, true);
    proxy.inject(Kind::IndexPut, Fault::Status500, 1, true);
    let (stderr, log, injected) = release_through(&proxy, &s, "docker", 900);
    assert!(
        injected.iter().any(|l| l.starts_with("BlobPost")),
        "{log:#?}"
    );
    assert!(
        injected.iter().any(|l| l.starts_with("BlobPatch")),
        "{log:#?}"
    );
    assert!(stderr.contains("pushing blob sha256:"), "{stderr}");
}

/// Item 8: a registry that accepts the connection and never answers ended nowhere; now the run
/// ends after `--registry-timeout` (or `HJK_REGISTRY_TIMEOUT`) with one line naming the host
/// and the limit, before anything is built.
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn a_registry_that_never_answers_ends_the_run_in_one_line() {
    need(&[Need::Podman, Need::Registry]);
    let Setup {
        mut env, images, ..
    } = setup("faults-hung");
    let proxy = Proxy::start();
    proxy.inject(Kind::Any, Fault::Hang, usize::MAX, false);
    let via = format!("127.0.0.1:{}/hjk-test/hung", proxy.port);
    let meta = env.root().join("meta.json").display().to_string();
    let mut args = release_args(&images, &via, "linux/amd64", &meta);
    args.extend([
        "--backend",
        "podman",
        "--auth",
        "raw",
        "--registry-timeout",
        "2",
    ]);
    let (code, _, stderr, took) = run_hjk(&env, &args, Duration::from_secs(60));
    eprintln!("release against a hung registry ended after {took:?}: {stderr}");
    assert_eq!(code, Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with(&format!(
            "error: registry 127.0.0.1:{} did not answer within 2 s while ",
            proxy.port
        )),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");

    // merge, with the limit from the environment
    let part = env.root().join("part.json");
    std::fs::write(
        &part,
        format!(r#"{{"schema": 1, "registry": "{via}", "version": "v0.1.0", "partial": true, "variants": []}}"#),
    )
    .unwrap();
    env.set("HJK_REGISTRY_TIMEOUT", "3");
    let (code, _, stderr, took) = run_hjk(
        &env,
        &["images", "merge", part.to_str().unwrap(), "--auth", "raw"],
        Duration::from_secs(60),
    );
    eprintln!("merge against a hung registry ended after {took:?}: {stderr}");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("did not answer within 3 s"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{stderr}"
    );
}

/// Item 6: two concurrent releases of one version that differ in one variant, with every tag
/// PUT delayed 3 s: both exited 0 and both metadata files claimed `top-v0.1.0`, while the
/// registry held one of them. Now tags move by compare-and-swap (and releases on one machine
/// take turns): at most one succeeds, its metadata names what the registry holds, and the other
/// says which tag stopped it.
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn podman_two_concurrent_releases_never_both_claim_one_version() {
    need(&[Need::Podman, Need::Registry]);
    let Setup {
        env,
        images,
        auth,
        repo,
        ..
    } = setup("faults-race");
    let proxy = Proxy::start();
    proxy.inject(
        Kind::TagPut,
        Fault::Delay(Duration::from_secs(3)),
        usize::MAX,
        true,
    );
    let via = proxy.repo(&repo);
    // the base and middle images in the registry first (no tag), so the race is the promotion
    let prime = env.root().join("prime.json").display().to_string();
    let mut args = release_args(&images, &via, "linux/amd64", &prime);
    args.extend(["--backend", "podman", "--auth", "raw", "--push-by-digest"]);
    let (code, _, stderr, _) = run_hjk(&env, &args, Duration::from_secs(600));
    assert_eq!(code, Some(0), "{stderr}");
    // the second checkout: the same hierarchy with another top
    let other = env.root().join("other");
    crate::util::copy_dir(Path::new(&images), &other);
    std::fs::write(
        other.join("top/Dockerfile"),
        "ARG BASE_IMAGE=hjk-release-fixture:middle\nFROM ${BASE_IMAGE}\nARG VERSION=dev\nRUN echo \"other top ${VERSION}\" > /etc/hjk-variant\n",
    )
    .unwrap();
    let other = other.display().to_string();
    let mut results = Vec::new();
    std::thread::scope(|scope| {
        let runs: Vec<_> = [("a", images.as_str()), ("b", other.as_str())]
            .into_iter()
            .map(|(name, dir)| {
                let meta = env
                    .root()
                    .join(format!("{name}.json"))
                    .display()
                    .to_string();
                let env = &env;
                let via = &via;
                let handle = scope.spawn(move || {
                    let mut args = release_args(dir, via, "linux/amd64", &meta);
                    args.extend(["--backend", "podman", "--auth", "raw"]);
                    run_hjk(env, &args, Duration::from_secs(900))
                });
                (name, env.root().join(format!("{name}.json")), handle)
            })
            .collect();
        for (name, meta, h) in runs {
            let (code, stdout, stderr, took) = h.join().unwrap();
            eprintln!(
                "release {name}: exit {code:?} after {took:?}; {}",
                stderr.lines().last().unwrap_or("")
            );
            results.push((name, meta, code, stdout, stderr));
        }
    });
    let ok: Vec<_> = results.iter().filter(|r| r.2 == Some(0)).collect();
    assert!(
        ok.len() <= 1,
        "both releases exited 0: {:#?}",
        results.iter().map(|r| &r.4).collect::<Vec<_>>()
    );
    let held = raw(&auth, &format!("{repo}:top-v0.1.0"), false)
        .map(|b| format!("sha256:{}", crate::util::sha256_hex(&b)));
    for (name, meta, code, _, stderr) in &results {
        let path = meta.as_path();
        if *code == Some(0) {
            let m = read_meta(path);
            let top = m["variants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == "top")
                .unwrap();
            assert_eq!(
                top["index_digest"].as_str(),
                held.as_deref(),
                "release {name} claims top-v0.1.0 at another digest than the registry's"
            );
        } else {
            assert!(
                !path.exists(),
                "release {name} failed but wrote {}",
                path.display()
            );
            let errors: Vec<&str> = stderr
                .lines()
                .filter(|l| l.starts_with("error: "))
                .collect();
            assert_eq!(errors.len(), 1, "{stderr}");
            assert!(
                errors[0].contains("top-v0.1.0"),
                "which tag stopped it: {stderr}"
            );
        }
    }
}

/// The local images a release built under their staging tags, by repository.
fn stage_images(engine: &str, repo: &str) -> Vec<String> {
    let out = Command::new(engine)
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(repo) && l.contains(":stage-"))
        .map(String::from)
        .collect()
}

/// A tmpfs of 256 KiB mounted at `dir` (root only), unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success());
        SmallDisk(dir.to_owned())
    }

    /// Fills it up: a file grows until the device says ENOSPC.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("fill")).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Items 3, 9 and 13 on one repository (7 is the next test). A link planted at the metadata file's old fixed
/// temp name (`out.json.tmp`) redirected the write into its target; now the temp name is fresh
/// and random. `--metadata-file D/variants.yaml` replaced the hierarchy's own input; now it is
/// refused. An unwritable `--gates-dir` was found after everything was built and pushed; now
/// before the first build, naming the flag. And every release left its stage-* images locally.
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn podman_the_metadata_file_is_an_output_written_safely_and_checks_come_first() {
    need(&[Need::Podman, Need::Registry]);
    let Setup {
        env, images, repo, ..
    } = setup("faults-output");
    let release = |env: &TestEnv, meta: &str, extra: &[&str]| {
        release_on_podman(env, &images, &repo, meta, extra)
    };
    let out = env.root().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let meta = out.join("out.json");
    let meta_s = meta.display().to_string();

    // item 9: --gates-dir under a file, before anything is built or pushed
    fake_gate_tools(&env);
    std::fs::write(env.root().join("a-file"), "x").unwrap();
    let gates = env.root().join("a-file/gates").display().to_string();
    let (code, _, stderr, _) = release(&env, &meta_s, &["--scan", "--gates-dir", &gates]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("--gates-dir {gates}: ")),
        "{stderr}"
    );
    assert_eq!(uploads(&repo), 0, "something was pushed before the check");

    // the first release; item 13: no stage-* image is left locally
    let (code, _, stderr, _) = release(&env, &meta_s, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("removed the 3 local stage-* image(s)"),
        "{stderr}"
    );
    assert_eq!(stage_images("podman", &repo), Vec::<String>::new());

    // item 3: a link at the old temp name is never followed
    let victim = env.root().join("victim.txt");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, out.join("out.json.tmp")).unwrap();
    let (code, _, stderr, _) = release(&env, &meta_s, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let m = read_meta(&meta);
    assert_eq!(m["variants"].as_array().unwrap().len(), 3);
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "out.json" && n != "out.json.tmp")
        .collect();
    assert_eq!(left, Vec::<String>::new(), "temporary files left");

    // an input as the output
    let yaml = Path::new(&images).join("variants.yaml");
    let before = std::fs::read_to_string(&yaml).unwrap();
    let (code, _, stderr, _) = release(&env, &yaml.display().to_string(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("is the images directory's variants.yaml, which this run reads"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), before);
    let in_context = Path::new(&images)
        .join("top/meta.json")
        .display()
        .to_string();
    let (code, _, stderr, _) = release(&env, &in_context, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("is inside variant top's directory"),
        "{stderr}"
    );
}

/// A one-platform release of `images` to `repo` on podman (`--auth raw`), to its end.
fn release_on_podman(
    env: &TestEnv,
    images: &str,
    repo: &str,
    meta: &str,
    extra: &[&str],
) -> (Option<i32>, String, String, Duration) {
    let mut args = release_args(images, repo, "linux/amd64", meta);
    args.extend(["--backend", "podman", "--auth", "raw"]);
    args.extend_from_slice(extra);
    run_hjk(env, &args, Duration::from_secs(600))
}

/// Item 7: a metadata file that cannot be written after the tags moved (a full disk: a small
/// tmpfs, which only root can mount) ended in exit 1 without the summary, leaving the old file
/// and a 0-byte temp; now the summary is printed, the error names what was published, the
/// stale file is gone and no temp is left.
#[test]
#[ignore = "needs podman and registry and root: scripts/test-engines.sh up, then make test"]
fn podman_a_full_disk_after_the_tags_moved_still_prints_what_was_published() {
    need(&[Need::Podman, Need::Registry, Need::Root]);
    let Setup {
        env,
        images,
        auth,
        repo,
        ..
    } = setup("faults-full-disk");
    let release = |env: &TestEnv, meta: &str, extra: &[&str]| {
        release_on_podman(env, &images, &repo, meta, extra)
    };
    // the tags a later release moves
    let first = env.root().join("first.json").display().to_string();
    let (code, _, stderr, _) = release(&env, &first, &[]);
    assert_eq!(code, Some(0), "{stderr}");

    // item 7: the disk is full when the metadata file is written, after the tags moved
    let disk = SmallDisk::mount(&env.root().join("full"));
    let full = env.root().join("full/release.json");
    std::fs::write(&full, "{\"stale\": true}\n").unwrap();
    disk.fill();
    std::fs::write(
        Path::new(&images).join("top/Dockerfile"),
        "ARG BASE_IMAGE=hjk-release-fixture:middle\nFROM ${BASE_IMAGE}\nARG VERSION=dev\nRUN echo \"top ${VERSION} again\" > /etc/hjk-variant\n",
    )
    .unwrap();
    let (code, stdout, stderr, _) = release(
        &env,
        &full.display().to_string(),
        &["--force-tags", "--keep-stage"],
    );
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&format!(
            "the release metadata file {} could not be written: no space left on the device",
            full.display()
        )),
        "{stderr}"
    );
    assert!(errors[0].contains("the earlier"), "{stderr}");
    assert!(errors[0].contains("published: base "), "{stderr}");
    // the summary, with the index top's tags now name
    let top_line = stdout
        .lines()
        .find(|l| l.starts_with("top ") && l.contains(" index "))
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    assert!(top_line.contains(" tagged "), "{top_line}");
    let digest = top_line.split_whitespace().nth(3).unwrap();
    let held = raw(&auth, &format!("{repo}:top-v0.1.0"), false).unwrap();
    assert_eq!(format!("sha256:{}", crate::util::sha256_hex(&held)), digest);
    assert!(errors[0].contains(digest), "{stderr}");
    let left: Vec<String> = std::fs::read_dir(env.root().join("full"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["fill"], "the stale file or a temp is left");
    // --keep-stage kept the one image this release built
    assert_eq!(stage_images("podman", &repo).len(), 1);
    drop(disk);
}

/// Item 11: a release killed outright (SIGKILL) while its temporary login store exists left
/// `hjk-auth-*/auth.json` (base64 credentials) behind for good. The next release removes it.
#[test]
#[ignore = "needs podman and registry: scripts/test-engines.sh up, then make test"]
fn podman_credentials_a_killed_release_left_are_swept_by_the_next_run() {
    need(&[Need::Podman, Need::Registry]);
    let Setup {
        mut env,
        images,
        repo,
        ..
    } = setup("faults-sigkill");
    // the build the killed run leaves running goes into a store of the test's own
    let _store = PodmanStore::new(&mut env);
    let tmp = env.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    env.set("TMPDIR", tmp.display().to_string());
    let meta = env.root().join("meta.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend(["--backend", "podman", "--auth", "raw", "--no-cache"]);
    let mut child = spawn_group(&env, &hjk_bin(), &args);
    let stores = || -> Vec<std::path::PathBuf> {
        auth_dirs(&tmp)
            .into_iter()
            .filter(|p| p.join("auth.json").exists())
            .collect()
    };
    wait::until("a login store", Duration::from_secs(120), || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "hjk ended before its login"
        );
        (!stores().is_empty()).then_some(())
    });
    // SAFETY: kill(2) on a process this test started
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let left = stores();
    assert_eq!(left.len(), 1, "the killed run's store: {left:?}");
    let mut text = String::new();
    std::fs::File::open(left[0].join("auth.json"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("\"auth\""), "credentials in it: {text}");
    // a later run of any kind that may log in sweeps it first
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend(["--backend", "podman", "--auth", "raw", "--dry-run"]);
    let (code, _, stderr, _) = run_hjk(&env, &args, Duration::from_secs(300));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("removed 1 temporary credential store(s) that killed runs left"),
        "{stderr}"
    );
    assert!(!left[0].exists(), "{} is still there", left[0].display());
}

/// Items 10 and 12, against the real registry, before anything is pushed: `merge` of files
/// naming digests the registry lacks gave a raw 400 after it had pushed the base index; a
/// variant directory linked outside the images directory passed the containment check, and a
/// COPY from outside was published.
#[test]
#[ignore = "needs registry: scripts/test-engines.sh up, then make test"]
fn missing_digests_and_a_linked_outside_dir_are_refused_before_any_push() {
    need(&[Need::Registry]);
    let Setup {
        env, images, repo, ..
    } = setup("faults-refused");
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let part = env.root().join("part.json");
    std::fs::write(
        &part,
        serde_json::json!({
            "schema": 1, "registry": &*repo, "version": "v0.1.0", "partial": true,
            "variants": [{
                "name": "base", "parent": null, "index_digest": null, "tags": [], "parent_ref": null,
                "platforms": {"linux/amd64": {
                    "digest": d('a'), "media_type": "application/vnd.oci.image.manifest.v1+json",
                    "size": 100, "stage_tag": "stage-base-amd64-x", "fingerprint": "f",
                    "base": null, "result": "built"}},
                "sbom": [], "signed": false, "scan": null, "held": [], "inputs": "i"
            }]
        })
        .to_string(),
    )
    .unwrap();
    let (code, _, stderr, _) = run_hjk(
        &env,
        &["images", "merge", part.to_str().unwrap(), "--auth", "raw"],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{repo} does not have what the metadata files name: base linux/amd64 {}",
            d('a')
        )),
        "{stderr}"
    );
    assert_eq!(uploads(&repo), 0);

    // a variant directory that is a link to a directory outside
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "from outside").unwrap();
    std::fs::write(
        outside.path().join("Dockerfile"),
        "ARG BASE_IMAGE=hjk-release-fixture:middle\nFROM ${BASE_IMAGE}\nCOPY secret /secret\n",
    )
    .unwrap();
    let top = Path::new(&images).join("top");
    std::fs::remove_dir_all(&top).unwrap();
    std::os::unix::fs::symlink(outside.path(), &top).unwrap();
    let meta = env.root().join("meta.json").display().to_string();
    let mut args = release_args(&images, &repo, "linux/amd64", &meta);
    args.extend(["--auth", "raw"]);
    let (code, _, stderr, _) = run_hjk(&env, &args, Duration::from_secs(60));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("variant top dir \"top\" resolves to")
            && stderr.contains("outside the images directory"),
        "{stderr}"
    );
    assert_eq!(uploads(&repo), 0);
}
