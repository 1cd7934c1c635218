//! `hjk images boot`: start an image the way Headjack's runner would and wait until it is up,
//! then remove it. The image's own labels say how (`io.headjack.init` and the engine's
//! `io.headjack.<runtime>.flags`, read in [`crate::backend::runner_flags`]); this module is the
//! workflow, one named step each: `start`, `wait_systemd` (for an init that is systemd:
//! `systemctl is-system-running` must say `running`; `degraded` fails unless every failed unit
//! is allowed), `check_docker` (an image whose systemd enables docker: `docker info`, then a
//! `docker run` of an image loaded into the inner daemon), `check_exec_user` (the session user
//! of `io.headjack.exec.user` exists and can run a command), and [`boot`] removes the container
//! on every way out: success, failure, timeout and Ctrl-C.
//!
//! A release runs the same [`boot`] as its `--boot` gate ([`crate::hjk::release::gates`]).

use crate::build::RunSpec;
use crate::engine::Engine;
use crate::error::UserError;
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub(crate) use crate::backend::runner_flags::LABEL_EXEC_USER;
/// Units an image expects to fail in a container (space-separated): a boot that is `degraded`
/// only by these passes, as with `--allow-failed`.
pub(crate) const LABEL_ALLOW_FAILED: &str = "io.headjack.boot.allow-failed";
/// How long a boot may take by default (systemd and dockerd under emulation take longer).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);
/// How many journal lines a failure shows.
const JOURNAL_LINES: usize = 30;

/// How to boot: the wait, the units allowed to fail, the platform.
#[derive(Debug, Clone)]
pub struct BootOptions {
    pub timeout: Duration,
    /// `--allow-failed UNIT`, besides the image's own [`LABEL_ALLOW_FAILED`].
    pub allow_failed: Vec<String>,
    pub platform: Option<Platform>,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            timeout: DEFAULT_TIMEOUT,
            allow_failed: Vec::new(),
            platform: None,
        }
    }
}

/// What a boot showed (the `--json` result).
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Booted {
    pub image: String,
    pub engine: String,
    /// The command after the image.
    pub init: Vec<String>,
    /// The engine flags the label asked for.
    pub flags: Vec<String>,
    pub exec_user: Option<String>,
    /// What `systemctl is-system-running` said last (`None`: not a systemd image).
    pub systemd: Option<String>,
    /// Failed units the image or `--allow-failed` allowed.
    pub allowed_failed: Vec<String>,
    /// The inner dockerd's version, for an image whose systemd starts docker.
    pub docker: Option<String>,
    /// A container ran in the inner daemon.
    pub inner_run: bool,
    pub seconds: f64,
}

impl Booted {
    /// One line for people.
    pub(crate) fn line(&self) -> String {
        let mut parts = vec![match &self.systemd {
            Some(s) if self.allowed_failed.is_empty() => format!("systemd {s}"),
            Some(s) => format!("systemd {s} (allowed: {})", self.allowed_failed.join(", ")),
            None => format!("`{}` running", self.init.join(" ")),
        }];
        if let Some(v) = &self.docker {
            parts.push(format!("docker {v} answers"));
        }
        if self.inner_run {
            parts.push("a container ran inside".into());
        }
        if let Some(u) = &self.exec_user {
            parts.push(format!("sessions run as {u}"));
        }
        format!(
            "{} booted on {} in {:.1}s: {}",
            self.image,
            self.engine,
            self.seconds,
            parts.join("; ")
        )
    }
}

/// A boot that did not come up: why, the failed units, and the last journal lines.
#[derive(Debug, Clone)]
pub(crate) struct BootFailed {
    pub image: String,
    pub why: String,
    pub failed_units: Vec<String>,
    pub journal: Vec<String>,
}

impl std::fmt::Display for BootFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} did not boot: {}", self.image, self.why)?;
        if !self.failed_units.is_empty() {
            write!(f, "\nfailed units: {}", self.failed_units.join(", "))?;
        }
        if !self.journal.is_empty() {
            write!(f, "\n--- last {} journal lines ---", self.journal.len())?;
            for l in &self.journal {
                write!(f, "\n{l}")?;
            }
            write!(f, "\n---")?;
        }
        Ok(())
    }
}

impl std::error::Error for BootFailed {}

