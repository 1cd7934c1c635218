//! Issue 18, hostile input files (items 2, 4, 5, 10 and 12): every file hjk reads (metadata,
//! variants.yaml, devcontainer.json, creds) is read with a size limit, refused by name when it
//! is a FIFO, a device or a dangling link, and parsed with depth and alias limits; each ends in
//! exit 2 and one line, fast, and in bounded memory (the child runs with a 1 GiB address
//! space: before the fix `merge` of a link to /dev/zero took 24 GB).

use crate::util::process::hjk_bin;
use crate::util::{fixtures, wait, TestEnv};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a run printed and how it ended.
struct Ended {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// `hjk ARGS` with `stdin`, at most 1 GiB of address space and 60 s (a hang fails the test).
/// `hjk images digest --variant base` of the hierarchy fixture, read from `metadata`.
fn digest_from(env: &TestEnv, metadata: &str) -> Ended {
    let hierarchy = fixtures().join("hierarchy").display().to_string();
    let args = [
        "images",
        "digest",
        "--variant",
        "base",
        "--images-dir",
        &hierarchy,
        "--metadata-file",
        metadata,
    ];
    hjk_bounded(env, &args, Stdio::null())
}

fn hjk_bounded(env: &TestEnv, args: &[&str], stdin: Stdio) -> Ended {
    let mut cmd = Command::new(hjk_bin());
    cmd.args(args)
        .env_clear()
        .envs(&env.vars)
        .current_dir(env.project())
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit between fork and exec touches only the child
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status =
        wait::poll(Duration::from_secs(60), || child.try_wait().unwrap()).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("hjk {args:?} hangs")
        });
    Ended {
        code: status.code(),
        stderr: reader.join().unwrap(),
        took: started.elapsed(),
    }
}

