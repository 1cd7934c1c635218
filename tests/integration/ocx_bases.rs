//! ocx on bases shaped like the ones users have, on real podman and real dockerd (classic
//! builder), with the real opencode binary from npm. Each base is built by ocx from a
//! Dockerfile (apt runs inside the engine, so its layers are cached after the first run).
//! CI runs as root, so uid/gid in ocx.json stand in for the host user. Builds run with
//! `--force`, so the container-user plan is decided and checked on every run, not only on the
//! first one on a machine.

use crate::util::real::real_env;
use crate::util::TestEnv;

const OPENCODE: &str = "1.18.18";

/// Runs `$body` once per engine, as two tests, so they run in parallel.
macro_rules! on_both_engines {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use crate::util::argv::Argv;
            use crate::util::{need, Need};
            #[test]
            #[ignore = "needs podman: scripts/test-engines.sh up, then make test"]
            fn podman() {
                need(&[Need::Podman]);
                ($body)("podman");
            }
            #[test]
            #[ignore = "needs docker: scripts/test-engines.sh up, then make test"]
            fn docker() {
                need(&[Need::Docker]);
                ($body)("docker");
            }
        }
    };
}

/// A project whose base `ocx-bases/<engine>-<name>` is built from `dockerfile`; `config` adds
/// keys to ocx.json.
fn project(engine: &str, name: &str, dockerfile: &str, config: &str) -> TestEnv {
    let env = real_env();
    env.write("project/Dockerfile", dockerfile);
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "ocx-bases/{engine}-{name}", "custom_base_dockerfile": "Dockerfile",
                "opencode_version": "{OPENCODE}", "opencode_source": "npm", "backend": "{engine}"{config}}}"#
        ),
    );
    env
}

/// `ocx exec -- sh -c SCRIPT`: its stdout lines, after checking it exited 0.
fn exec(env: &TestEnv, script: &str) -> Vec<String> {
    let out = env.ocx(&["exec", "--", "sh", "-c", script]).output();
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    out.stdout.lines().map(String::from).collect()
}

/// `ocx opencode --version` prints the version: opencode runs, whatever the base's ENTRYPOINT.
fn runs_opencode(env: &TestEnv) {
    let out = env.ocx(&["opencode", "--version"]).output();
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, OPENCODE),
        "{}",
        out.stderr
    );
}

/// `ocx build --force`: the final image is built again, so the plan line is printed.
fn build(env: &TestEnv) -> crate::util::Out {
    forced(env).run()
}

fn forced(env: &TestEnv) -> crate::util::Run {
    env.ocx(&["--progress", "plain", "build", "--force"])
        .status(0)
}

/// [`build`], whose output must say `text` (the plan line it printed).
fn build_saying(env: &TestEnv, text: &str) -> crate::util::Out {
    forced(env).stderr_has(text).run()
}

/// `ocx build`, as a user runs it: builds only what is missing or stale.
fn build_current(env: &TestEnv) -> crate::util::Out {
    env.ocx(&["--progress", "plain", "build"]).status(0).run()
}

/// The final image a build printed (`built <image> (also tagged <shared tag>)`).
fn built_image(out: &crate::util::Out) -> String {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `built` line: {}", out.stderr))
        .to_string()
}

/// `<engine> image inspect --format FORMAT image`.
fn inspect(engine: &str, image: &str, format: &str) -> String {
    crate::util::engine_stdout(engine, &["image", "inspect", "--format", format, image])
}

/// What a user's own shell setup needs: the user as the base made it.
const WHO: &str = "id -un; id -u; id -g; echo $HOME; getent passwd $(id -un) | cut -d: -f7";