impl BootFailed {
    /// One line for a gate's reasons.
    pub(crate) fn short(&self) -> String {
        match self.failed_units.is_empty() {
            true => format!("boot failed: {}", self.why),
            false => format!(
                "boot failed: {} (failed units: {})",
                self.why,
                self.failed_units.join(", ")
            ),
        }
    }
}

/// A name no other run uses.
fn container_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "hjk-boot-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Boots `image` (already local, with these `labels`), checks it, and removes the container
/// whatever happened. A boot that does not come up is a [`BootFailed`].
pub(crate) async fn boot(
    engine: &Engine,
    image: &ImageRef,
    labels: &BTreeMap<String, String>,
    opts: &BootOptions,
) -> Result<Booted> {
    let started = Instant::now();
    let name = container_name();
    let mut booted = Booted {
        image: image.to_string(),
        engine: engine.kind().to_string(),
        init: crate::backend::runner_flags::init(labels),
        flags: engine.runner_flags(labels),
        exec_user: labels
            .get(LABEL_EXEC_USER)
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty()),
        ..Default::default()
    };
    let mut allowed: Vec<String> = opts.allow_failed.clone();
    if let Some(l) = labels.get(LABEL_ALLOW_FAILED) {
        allowed.extend(l.split_whitespace().map(String::from));
    }
    let result = async {
        start(engine, &name, &booted, opts).await?;
        if engine.dry_run() {
            engine.note(&format!(
                "then: wait until {name} is up (at most {}s), check it, remove it",
                opts.timeout.as_secs()
            ));
            return Ok(());
        }
        let deadline = Instant::now() + opts.timeout;
        let checks = Checks {
            engine,
            name: &name,
            image: image.as_str(),
            deadline,
        };
        if is_systemd(&booted.init) {
            let (state, ok_failed) = checks.wait_systemd(&allowed).await?;
            booted.systemd = Some(state);
            booted.allowed_failed = ok_failed;
            if let Some(v) = checks.check_docker(booted.exec_user.as_deref()).await? {
                booted.docker = Some(v);
                booted.inner_run = true;
            }
        } else {
            checks.wait_running().await?;
        }
        if let Some(u) = &booted.exec_user {
            checks.check_exec_user(u).await?;
        }
        Ok(())
    }
    .await;
    engine.discard_container(&name).await;
    booted.seconds = started.elapsed().as_secs_f64();
    result.map(|()| booted)
}

/// Whether the init is systemd (`/lib/systemd/systemd`, `/sbin/init` on a systemd image is
/// not told apart: the label names systemd itself in every Headjack image).
fn is_systemd(init: &[String]) -> bool {
    init.first()
        .is_some_and(|c| c.rsplit('/').next().unwrap_or(c) == "systemd")
}

/// Starts the container as the runner does: `run --detach --name N <flags> IMAGE <init>`.
async fn start(engine: &Engine, name: &str, b: &Booted, opts: &BootOptions) -> Result<()> {
    let spec = RunSpec {
        image: b.image.clone(),
        name: Some(name.to_string()),
        command: b.init.clone(),
        detach: true,
        flags: b.flags.clone(),
        platform: opts.platform,
        ..Default::default()
    };
    engine.reporter().info(&format!(
        "booting {} in {name} as Headjack's runner would: {}{}",
        b.image,
        match b.flags.is_empty() {
            true => String::new(),
            false => format!("{} ", b.flags.join(" ")),
        },
        b.init.join(" ")
    ));
    engine.start(&spec).await
}

/// What every check of one running container needs.
struct Checks<'a> {
    engine: &'a Engine,
    name: &'a str,
    image: &'a str,
    deadline: Instant,
}

