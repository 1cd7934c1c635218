//! ocx on bases shaped like the ones users have, on real podman and real dockerd (classic
//! builder), with the real opencode binary from npm. Each base is built by ocx from a
//! Dockerfile (apt runs inside the engine, so its layers are cached after the first run).
//! CI runs as root, so uid/gid in ocx.json stand in for the host user.

use crate::util::{shared_cache, TestEnv};

const OPENCODE: &str = "1.18.18";

/// Runs `$body` once per engine, as two tests, so they run in parallel.
macro_rules! on_both_engines {
    ($name:ident, $body:expr) => {
        mod $name {
            #[test]
            fn podman() {
                if crate::util::engine_available("podman") {
                    ($body)("podman");
                }
            }
            #[test]
            fn docker() {
                if crate::util::engine_available("docker") {
                    ($body)("docker");
                }
            }
        }
    };
}

/// A project whose base `ocx-bases/<engine>-<name>` is built from `dockerfile`; `config` adds
/// keys to ocx.json.
fn project(engine: &str, name: &str, dockerfile: &str, config: &str) -> TestEnv {
    let mut env = TestEnv::new();
    env.with_system_path();
    env.set("XDG_CACHE_HOME", shared_cache().display().to_string());
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

fn build(env: &TestEnv) -> crate::util::Out {
    env.ocx(&["--progress", "plain", "build"]).status(0).run()
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
        let out = super::build(&env);
        assert!(
            out.stderr
                .contains("container user vscode from the base, as it is")
                || out.stderr.contains("is up to date"),
            "{}",
            out.stderr
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

// A node-style base: `node` (uid 1000) and no USER line. Host uid 1001: node gets 1001:1001
// (the Dev Containers updateRemoteUserUID way), its home is chowned, its shell stays.
on_both_engines!(
    renumbers_the_bases_only_user_and_chowns_its_home,
    |engine: &str| {
        let env = super::project(
            engine,
            "node",
            "FROM local/debian:bookworm\n\
         RUN groupadd -g 1000 node && useradd -m -u 1000 -g 1000 -s /bin/bash node \\\n\
          && echo registry=x >/home/node/.npmrc && chown node: /home/node/.npmrc\n",
            r#", "uid": 1001, "gid": 1001"#,
        );
        super::build(&env);
        let lines = super::exec(
            &env,
            &format!("{}; stat -c %u:%g $HOME/.npmrc; id -gn", super::WHO),
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
                "node"
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
            out.stderr.contains("the base has no /bin/sh") || out.stderr.contains("is up to date"),
            "{}",
            out.stderr
        );
        super::runs_opencode(&env);
    }
);

// An edit of a file the base Dockerfile COPYs rebuilds the base and the image, with no flag;
// then a no-op is one engine call again.
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
    super::build(&env);
    assert_eq!(
        super::exec(&env, "cat /etc/greeting"),
        [format!("one {stamp}")]
    );

    env.write("project/unrelated.txt", "still not copied\n");
    let out = super::build(&env);
    assert!(out.stderr.contains("is up to date"), "{}", out.stderr);

    env.write("project/greeting.txt", &format!("two {stamp}\n"));
    let out = super::build(&env);
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

    let real = which::which(engine).unwrap();
    env.recording(engine, real.to_str().unwrap());
    env.clear_log();
    env.ocx(&["build"])
        .status(0)
        .stderr_has("is up to date")
        .run();
    let log = env.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0][1..3], ["image", "inspect"]);
});
