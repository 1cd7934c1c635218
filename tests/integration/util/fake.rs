//! What the fakes in tests/fixtures/fake-bin do besides their defaults, as one typed value a
//! test writes with [`super::TestEnv::script`]. It lands in `$FAKE_DIR/script`, one
//! `knob value` line per field that is set (`\` and line breaks escaped as `\\` and `\n`), and
//! each fake reads its knobs with its `knob` function: no other file steers them.
//! The fakes' own records (their argv in `$FAKE_DIR/log`, a pid they sleep under, the platforms
//! `container` resolved, `env.log`) and the image stores (`images/`, written by
//! `TestEnv::images_exist` / `apple_image`) are what the fakes hold, not how they are steered.

/// What a fake `build` does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Build {
    /// prints a few step lines and exits 0
    #[default]
    Succeeds,
    /// records its pid (see [`Pid::Build`]) and runs a step that sleeps for a minute (signal
    /// tests): the step's process is a helper in the build's process group, as a RUN's
    /// container is, so a build stopped through its helpers (podman's) fails when it dies
    Hangs,
    /// [`Build::Hangs`], but the build holds out: it notes each SIGINT/SIGTERM its step dies
    /// of (see [`super::TestEnv::fake_signals`]) and starts the next, until it is killed
    HangsThroughSignals,
}

/// The knobs of fake-engine (docker, podman), fake-container (Apple's `container`) and
/// fake-supply-chain (cosign, syft, trivy); a `*_when` field holds text that, found in the
/// argv, sets the behaviour off.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// every engine command fails like a dead daemon (fake-engine: `image inspect` only)
    pub engine_down: bool,
    /// fake-engine: stdout of every `image inspect` (exit 0), whatever was asked
    pub inspect: Option<String>,
    /// fake-engine: `docker buildx ...` fails like a docker 28 client without the plugin
    pub no_buildx: bool,
    /// fake-engine: the `Driver:` line of `docker buildx inspect` (default `docker`)
    pub buildx_driver: Option<String>,
    /// fake-engine: the builder's daemon keeps images in the overlay2 store (no containerd
    /// worker labels); default: the containerd image store
    pub buildx_overlay2: bool,
    pub build: Build,
    /// `build` fails (exit 1, a failed RUN step) when its argv holds this
    pub build_fails_when: Option<String>,
    /// fake-engine: `build` also prints docker's legacy-builder deprecation notice
    pub build_noise: bool,
    /// exit code of `run`
    pub run_exit: Option<i32>,
    /// fake-engine: what `run` prints on stderr
    pub run_stderr: Option<String>,
    /// the probe (`run --entrypoint /bin/sh`) fails like a base without /bin/sh
    pub no_shell: bool,
    /// `push` fails like an unreachable registry
    pub push_fails: bool,
    /// fake-engine: `manifest add` fails like podman racing another run (image not known)
    pub manifest_add_fails: bool,
    /// fake-container: `registry.domain` from its config.toml (default docker.io)
    pub registry_domain: Option<String>,
    /// fake-container: the keychain logins `registry list --format json` prints (default none)
    pub keychain_logins: Option<String>,
    /// syft fails (exit 1, writing nothing) like a registry error
    pub syft_fails_when: Option<String>,
    /// trivy's report has one HIGH and one CRITICAL fixable vulnerability, and it exits with
    /// `--exit-code`'s code
    pub trivy_finds_when: Option<String>,
    /// trivy dies with a fatal error (exit 1)
    pub trivy_errors_when: Option<String>,
    /// trivy records its pid (see [`Pid::Trivy`]) and sleeps (signal tests)
    pub trivy_hangs: bool,
    /// cosign fails (exit 1) like a refused signature push
    pub cosign_fails_when: Option<String>,
}

impl Script {
    /// The lines of `$FAKE_DIR/script`.
    pub fn text(&self) -> String {
        let mut lines: Vec<(&str, String)> = Vec::new();
        let flag = |k: &'static str, on: bool| on.then(|| (k, String::new()));
        let flags = [
            flag("engine-down", self.engine_down),
            flag("no-buildx", self.no_buildx),
            flag("buildx-overlay2", self.buildx_overlay2),
            flag("build-noise", self.build_noise),
            flag("no-shell", self.no_shell),
            flag("push-fails", self.push_fails),
            flag("manifest-add-fails", self.manifest_add_fails),
            flag("trivy-hangs", self.trivy_hangs),
        ];
        lines.extend(flags.into_iter().flatten());
        match self.build {
            Build::Succeeds => {}
            Build::Hangs => lines.push(("build-hangs", String::new())),
            Build::HangsThroughSignals => lines.push(("build-hangs", "through-signals".into())),
        }
        let texts = [
            ("inspect", &self.inspect),
            ("buildx-driver", &self.buildx_driver),
            ("build-fails-when", &self.build_fails_when),
            ("run-stderr", &self.run_stderr),
            ("registry-domain", &self.registry_domain),
            ("keychain-logins", &self.keychain_logins),
            ("syft-fails-when", &self.syft_fails_when),
            ("trivy-finds-when", &self.trivy_finds_when),
            ("trivy-errors-when", &self.trivy_errors_when),
            ("cosign-fails-when", &self.cosign_fails_when),
        ];
        for (k, v) in texts {
            if let Some(v) = v {
                lines.push((k, v.clone()));
            }
        }
        if let Some(code) = self.run_exit {
            lines.push(("run-exit", code.to_string()));
        }
        lines
            .into_iter()
            .map(|(k, v)| {
                let v = v.replace('\\', "\\\\").replace('\n', "\\n");
                format!("{k} {v}\n")
            })
            .collect()
    }
}

/// A pid a fake records while it sleeps, for a signal test to wait on.
#[derive(Clone, Copy, Debug)]
pub enum Pid {
    /// a `build` under [`Build::Hangs`] or [`Build::HangsThroughSignals`]
    Build,
    /// trivy under [`Script::trivy_hangs`]
    Trivy,
}

impl Pid {
    pub fn file(self) -> &'static str {
        match self {
            Pid::Build => "build.pid",
            Pid::Trivy => "trivy.pid",
        }
    }
}