impl Checks<'_> {
    fn failed(&self, why: String, failed_units: Vec<String>, journal: Vec<String>) -> BootFailed {
        BootFailed {
            image: self.image.to_string(),
            why,
            failed_units,
            journal,
        }
    }

    async fn exec(&self, user: Option<&str>, cmd: &[&str]) -> Result<crate::exec::Captured> {
        self.engine.exec(self.name, user, cmd).await
    }

    /// Waits a second, or less if a stop is requested (then fails with it).
    async fn pause(&self) -> Result<()> {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => Ok(()),
            why = crate::interrupt::wait() => Err(why.into()),
        }
    }

    /// The container stopped: its own output says why.
    async fn stopped(&self) -> anyhow::Error {
        let logs = self.engine.logs(self.name).await.unwrap_or_default();
        self.failed("the container stopped".into(), Vec::new(), logs.tail())
            .into()
    }

    /// A container whose init is not systemd: it must keep running.
    async fn wait_running(&self) -> Result<()> {
        let out = self.exec(None, &["true"]).await?;
        if out.success {
            return Ok(());
        }
        if self.engine.stopped(&out) {
            return Err(self.stopped().await);
        }
        Err(self
            .failed(
                format!("`true` does not run in it: {}", last_line(&out)),
                Vec::new(),
                Vec::new(),
            )
            .into())
    }

    /// Polls `systemctl is-system-running` until it settles. `running` passes; `degraded`
    /// passes only if every failed unit is allowed (returns them); anything else, or the
    /// deadline, fails with the failed units and the journal's last lines.
    async fn wait_systemd(&self, allowed: &[String]) -> Result<(String, Vec<String>)> {
        let mut last = String::from("(no answer)");
        loop {
            let out = self.exec(None, &["systemctl", "is-system-running"]).await?;
            let state = out.stdout.trim().to_string();
            if !out.success && self.engine.stopped(&out) {
                return Err(self.stopped().await);
            }
            if !state.is_empty() {
                last = state.clone();
            }
            match state.as_str() {
                "running" => return Ok((state, Vec::new())),
                "degraded" => {
                    let failed = self.failed_units().await?;
                    let (ok, bad): (Vec<String>, Vec<String>) = failed
                        .into_iter()
                        .partition(|u| allowed.iter().any(|a| a == u));
                    if bad.is_empty() {
                        return Ok((state, ok));
                    }
                    let journal = self.journal(&bad).await;
                    let why = format!(
                        "systemd is degraded: {} failed (allow one with --allow-failed UNIT or the image's {LABEL_ALLOW_FAILED} label)",
                        bad.join(", ")
                    );
                    return Err(self.failed(why, bad, journal).into());
                }
                "maintenance" | "stopping" => {
                    let failed = self.failed_units().await.unwrap_or_default();
                    let journal = self.journal(&failed).await;
                    let why = format!("systemd is in {state}");
                    return Err(self.failed(why, failed, journal).into());
                }
                _ => {}
            }
            if Instant::now() >= self.deadline {
                let failed = self.failed_units().await.unwrap_or_default();
                let journal = self.journal(&failed).await;
                let why = format!("systemd was still `{last}` when the timeout ran out (--timeout SECONDS to wait longer)");
                return Err(self.failed(why, failed, journal).into());
            }
            self.pause().await?;
        }
    }

    /// The units systemd lists as failed.
    async fn failed_units(&self) -> Result<Vec<String>> {
        let out = self
            .exec(
                None,
                &[
                    "systemctl",
                    "list-units",
                    "--state=failed",
                    "--no-legend",
                    "--plain",
                ],
            )
            .await?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(String::from)
            .collect())
    }

    /// The journal's last lines: of the failed units, else of the whole boot.
    async fn journal(&self, units: &[String]) -> Vec<String> {
        let n = JOURNAL_LINES.to_string();
        let mut cmd = vec!["journalctl", "--no-pager", "-n", n.as_str()];
        for u in units {
            cmd.push("-u");
            cmd.push(u);
        }
        match self.exec(None, &cmd).await {
            Ok(out) if out.success => out
                .stdout
                .lines()
                .map(String::from)
                .filter(|l| !l.trim().is_empty())
                .collect(),
            _ => self
                .engine
                .logs(self.name)
                .await
                .map(|o| o.tail())
                .unwrap_or_default(),
        }
    }

    /// For an image whose systemd enables docker: `docker info` answers (as the session user,
    /// who is in the docker group), and a container runs in the inner daemon, from an image
    /// loaded into it from the container's own files (`docker import` of `/usr/bin/true` and
    /// its libraries: no registry needed, and the right architecture). Returns the inner
    /// daemon's version; `None` when the image does not start docker.
    async fn check_docker(&self, user: Option<&str>) -> Result<Option<String>> {
        let enabled = self
            .exec(None, &["systemctl", "is-enabled", "docker.service"])
            .await?;
        if enabled.stdout.trim() != "enabled" {
            return Ok(None);
        }
        let version = loop {
            let out = self
                .exec(user, &["docker", "info", "--format", "{{.ServerVersion}}"])
                .await?;
            let v = out.stdout.trim().to_string();
            if out.success && !v.is_empty() {
                break v;
            }
            if Instant::now() >= self.deadline {
                let units = vec!["docker.service".to_string()];
                let journal = self.journal(&units).await;
                let why = format!("`docker info` did not answer: {}", last_line(&out));
                return Err(self.failed(why, Vec::new(), journal).into());
            }
            self.pause().await?;
        };
        let script = "set -e; files=\"/usr/bin/true $(ldd /usr/bin/true | grep -o '/[^ ]*')\"; \
             tar -chf - $files 2>/dev/null | docker import - hjk-boot-check:latest >/dev/null; \
             docker run --rm hjk-boot-check:latest /usr/bin/true; \
             docker image rm hjk-boot-check:latest >/dev/null; echo ran";
        let out = self.exec(user, &["sh", "-c", script]).await?;
        if !(out.success && out.stdout.trim().ends_with("ran")) {
            let units = vec!["docker.service".to_string()];
            let journal = self.journal(&units).await;
            let why = format!(
                "a container did not run in the inner docker: {}",
                last_line(&out)
            );
            return Err(self.failed(why, Vec::new(), journal).into());
        }
        Ok(Some(version))
    }

    /// The session user exists and can run a command (`exec --user U id -un` names it).
    async fn check_exec_user(&self, user: &str) -> Result<()> {
        let out = self.exec(Some(user), &["id", "-un"]).await?;
        if out.success && out.stdout.trim() == user {
            return Ok(());
        }
        let why = format!(
            "the session user {user} of the {LABEL_EXEC_USER} label cannot run a command: {}",
            last_line(&out)
        );
        Err(self.failed(why, Vec::new(), Vec::new()).into())
    }
}