// A devcontainer-style base: `vscode` (uid 1000, bash) with a sudo rule keyed on its name and
// dotfiles in its home. Host uid 1000: the user is adopted as it is.
on_both_engines!(
    adopts_the_user_holding_the_uid_with_its_sudo_rule,
    |engine: &str| {
        let env = super::project(
        engine,
        "sudo",
        "FROM local/debian:bookworm\n\
         RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends sudo >/dev/null && rm -rf /var/lib/apt/lists/*\n\
         RUN groupadd -g 1000 vscode && useradd -m -u 1000 -g 1000 -s /bin/bash vscode \\\n\
          && echo 'vscode ALL=(root) NOPASSWD:ALL' >/etc/sudoers.d/vscode && chmod 0440 /etc/sudoers.d/vscode \\\n\
          && echo from-the-base >/home/vscode/.dotfile && chown vscode: /home/vscode/.dotfile\n\
         USER vscode\n",
        r#", "uid": 1000, "gid": 1000"#,
    );
        super::build_saying(
            &env,
            "container user vscode from the base, as it is (uid 1000, gid 1000, home /home/vscode)",
        );
        let lines = super::exec(
            &env,
            &format!(
                "{}; cat $HOME/.dotfile; sudo -n true && echo sudo-ok",
                super::WHO
            ),
        );
        assert_eq!(
            lines,
            [
                "vscode",
                "1000",
                "1000",
                "/home/vscode",
                "/bin/bash",
                "from-the-base",
                "sudo-ok"
            ]
        );
    }
);

// A devcontainer-style base whose sudo rule is keyed on a group: `vscode` is in `sudo` and
// `users`, and `%sudo` may run anything without a password. The adopted user keeps its
// supplementary groups (the image runs as `USER 1000`, and `ocx exec` as `--user 1000`: a
// `uid:gid` would drop them), so the rule applies.
on_both_engines!(
    keeps_the_adopted_users_groups_and_group_sudo_rules,
    |engine: &str| {
        let env = super::project(
            engine,
            "groups",
            "FROM local/debian:bookworm\n\
         RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends sudo >/dev/null && rm -rf /var/lib/apt/lists/*\n\
         RUN groupadd -g 1000 vscode && useradd -m -u 1000 -g 1000 -G sudo,users -s /bin/bash vscode \\\n\
          && echo '%sudo ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/group && chmod 0440 /etc/sudoers.d/group\n\
         USER vscode\n",
            r#", "uid": 1000, "gid": 1000"#,
        );
        let out = super::build_saying(&env, "container user vscode from the base, as it is");
        let image = super::built_image(&out);
        assert_eq!(super::inspect(engine, &image, "{{.Config.User}}"), "1000");
        let lines = super::exec(&env, "id -un; id -G; sudo -n true && echo sudo-ok");
        assert_eq!(lines, ["vscode", "1000 27 100", "sudo-ok"]);
    }
);

// A node-style base: `node` (uid 1000) and no USER line. Host uid 1001: node gets 1001:1001
// (the Dev Containers updateRemoteUserUID way), its home is chowned, its shell stays.
on_both_engines!(
    renumbers_the_bases_only_user_and_chowns_its_home,
    |engine: &str| {
        let env = super::project(
            engine,
            "node",
            "FROM local/debian:bookworm\n\
         RUN groupadd -g 1000 node && useradd -m -u 1000 -g 1000 -G users -s /bin/bash node \\\n\
          && echo registry=x >/home/node/.npmrc && chown node: /home/node/.npmrc\n",
            r#", "uid": 1001, "gid": 1001"#,
        );
        super::build_saying(&env, "container user node from the base, uid 1000 changed");
        let lines = super::exec(
            &env,
            &format!("{}; stat -c %u:%g $HOME/.npmrc; id -Gn", super::WHO),
        );
        assert_eq!(
            lines,
            [
                "node",
                "1001",
                "1001",
                "/home/node",
                "/bin/bash",
                "1001:1001",
                "node users"
            ]
        );
    }
);