/// Exit 2, one `error:` line holding every part of `want`, within 10 s.
fn refused(e: &Ended, want: &[&str]) {
    assert_eq!(e.code, Some(2), "{}", e.stderr);
    assert_eq!(e.stderr.lines().count(), 1, "one line: {}", e.stderr);
    assert!(e.stderr.starts_with("error: "), "{}", e.stderr);
    for w in want {
        assert!(e.stderr.contains(w), "{w:?} not in {}", e.stderr);
    }
    assert!(e.took < Duration::from_secs(10), "took {:?}", e.took);
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path in the test's directory, with a valid C string
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// A one-variant images directory with `yaml` as its variants.yaml.
fn images_with(env: &TestEnv, yaml: &str) -> String {
    let dir = env.root().join("images");
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::write(dir.join("base/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(dir.join("variants.yaml"), yaml).unwrap();
    dir.display().to_string()
}

const PARTIAL: &str = r#"{"schema": 1, "registry": "127.0.0.1:5000/faults/x", "version": "v0.1.0", "partial": true, "variants": []}"#;

/// Item 2: reads that had no bound. A link to /dev/zero as a merge input or a metadata file,
/// /dev/zero as `--creds-stdin`, a YAML alias bomb (1 MB anchored, 2,000 aliases: 2.2 GB and
/// 15 s before), a 10 MB bomb and a 200 MB variants.yaml.
#[test]
fn unbounded_reads_are_refused_with_their_limit() {
    let env = TestEnv::new();
    env.fake("podman");
    let root = env.root();
    std::fs::write(root.join("x.json"), PARTIAL).unwrap();
    std::os::unix::fs::symlink("/dev/zero", root.join("z.json")).unwrap();
    let (x, z) = (
        root.join("x.json").display().to_string(),
        root.join("z.json").display().to_string(),
    );
    let e = hjk_bounded(&env, &["images", "merge", &x, &z], Stdio::null());
    refused(
        &e,
        &[
            &z,
            "is a symlink to /dev/zero, which is a character device, not a regular file",
        ],
    );

    let e = digest_from(&env, &z);
    refused(&e, &["character device"]);

    let release = fixtures().join("release").display().to_string();
    let e = hjk_bounded(
        &env,
        &[
            "images",
            "release",
            "--all",
            "--images-dir",
            &release,
            "--registry",
            "127.0.0.1:5000/faults/creds",
            "--platform",
            "linux/amd64",
            "--auth",
            "raw",
            "--creds-stdin",
            "--dry-run",
        ],
        Stdio::from(std::fs::File::open("/dev/zero").unwrap()),
    );
    refused(&e, &["--creds-stdin got more than 64 KiB on stdin"]);

    for mb in [1usize, 10] {
        let mut bomb = format!(
            "variants:\n  - name: base\n    dir: base\n    description: &x \"{}\"\nextra:\n",
            "y".repeat(mb * 1_000_000)
        );
        for _ in 0..2000 {
            bomb.push_str("  - *x\n");
        }
        let images = images_with(&env, &bomb);
        let e = hjk_bounded(
            &env,
            &["images", "list", "--images-dir", &images],
            Stdio::null(),
        );
        let want = match mb {
            1 => "its aliases (*name) expand to more than 16 MiB",
            _ => "is larger than 1 MiB (variants.yaml may hold at most that)",
        };
        refused(&e, &[want]);
        eprintln!("{mb} MB alias bomb refused in {:?}", e.took);
    }

    let images = images_with(&env, "variants:\n  - name: base\n    dir: base\n");
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(Path::new(&images).join("variants.yaml"))
        .unwrap();
    f.set_len(200 << 20).unwrap();
    let e = hjk_bounded(
        &env,
        &["images", "list", "--images-dir", &images],
        Stdio::null(),
    );
    refused(&e, &["is larger than 1 MiB"]);
}

/// Item 4: a FIFO as a merge input, as variants.yaml (`images list`) or as `digest
/// --metadata-file` blocked in open(), deaf to Ctrl-C. Now each is refused by name, at once.
#[test]
fn a_fifo_input_is_refused_by_name_without_blocking() {
    let env = TestEnv::new();
    env.fake("podman");
    let root = env.root();
    let fifo = root.join("in.json");
    mkfifo(&fifo);
    let fifo = fifo.display().to_string();
    let e = hjk_bounded(&env, &["images", "merge", &fifo], Stdio::null());
    refused(&e, &[&fifo, "is a FIFO (named pipe), not a regular file"]);

    let images = images_with(&env, "variants: []\n");
    let yaml = Path::new(&images).join("variants.yaml");
    std::fs::remove_file(&yaml).unwrap();
    mkfifo(&yaml);
    let e = hjk_bounded(
        &env,
        &["images", "list", "--images-dir", &images],
        Stdio::null(),
    );
    refused(&e, &["variants.yaml is a FIFO (named pipe)"]);

    let e = digest_from(&env, &fifo);
    refused(&e, &["is a FIFO (named pipe)"]);
}

/// Item 5: a devcontainer.json nested 8,000 levels deep aborted `resolve` with SIGABRT (a stack
/// overflow in the JSON5 parser); item 12: a dangling, looping or FIFO devcontainer.json fell
/// back to the default image without a word.
#[test]
fn a_deep_or_unreadable_devcontainer_json_is_refused() {
    let env = TestEnv::new();
    let dc = env.project().join(".devcontainer");
    std::fs::create_dir_all(&dc).unwrap();
    let file = dc.join("devcontainer.json");
    std::fs::write(
        &file,
        format!(
            "{{\"image\": \"debian\", \"x\": {}1{}}}",
            "[".repeat(8000),
            "]".repeat(8000)
        ),
    )
    .unwrap();
    let e = hjk_bounded(&env, &["images", "resolve"], Stdio::null());
    refused(&e, &["devcontainer.json", "it nests deeper than 64 levels"]);

    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(dc.join("gone.json"), &file).unwrap();
    let e = hjk_bounded(&env, &["images", "resolve"], Stdio::null());
    refused(
        &e,
        &[
            "devcontainer.json is a symlink to",
            "fix or remove the link",
        ],
    );

    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&file, &file).unwrap();
    let e = hjk_bounded(&env, &["images", "resolve"], Stdio::null());
    refused(&e, &["devcontainer.json is a symlink to", "cannot be read"]);

    std::fs::remove_file(&file).unwrap();
    mkfifo(&file);
    let e = hjk_bounded(&env, &["images", "resolve"], Stdio::null());
    refused(&e, &["devcontainer.json is a FIFO (named pipe)"]);

    // and in a sub-folder config
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir_all(dc.join("py")).unwrap();
    mkfifo(&dc.join("py/devcontainer.json"));
    let e = hjk_bounded(&env, &["images", "resolve"], Stdio::null());
    refused(&e, &["py/devcontainer.json is a FIFO (named pipe)"]);
}

/// Item 12: names. A name over 41 characters was told it "must be lowercase letters, digits
/// and -"; variants `x` and `x-amd64` collided in a two-platform build (LIST-FAILED) with
/// nothing caught up front; `variants: []` released nothing and exited 0.
#[test]
fn names_that_cannot_be_tags_and_empty_graphs_are_refused_before_any_build() {
    let env = TestEnv::new();
    env.fake("podman");
    let long = "a".repeat(42);
    let images = images_with(
        &env,
        &format!("variants:\n  - name: {long}\n    dir: base\n"),
    );
    let e = hjk_bounded(
        &env,
        &["images", "list", "--images-dir", &images],
        Stdio::null(),
    );
    refused(&e, &["is 42 characters long; use at most 41"]);

    let images = images_with(
        &env,
        "variants:\n  - name: x\n    dir: base\n  - name: x-amd64\n    dir: base\n",
    );
    let e = hjk_bounded(
        &env,
        &[
            "images",
            "build",
            "--all",
            "--images-dir",
            &images,
            "--registry",
            "localhost/faults/names",
            "--platform",
            "linux/amd64,linux/arm64",
        ],
        Stdio::null(),
    );
    refused(&e, &["variants x and x-amd64 would share the tag x-amd64"]);
    env.assert_nothing_built();

    let images = images_with(&env, "variants: []\n");
    let e = hjk_bounded(
        &env,
        &[
            "images",
            "release",
            "--all",
            "--images-dir",
            &images,
            "--registry",
            "127.0.0.1:5000/faults/empty",
            "--platform",
            "linux/amd64",
        ],
        Stdio::null(),
    );
    refused(&e, &["declares no variants"]);
}