fn last_line(out: &crate::exec::Captured) -> String {
    out.tail()
        .into_iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| format!("exit code {:?}", out.code))
}

/// What `hjk images boot` boots: a variant (what `hjk images build` tagged for it) or an
/// image reference, as it is.
pub(crate) enum Target {
    Variant(String),
    Image(ImageRef),
}

/// The image to boot and its labels: a variant must have been built; a reference that is not
/// local is pulled.
pub(crate) async fn local_image(
    engine: &Engine,
    target: &Target,
    registry: &ImageRef,
) -> Result<(ImageRef, BTreeMap<String, String>)> {
    let image = match target {
        Target::Variant(v) => registry.with_tag(v)?,
        Target::Image(i) => i.clone(),
    };
    let mut info = engine.inspect(&[&image]).await?.pop().unwrap_or_default();
    if !info.exists {
        match target {
            Target::Variant(v) => {
                return Err(UserError::not_found(format!(
                    "{image} is not built on {}: run `hjk images build --variant {v}` first (with the same --registry and --backend)",
                    engine.kind()
                ))
                .into())
            }
            Target::Image(_) if !engine.dry_run() => {
                if !engine.pull(&image).await? {
                    return Err(UserError::not_found(format!(
                        "{image} is neither a local image nor one {} could pull; check the reference",
                        engine.kind()
                    ))
                    .into());
                }
                info = engine.inspect(&[&image]).await?.pop().unwrap_or_default();
            }
            Target::Image(_) => {}
        }
    }
    Ok((image, info.labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_inits_and_the_failure_text() {
        assert!(is_systemd(&["/lib/systemd/systemd".into()]));
        assert!(!is_systemd(&["sleep".into(), "infinity".into()]));
        let f = BootFailed {
            image: "x:dind".into(),
            why: "systemd is degraded: a.service failed".into(),
            failed_units: vec!["a.service".into()],
            journal: vec!["a.service: Main process exited".into()],
        };
        let text = f.to_string();
        assert!(text.starts_with("x:dind did not boot: systemd is degraded"));
        assert!(text.contains("\nfailed units: a.service\n--- last 1 journal lines ---\na.service: Main process exited\n---"));
        assert_eq!(
            f.short(),
            "boot failed: systemd is degraded: a.service failed (failed units: a.service)"
        );
    }
}