// A jupyter-style base: `USER jovyan` (uid 1000, group users) beside another regular account,
// and an ENTRYPOINT that would swallow the command. Host uid 1002, gid 100: the declared user
// is the one renumbered; `users` stays its group; opencode and `ocx exec` run as asked.
on_both_engines!(
    renumbers_the_declared_user_whatever_the_entrypoint,
    |engine: &str| {
        let env = super::project(
            engine,
            "jupyter",
            "FROM local/debian:bookworm\n\
         RUN useradd -m -u 1000 -g 100 -s /bin/bash jovyan && useradd -m -u 1005 -s /bin/sh other\n\
         USER jovyan\n\
         ENTRYPOINT [\"/bin/bash\"]\n",
            r#", "uid": 1002, "gid": 100"#,
        );
        super::build(&env);
        super::runs_opencode(&env);
        let lines = super::exec(&env, &format!("{}; id -gn", super::WHO));
        assert_eq!(
            lines,
            [
                "jovyan",
                "1002",
                "100",
                "/home/jovyan",
                "/bin/bash",
                "users"
            ]
        );
    }
);

// opencode_variant musl on a glibc base: the build's own `opencode --version` fails, and the
// error is one line naming the key.
on_both_engines!(
    a_variant_that_cannot_run_fails_the_build_naming_the_key,
    |engine: &str| {
        let env = super::project(
            engine,
            "glibc",
            "FROM local/debian:bookworm\n",
            r#", "uid": 1000, "gid": 1000, "opencode_variant": "musl""#,
        );
        let out = env.ocx(&["build"]).status(2).run();
        // the build's output comes first; the error is its last line, and one line
        let line = out.stderr.trim().lines().last().unwrap();
        assert!(
            line.starts_with(&format!(
                "error: opencode {} (opencode-linux-x64-musl, opencode_variant musl from ",
                super::OPENCODE
            )),
            "{line}"
        );
        assert!(
            line.contains("does not run on ocx-bases/")
                && line.contains("no such file or directory")
                && line.contains("set opencode_variant to standard"),
            "{line}"
        );
    }
);

// A musl base made here (busybox and Debian's musl loader): the variant is picked from the
// base, never from this glibc machine. opencode's musl build also needs libstdc++ and libgcc,
// which this base lacks, so the build says so, naming the key and how it was picked.
on_both_engines!(a_musl_base_picks_the_musl_build, |engine: &str| {
    let env = super::project(
        engine,
        "musl",
        "FROM local/debian:bookworm AS src\n\
         RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends musl busybox-static >/dev/null\n\
         FROM scratch\n\
         COPY --from=src /bin/busybox /bin/busybox\n\
         COPY --from=src /usr/lib/x86_64-linux-musl/libc.so /lib/ld-musl-x86_64.so.1\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN mkdir -p /etc /tmp /root && echo 'root:x:0:0:root:/root:/bin/sh' >/etc/passwd && echo 'root:x:0:' >/etc/group\n",
        r#", "uid": 1000, "gid": 1000"#,
    );
    let out = env.ocx(&["--progress", "plain", "build"]).status(2).run();
    assert!(
        out.stderr
            .contains("has a musl loader: using opencode_variant musl"),
        "{}",
        out.stderr
    );
    let last = out.stderr.trim().lines().last().unwrap();
    assert!(
        last.starts_with("error: opencode ")
            && last.contains(
                "opencode-linux-x64-musl, opencode_variant musl picked from the base's libc"
            )
            && last.contains("libstdc++")
            && last.contains("apk add libstdc++ libgcc"),
        "{last}"
    );
});

/// Prints musl's loader (`libc.so`) from Debian trixie's `musl` package into the file named
/// by its argument: the package index and the package over HTTP, the package checked against
/// the index's sha256 (python3's standard library only: no apt sources to change).
const FETCH_TRIXIE_MUSL: &str = r#"import hashlib, io, lzma, sys, tarfile, urllib.request
base = 'http://deb.debian.org/debian/'
index = urllib.request.urlopen(base + 'dists/trixie/main/binary-amd64/Packages.xz', timeout=300).read()
for para in lzma.decompress(index).decode().split('\n\n'):
    f = dict(l.split(': ', 1) for l in para.splitlines() if ': ' in l and not l.startswith(' '))
    if f.get('Package') == 'musl':
        break
else:
    sys.exit('no musl package in trixie')
deb = urllib.request.urlopen(base + f['Filename'], timeout=300).read()
if hashlib.sha256(deb).hexdigest() != f['SHA256']:
    sys.exit('checksum mismatch for ' + f['Filename'])
pos = 8  # an ar archive: 60-byte member headers, members padded to even sizes
while pos < len(deb):
    name, size = deb[pos:pos + 16].decode().strip(), int(deb[pos + 48:pos + 58])
    data, pos = deb[pos + 60:pos + 60 + size], pos + 60 + size + size % 2
    if name.startswith('data.tar'):
        lib = tarfile.open(fileobj=io.BytesIO(data)).extractfile('./usr/lib/x86_64-linux-musl/libc.so')
        open(sys.argv[1], 'wb').write(lib.read())
        print(f['Version'])
        break
else:
    sys.exit('no data.tar in ' + f['Filename'])
"#;

/// A musl runtime that can run opencode's musl build, made once into the shared test cache:
/// - `ld-musl-x86_64.so.1`: musl 1.2.5 from Debian trixie (bookworm's 1.2.3 runs opencode
///   into a segfault);
/// - `cxx/`: libstdc++ and libgcc_s built against musl. Debian has no C++ runtime built for
///   musl, so they come from PyPI: the musllinux wheel of greenlet (a C++ extension) vendors
///   both, built on Alpine (GCC 14's libstdc++ 6.0.33). auditwheel renamed them
///   (`libstdc++-<hash>.so.6.0.33`, which needs `libgcc_s-<hash>.so.1` by that name), so the
///   base links the usual names to them.
///
/// The podman and docker tests ask for it at the same time on a fresh machine: one makes it
/// while the other waits, and it is made in a scratch directory renamed into place, so no
/// reader ever sees a half-made one (CI once copied one that the other test was replacing).
fn musl_runtime() -> std::path::PathBuf {
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let done = crate::util::shared_cache().join("musl-runtime-1.2.5-greenlet-3.5.6");
    if done.join("done").is_file() {
        return done;
    }
    let scratch = tempfile::tempdir_in(crate::util::shared_cache()).unwrap();
    let dir = scratch.path();
    std::fs::create_dir_all(dir.join("cxx")).unwrap();
    crate::util::succeeds(
        std::process::Command::new("python3")
            .args(["-c", FETCH_TRIXIE_MUSL])
            .arg(dir.join("ld-musl-x86_64.so.1")),
    );
    // the loader is a program: the kernel runs a non-root user's binary through it only if
    // it may execute it
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("ld-musl-x86_64.so.1"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    crate::util::succeeds(
        std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "greenlet==3.5.6",
                "--only-binary=:all:",
            ])
            .args([
                "--platform",
                "musllinux_1_2_x86_64",
                "--python-version",
                "3.12",
            ])
            .args(["--implementation", "cp", "--no-deps", "--dest"])
            .arg(tmp.path()),
    );
    let wheel = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(wheel).unwrap()).unwrap();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().to_string();
        if let Some(lib) = name
            .strip_prefix("greenlet.libs/")
            .filter(|l| !l.is_empty())
        {
            let mut out = std::fs::File::create(dir.join("cxx").join(lib)).unwrap();
            std::io::copy(&mut f, &mut out).unwrap();
        }
    }
    std::fs::write(dir.join("done"), "").unwrap();
    let _ = std::fs::remove_dir_all(&done);
    std::fs::rename(scratch.keep(), &done).unwrap();
    done
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

// A musl base that can run opencode's musl build: busybox, musl 1.2.5 and a C++ runtime built
// for musl (see `musl_runtime`). With opencode_variant unset, the base's musl loader picks the
// musl build, and opencode runs as the created user.
on_both_engines!(
    a_musl_base_with_a_cxx_runtime_runs_opencode,
    |engine: &str| {
        let env = super::project(
        engine,
        "musl-ok",
        "FROM local/debian:bookworm AS src\n\
         RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends musl busybox-static >/dev/null\n\
         FROM scratch\n\
         COPY --from=src /bin/busybox /bin/busybox\n\
         COPY runtime/ld-musl-x86_64.so.1 /lib/ld-musl-x86_64.so.1\n\
         COPY runtime/cxx/ /usr/lib/\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN ln -s ld-musl-x86_64.so.1 /lib/libc.musl-x86_64.so.1 && cd /usr/lib \\\n\
          && ln -s libstdc++-*.so.6.* libstdc++.so.6 && ln -s libgcc_s-*.so.1 libgcc_s.so.1 \\\n\
          && mkdir -p /etc /tmp /root && chmod 1777 /tmp \\\n\
          && echo 'root:x:0:0:root:/root:/bin/sh' >/etc/passwd && echo 'root:x:0:' >/etc/group\n",
        r#", "uid": 1000, "gid": 1000"#,
    );
        super::copy_tree(&super::musl_runtime(), &env.project().join("runtime"));
        super::build_saying(&env, "has a musl loader: using opencode_variant musl");
        super::runs_opencode(&env);
        let lines = super::exec(&env, "id -u; id -g; echo $HOME");
        assert_eq!(lines, ["1000", "1000", "/home/developer"]);
    }
);

// A base with no C library at all (a static busybox): no opencode build runs there, and the
// error says so instead of suggesting the musl build.
on_both_engines!(a_base_without_a_libc_is_named_as_such, |engine: &str| {
    let env = crate::util::real::real_env();
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "local/busybox:amd64", "opencode_version": "{}", "opencode_source": "npm", "backend": "{engine}", "uid": 1000, "gid": 1000}}"#,
            super::OPENCODE
        ),
    );
    let out = env.ocx(&["build", "--force"]).status(2).run();
    let last = out.stderr.trim().lines().last().unwrap();
    assert!(
        last.starts_with("error: opencode ")
            && last.contains("opencode_variant standard by default")
            && last.contains("the base has no C library")
            && !last.contains("set opencode_variant to musl"),
        "{last}"
    );
});

// A distroless-shaped base (glibc libraries on scratch, no /bin/sh): /etc/passwd cannot be
// edited, so the user is uid:gid with HOME from a chowned COPY; opencode runs.
on_both_engines!(
    a_base_without_a_shell_gets_an_unnamed_user,
    |engine: &str| {
        let env = super::project(
        engine,
        "distroless",
        "FROM local/debian:bookworm AS src\n\
         RUN mkdir -p /rootfs/lib/x86_64-linux-gnu /rootfs/lib64 /rootfs/etc /rootfs/tmp && chmod 1777 /rootfs/tmp \\\n\
          && cd /lib/x86_64-linux-gnu && cp libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 /rootfs/lib/x86_64-linux-gnu/ \\\n\
          && cp ld-linux-x86-64.so.2 /rootfs/lib64/ && cp /etc/passwd /etc/group /rootfs/etc/\n\
         FROM scratch\n\
         COPY --from=src /rootfs/ /\n",
        r#", "uid": 1000, "gid": 1000"#,
    );
        let out = super::build(&env);
        assert!(
            out.stderr.contains(
                "container user 1000:1000 with HOME /home/developer (the base has no /bin/sh"
            ),
            "{}",
            out.stderr
        );
        // no passwd entry to take groups from: the run-time user is uid:gid, HOME is set
        let image = super::built_image(&out);
        assert_eq!(
            super::inspect(engine, &image, "{{.Config.User}}"),
            "1000:1000"
        );
        let env_vars = super::inspect(engine, &image, "{{json .Config.Env}}");
        assert!(env_vars.contains("\"HOME=/home/developer\""), "{env_vars}");
        super::runs_opencode(&env);
        // `ocx exec` too, with no shell to wrap the command in
        let out = env
            .ocx(&["exec", "--", "/usr/local/bin/opencode", "--version"])
            .status(0)
            .run();
        assert_eq!(out.stdout.trim(), super::OPENCODE, "{}", out.stderr);
    }
);

// An edit of a file the base Dockerfile COPYs, or of the Dockerfile, rebuilds the base and the
// image, with no flag, and not the opencode binary image; then a no-op is one engine call again.
on_both_engines!(a_base_edit_is_picked_up_without_a_flag, |engine: &str| {
    let env = super::project(
        engine,
        "edit",
        "FROM local/debian:bookworm\nCOPY greeting.txt /etc/greeting\n",
        r#", "uid": 1000, "gid": 1000"#,
    );
    let stamp = format!("{:?}", std::time::SystemTime::now());
    env.write("project/greeting.txt", &format!("one {stamp}\n"));
    env.write("project/unrelated.txt", "not copied\n");
    super::build_current(&env);
    assert_eq!(
        super::exec(&env, "cat /etc/greeting"),
        [format!("one {stamp}")]
    );

    env.write("project/unrelated.txt", "still not copied\n");
    let out = super::build_current(&env);
    assert!(out.stderr.contains("is up to date"), "{}", out.stderr);

    env.write("project/greeting.txt", &format!("two {stamp}\n"));
    let out = super::build_current(&env);
    assert!(
        out.stderr
            .contains("or a file it copies changed since ocx-bases/")
            && out.stderr.contains("rebuilding base image"),
        "{}",
        out.stderr
    );
    assert_eq!(
        super::exec(&env, "cat /etc/greeting"),
        [format!("two {stamp}")]
    );

    // an edit of the Dockerfile itself: the base and the final image are built again, the
    // opencode binary image (built once per version) is not
    let real = which::which(engine).unwrap();
    env.recording(engine, real.to_str().unwrap());
    env.clear_log();
    env.write(
        "project/Dockerfile",
        &format!("FROM local/debian:bookworm\nCOPY greeting.txt /etc/greeting\nRUN echo three {stamp} > /etc/edited\n"),
    );
    let out = super::build_current(&env);
    assert!(
        out.stderr.contains("rebuilding base image"),
        "{}",
        out.stderr
    );
    let builds: Vec<String> = env
        .log()
        .iter()
        .filter(|a| a.iter().skip(1).take(2).any(|w| w == "build"))
        .map(|a| a.join(" "))
        .collect();
    assert_eq!(builds.len(), 2, "{builds:#?}");
    assert!(
        builds[0].contains(&format!("ocx-bases/{engine}-edit"))
            && builds.iter().all(|b| !b.contains("ocx-opencode")),
        "{builds:#?}"
    );
    assert_eq!(
        super::exec(&env, "cat /etc/edited"),
        [format!("three {stamp}")]
    );

    env.clear_log();
    env.ocx(&["build"])
        .status(0)
        .stderr_has("is up to date")
        .run();
    let log = env.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].is(&["image", "inspect"]), "{log:?}");
});

// A template-shaped base: `.devcontainer/Dockerfile` that expects the project root as its
// context (`COPY package.json`), built with `custom_base_context: "."`; an edit of the copied
// file is picked up.
on_both_engines!(a_base_context_above_the_dockerfile, |engine: &str| {
    let env = super::project(engine, "context", "", "");
    env.write(
        "project/ocx.json",
        &format!(
            r#"{{"custom_base_image": "ocx-bases/{engine}-context", "custom_base_dockerfile": ".devcontainer/Dockerfile",
                "custom_base_context": ".", "opencode_version": "{}", "opencode_source": "npm", "backend": "{engine}",
                "uid": 1000, "gid": 1000}}"#,
            super::OPENCODE
        ),
    );
    env.write(
        "project/.devcontainer/Dockerfile",
        "FROM local/debian:bookworm\nCOPY package.json /etc/from-root.json\n",
    );
    let stamp = format!("{:?}", std::time::SystemTime::now());
    env.write("project/package.json", &format!("{{\"v\": \"{stamp}\"}}\n"));
    super::build_current(&env);
    assert_eq!(
        super::exec(&env, "cat /etc/from-root.json"),
        [format!("{{\"v\": \"{stamp}\"}}")]
    );
    env.write("project/package.json", "{\"v\": \"two\"}\n");
    let out = super::build_current(&env);
    assert!(
        out.stderr.contains("rebuilding base image"),
        "{}",
        out.stderr
    );
    assert_eq!(
        super::exec(&env, "cat /etc/from-root.json"),
        ["{\"v\": \"two\"}"]
    );
});
