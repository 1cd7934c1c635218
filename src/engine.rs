//! A backend bound to the runner: the workflows' only handle on an engine. Its fields are
//! private, so every engine call goes through a method here and gets the same treatment: probes
//! run lazily (only before a build), an inspect that cannot be matched falls back to one call
//! per image, a dead engine is an error and never "image missing", and an interrupted session
//! does not leave its container behind.

use crate::backend::{
    detect, logins, runner_flags, AuthStore, Backend, BackendKind, Capability, Credentials,
    Inspected, Login, MultiPlatform, ReleaseNeeds, Remote, Stage, StoredLogin,
};
use crate::build::{BuildRequest, ImageInfo, RunSpec};
use crate::digest::ImageDigest;
use crate::error::UserError;
use crate::exec::{Attach, Captured, CommandFailed, NoParser, Runner};
use crate::image_ref::ImageRef;
use crate::invocation::Invocation;
use crate::platform::Platform;
use crate::report::Reporter;
use anyhow::{anyhow, Result};
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;

pub struct Engine {
    backend: Box<dyn Backend>,
    runner: Runner,
    /// Added to every engine call (a temporary registry auth file, set after a login).
    env: Vec<(String, String)>,
    /// Where per-tag locks live; without it, publishing does not take turns with other runs.
    lock_dir: Option<Utf8PathBuf>,
}

/// Where the user's choice of engine came from, for error messages (`--backend`, `env
/// OCX_BACKEND`, a config file).
#[derive(Debug, Clone)]
pub struct Choice {
    pub value: String,
    pub from: String,
}

impl Engine {
    pub(crate) fn new(backend: Box<dyn Backend>, runner: Runner) -> Self {
        Engine {
            backend,
            runner,
            env: Vec::new(),
            lock_dir: None,
        }
    }

    /// Picks the engine (the explicit choice, else the first on `path`) and binds it to a runner
    /// reporting through `reporter`.
    pub fn open(
        choice: Option<&Choice>,
        path: Option<&OsString>,
        reporter: Arc<dyn Reporter>,
        dry_run: bool,
    ) -> Result<Engine, UserError> {
        let explicit = choice.map(|c| (c.value.as_str(), c.from.as_str()));
        let backend = detect::detect(explicit, path)?;
        Ok(Engine::new(backend, Runner::new(reporter, dry_run)))
    }

    pub(crate) fn kind(&self) -> BackendKind {
        self.backend.kind()
    }

    pub(crate) fn dry_run(&self) -> bool {
        self.runner.dry_run()
    }

    pub(crate) fn reporter(&self) -> &dyn Reporter {
        self.runner.reporter()
    }

    /// The reporter, shared (see [`crate::exec::Runner::shared_reporter`]).
    pub(crate) fn shared_reporter(&self) -> std::sync::Arc<dyn Reporter> {
        self.runner.shared_reporter()
    }

    /// In dry-run mode, shows work that is not a command (a download) in the plan.
    pub(crate) fn note(&self, text: &str) {
        self.runner.note(text);
    }

    /// Whether a line of a failed build's output is the engine's summary of the failed step,
    /// not what the step's program printed.
    pub(crate) fn step_failure(&self, line: &str) -> bool {
        self.backend.step_failure(line)
    }

    pub(crate) fn multi_platform(&self) -> MultiPlatform {
        self.backend.multi_platform()
    }

    pub(crate) fn can_load(&self, platforms: &[Platform]) -> bool {
        self.backend.can_load(platforms)
    }

    /// Enables the per-tag locks ([`crate::lock`]) for assembling and publishing.
    pub(crate) fn set_lock_dir(&mut self, dir: Option<Utf8PathBuf>) {
        self.lock_dir = dir;
    }

    async fn lock(&self, tag: &ImageRef) -> Result<Option<crate::lock::TagLock>> {
        match (&self.lock_dir, self.dry_run()) {
            (Some(d), false) => Ok(Some(crate::lock::TagLock::acquire(d, tag.as_str()).await?)),
            _ => Ok(None),
        }
    }

    /// Held while a release moves the public tags of `repository`, so two releases on this
    /// machine take turns (see `hjk::release::promote`); `None` without a lock directory or in a dry run.
    pub(crate) async fn promotion_lock(
        &self,
        repository: &str,
    ) -> Result<Option<crate::lock::TagLock>> {
        match (&self.lock_dir, self.dry_run()) {
            (Some(d), false) => Ok(Some(
                crate::lock::TagLock::acquire(d, &format!("promote {repository}")).await?,
            )),
            _ => Ok(None),
        }
    }

    /// Sets environment for every later engine call (e.g. where a login stored credentials).
    pub(crate) fn set_env(&mut self, vars: Vec<(String, String)>) {
        self.env = vars;
    }

    fn with_env(&self, inv: Invocation) -> Invocation {
        inv.envs(self.env.iter().cloned())
    }

    async fn capture(&self, inv: Invocation) -> Result<Captured> {
        self.runner.capture(&self.with_env(inv)).await
    }

    async fn stream(&self, inv: Invocation) -> Result<()> {
        self.runner
            .stream(&self.with_env(inv), self.backend.as_ref())
            .await
    }

    /// One `image inspect` for all references. An engine that cannot answer (daemon down) is
    /// an error showing the engine's own message, never "missing".
    pub(crate) async fn inspect(&self, refs: &[&ImageRef]) -> Result<Vec<ImageInfo>> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let inv = self.backend.commands().inspect(refs);
        let shown = inv.to_string();
        let out = self.capture(inv).await?;
        match self.backend.parse_inspect(refs, &out) {
            Inspected::Facts(infos) => return Ok(infos),
            Inspected::EngineFailed(msg) => return Err(self.engine_failed(&shown, &msg)),
            Inspected::BadAnswer(msg) => return Err(self.bad_answer(&shown, &msg)),
            Inspected::Ambiguous => {}
        }
        let mut infos = Vec::with_capacity(refs.len());
        for r in refs {
            let inv = self.backend.commands().inspect(&[r]);
            let shown = inv.to_string();
            let out = self.capture(inv).await?;
            match self.backend.parse_inspect(&[r], &out) {
                Inspected::Facts(mut v) => infos.push(v.pop().unwrap_or_default()),
                Inspected::EngineFailed(msg) => return Err(self.engine_failed(&shown, &msg)),
                Inspected::BadAnswer(msg) => return Err(self.bad_answer(&shown, &msg)),
                Inspected::Ambiguous => infos.push(ImageInfo::missing()),
            }
        }
        Ok(infos)
    }

    /// An answer ocx cannot use (see [`Inspected::BadAnswer`]), naming the command.
    fn bad_answer(&self, command: &str, msg: &str) -> anyhow::Error {
        anyhow!(
            "{} gave an unusable answer to `{command}`: {msg}",
            self.backend.kind()
        )
    }

    fn engine_failed(&self, command: &str, msg: &str) -> anyhow::Error {
        let hint = self
            .backend
            .hint(&[msg.to_string()])
            .map(|h| format!("\nhint: {h}"))
            .unwrap_or_default();
        anyhow!(
            "{} could not answer `{command}`: {msg}{hint}",
            self.backend.kind()
        )
    }

    /// Probes what the backend needs and checks the request, without building, so a plan of
    /// several builds can fail before the first one starts. Probes are read-only and also run
    /// in dry-run mode, so the printed plan uses the builder a real run would use.
    pub(crate) async fn prepare(&self, req: &BuildRequest) -> Result<()> {
        while let Some(probe) = self.backend.probe(req) {
            let out = self.capture(probe.invocation).await?;
            if let Some(w) = self.backend.learn(probe.kind, &out) {
                self.runner.reporter().warn(&w);
            }
        }
        self.backend.check_build(req)?;
        Ok(())
    }

    /// Prepares, then runs the build processes. A failure is a [`crate::exec::CommandFailed`]
    /// naming the step it failed at.
    pub(crate) async fn build(&self, req: &BuildRequest) -> Result<()> {
        self.prepare(req).await?;
        for inv in self.backend.build(req) {
            self.stream_build(inv.secret_envs(&req.env_args)).await?;
        }
        Ok(())
    }

    /// Streams one process of a build; after an interruption of a builder that is stopped
    /// through its helpers, the store is checked (see [`Engine::repair_store`]).
    async fn stream_build(&self, inv: Invocation) -> Result<()> {
        let helpers = inv.stop == crate::invocation::StopBy::Helpers;
        let r = self.stream(inv).await;
        if let Err(e) = &r {
            if helpers && crate::error::interruption(e).is_some() && !self.dry_run() {
                self.repair_store().await;
            }
        }
        r
    }

    /// After an interrupted build: a builder killed mid-commit (a second Ctrl-C, or one that
    /// outlived [`crate::exec::BUILD_GRACE`]) can leave a half-written image that breaks every
    /// listing of the store, for every user. Such an image is removed, but only once it is seen
    /// broken twice a second apart: another build's commit in progress looks the same for a
    /// moment. Best effort, bounded, and it runs although a stop was requested.
    pub(crate) async fn repair_store(&self) {
        let Some(check) = self.backend.store_check() else {
            return;
        };
        let check = self.with_env(check);
        let run = |inv: Invocation| async move {
            let inv = self.with_env(inv);
            tokio::time::timeout(
                std::time::Duration::from_secs(30),
                self.runner.capture_ignoring_stop(&inv),
            )
            .await
            .ok()
            .and_then(Result::ok)
        };
        let mut seen: Option<String> = None;
        for _ in 0..10 {
            let Some(out) = run(check.clone()).await else {
                return;
            };
            let Some((id, remove)) = self.backend.broken_image(&out) else {
                return;
            };
            if seen.as_deref() != Some(id.as_str()) {
                seen = Some(id);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            self.runner.reporter().warn(&format!(
                "{}'s store holds a half-written image {id} (a build killed while it committed), which breaks every listing of the store: removing it (`{remove}`)",
                self.kind()
            ));
            let _ = run(remove).await;
            seen = None;
        }
    }

    /// Removes the other local tags of `keep`'s repository whose tag starts with `prefix`:
    /// older builds of one thing named by their fingerprint, which would otherwise pile up.
    /// Best effort: a tag the engine will not remove (a container uses it) stays, with a
    /// warning. Returns the tags removed.
    pub(crate) async fn remove_older_tags(
        &self,
        keep: &ImageRef,
        prefix: &str,
    ) -> Result<Vec<ImageRef>> {
        let commands = self.backend.commands();
        let Some(list) = commands.list(keep.name_as_written()) else {
            return Ok(Vec::new());
        };
        let out = self.capture(list).await?;
        let mut stale = Vec::new();
        for line in commands.listed(&out.stdout) {
            let line = line.as_str();
            let Some((_, tag)) = line.rsplit_once(':') else {
                continue;
            };
            if !tag.starts_with(prefix) || Some(tag) == keep.tag() {
                continue;
            }
            let Ok(old) = keep.with_tag(tag) else {
                continue;
            };
            if self.backend.names_match(&old, line) && !stale.contains(&old) {
                stale.push(old);
            }
        }
        let mut removed = Vec::new();
        for old in stale {
            let out = self.capture(commands.remove(&[&old]).may_fail()).await?;
            if out.success {
                removed.push(old);
            } else {
                self.runner.reporter().warn(&format!(
                    "could not remove the older {old}: {}",
                    out.tail().join(" ").trim()
                ));
            }
        }
        Ok(removed)
    }

    /// Gives the local image `src` the name `dst` as well.
    pub(crate) async fn tag(&self, src: &ImageRef, dst: &ImageRef) -> Result<()> {
        let inv = self.with_env(self.backend.commands().tag(src, dst));
        self.runner.check(&inv, self.backend.as_ref()).await?;
        Ok(())
    }

    /// Pulls an image; `false` if the engine could not (it may not exist in any registry).
    pub(crate) async fn pull(&self, image: &ImageRef) -> Result<bool> {
        Ok(self
            .capture(self.backend.commands().pull(image))
            .await?
            .success)
    }

    /// Publishes `tags` (see [`Backend::publish`]), one tag at a time under its lock.
    pub(crate) async fn publish(&self, tags: &[ImageRef], instances: &[&ImageRef]) -> Result<()> {
        for tag in tags {
            let _lock = self.lock(tag).await?;
            for inv in self.backend.publish(std::slice::from_ref(tag), instances) {
                self.stream(inv).await?;
            }
        }
        Ok(())
    }

    /// Makes `list` a local multi-platform image of `instances`, under the tag's lock.
    pub(crate) async fn assemble_list(
        &self,
        list: &ImageRef,
        instances: &[&ImageRef],
    ) -> Result<()> {
        let _lock = self.lock(list).await?;
        for inv in self.backend.assemble_list(list, instances) {
            self.stream(inv).await?;
        }
        Ok(())
    }

    /// Runs a container attached to the terminal and returns its exit code. If the session is
    /// interrupted, the named container is removed first: its main process may ignore the
    /// signal (PID 1 has no default handlers), and waiting for it would only delay the stop.
    pub(crate) async fn run_interactive(&self, spec: &RunSpec, attach: Attach) -> Result<i32> {
        self.backend.check_run(spec)?;
        let inv = self.with_env(self.backend.run(spec));
        let cleanup = spec
            .name
            .as_ref()
            .map(|n| self.with_env(self.backend.commands().remove_container(n)));
        self.runner
            .interactive(&inv, attach, cleanup.as_ref())
            .await
    }

    /// The label this engine's runner reads its flags from (`io.headjack.<runtime>.flags`).
    pub(crate) fn runner_flags_label(&self) -> &'static str {
        runner_flags::label(self.kind())
    }

    /// The flags an image's labels ask this engine's runner for, spelled for the engine.
    pub(crate) fn runner_flags(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        labels
            .get(self.runner_flags_label())
            .map(|l| runner_flags::RunnerFlags::parse(l).to_args())
            .unwrap_or_default()
    }

    /// Starts a container in the background (`spec.detach`). An engine that will not start it
    /// because of one of the flags the image's label asked for says which flag, in its own
    /// words, and what to change ([`FlagRefused`]), instead of a bare engine error.
    pub(crate) async fn start(&self, spec: &RunSpec) -> Result<()> {
        let inv = self.with_env(self.backend.run(spec));
        let out = self.runner.capture(&inv).await?;
        if out.success {
            return Ok(());
        }
        let tail = out.tail();
        if let Some(flag) = runner_flags::refused(&tail, &spec.flags) {
            // the engine's own words are on stderr (its usage hint aside)
            let said = out
                .stderr
                .lines()
                .chain(tail.iter().map(String::as_str))
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with("See '"))
                .unwrap_or_default()
                .to_string();
            return Err(FlagRefused {
                engine: self.kind(),
                flag,
                label: self.runner_flags_label(),
                said,
            }
            .into());
        }
        Err(CommandFailed {
            command: inv.to_string(),
            code: out.code,
            hint: self.backend.hint(&tail),
            tail,
            step: None,
        }
        .into())
    }

    /// Runs `command` in the running container `name` (as `user` if given) and captures it;
    /// its exit code is an answer, not an error.
    pub(crate) async fn exec(
        &self,
        name: &str,
        user: Option<&str>,
        command: &[&str],
    ) -> Result<Captured> {
        let command: Vec<String> = command.iter().map(|c| c.to_string()).collect();
        let inv = self.backend.commands().exec(name, user, &command);
        self.capture(inv).await
    }

    /// Whether a captured `exec` failed because its container stopped.
    pub(crate) fn stopped(&self, out: &Captured) -> bool {
        self.backend.container_stopped(out)
    }

    /// What the container printed so far (its init's messages).
    pub(crate) async fn logs(&self, name: &str) -> Result<Captured> {
        self.capture(self.backend.commands().logs(name)).await
    }

    /// Removes a container and its anonymous volumes, also after an interruption (the cleanup
    /// the interruption itself needs); best effort.
    pub(crate) async fn discard_container(&self, name: &str) {
        let inv = self.with_env(self.backend.commands().discard_container(name));
        if self.dry_run() {
            let _ = self.runner.capture(&inv).await;
            return;
        }
        // an engine may give up waiting for a slow container to die (an emulated init under
        // qemu) and say so: try again, a few times
        for _ in 0..5 {
            match self.runner.capture_ignoring_stop(&inv).await {
                Ok(out) if !out.success && !self.backend.container_stopped(&out) => {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await
                }
                _ => return,
            }
        }
    }

    /// Passes remote-builder choices through (see [`Backend::configure`]).
    pub(crate) fn configure(&mut self, remote: &Remote) -> Result<(), UserError> {
        self.backend.configure(remote)
    }

    /// Runs the build probes (which builder the engine has), then refuses a release it cannot
    /// do, before anything is built or pushed.
    pub(crate) async fn check_release(&self, needs: &ReleaseNeeds) -> Result<()> {
        self.learn_builder(&needs.platforms[..1]).await?;
        self.backend.check_release(needs)?;
        Ok(())
    }

    /// The credentials the engine is already logged in with for the repository `repo`
    /// (`host/path`): its login files in the order it reads them ([`Backend::login_files`], read
    /// as [`Backend::login_reader`] says), a credential helper when one holds them. `None` when
    /// nothing is stored (or the helper cannot answer): the registry is then read anonymously.
    pub(crate) async fn stored_credentials(
        &self,
        vars: &BTreeMap<String, String>,
        repo: &str,
    ) -> Result<Option<Credentials>> {
        let host = repo.split('/').next().unwrap_or(repo);
        for f in self.backend.login_files(vars) {
            // a login file that is not a readable regular file is skipped, never waited on
            let Ok(Some(text)) = crate::input_file::read(&f, crate::input_file::CONFIG) else {
                continue;
            };
            match logins::stored_login(&text, repo, self.backend.login_reader()) {
                StoredLogin::Basic(c) => return Ok(Some(c)),
                StoredLogin::Helper(h) => {
                    let Some(inv) = logins::helper_get(&h, host) else {
                        continue;
                    };
                    match self.tool(&inv).await {
                        Ok(out) => {
                            if let Some(c) = logins::helper_reply(&out.stdout) {
                                return Ok(Some(c));
                            }
                        }
                        Err(e) if crate::error::interruption(&e).is_some() => return Err(e),
                        // a helper that is missing or has nothing for this host: look on
                        Err(_) => {}
                    }
                }
                StoredLogin::Missing => {}
            }
        }
        Ok(None)
    }

    /// How the engine's commands will find the credentials of a login to `host` into `dir`.
    pub(crate) fn auth_store(
        &self,
        dir: &Utf8Path,
        vars: &BTreeMap<String, String>,
        host: &str,
    ) -> AuthStore {
        self.backend.auth_store(dir, vars, host)
    }

    /// `login --password-stdin` into the store at `dir`. Rejected credentials are the user's to
    /// fix (exit 2, one line); anything else (registry down) is a failure. Where the engine
    /// keeps logins outside the store, one the user already has for the host is refused first.
    pub(crate) async fn login(&self, login: &Login, dir: &Utf8Path) -> Result<()> {
        if let Some(list) = self.backend.keychain_logins() {
            let listing = self.capture(list).await?;
            self.backend.check_login(&login.host, &listing)?;
        }
        let inv = self.backend.login(login, dir);
        let out = self.capture(inv.clone()).await?;
        if out.success || self.dry_run() {
            return Ok(());
        }
        let text = format!("{}\n{}", out.stdout, out.stderr).to_ascii_lowercase();
        if [
            "unauthorized",
            "invalid username",
            "incorrect username",
            "401",
        ]
        .iter()
        .any(|m| text.contains(m))
        {
            return Err(UserError::credentials(format!(
                "{} login to {} as {} was refused: wrong user name or password",
                self.kind(),
                login.host,
                login.username
            ))
            .into());
        }
        Err(CommandFailed {
            command: inv.to_string(),
            code: out.code,
            tail: out.tail(),
            hint: self.backend.hint(&out.tail()),
            step: None,
        }
        .into())
    }

    /// Forgets a login that would outlive us (Apple's keychain); best effort.
    pub(crate) async fn logout(&self, host: &str) {
        if let Some(inv) = self.backend.logout(host) {
            let inv = self.with_env(inv);
            // also after an interruption: the keychain entry must not outlive us
            let _ = match self.dry_run() {
                true => self.runner.capture(&inv).await,
                false => self.runner.capture_ignoring_stop(&inv).await,
            };
        }
    }

    /// Builds one platform of a release and pushes it to its staging tag, or writes it as an
    /// OCI layout for the workflow to push ([`Backend::stage_layout`]).
    pub(crate) async fn stage(&self, req: &BuildRequest, stage: &Stage) -> Result<Staged> {
        self.prepare(req).await?;
        for inv in self.backend.stage(req, stage) {
            self.stream_build(inv).await?;
        }
        let layout = self.backend.stage_layout().then(|| stage.layout.clone());
        if self.dry_run() {
            return Ok(Staged {
                digest: None,
                layout,
            });
        }
        let text = std::fs::read_to_string(&stage.digest_file).unwrap_or_default();
        let digest = self
            .backend
            .staged_digest(&text)
            .map(|d| ImageDigest::parse(&d))
            .transpose()
            .map_err(|e| {
                anyhow!(
                    "{} wrote {} with a digest that is not one: {}",
                    self.backend.kind(),
                    stage.digest_file,
                    e.message()
                )
            })?;
        Ok(Staged { digest, layout })
    }

    /// Removes the local images a release built under its staging tags, each by its tag (an
    /// image another tag names keeps that tag), best effort, also after a stop was requested.
    /// Where the builder wrote an OCI layout for the workflow to push, nothing was kept.
    pub(crate) async fn remove_staged(&self, tags: &[ImageRef]) {
        if tags.is_empty() || self.dry_run() || self.backend.stage_layout() {
            return;
        }
        let mut removed = 0;
        for t in tags {
            let inv = self.with_env(self.backend.commands().remove(&[t]).may_fail());
            let done = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                self.runner.capture_ignoring_stop(&inv),
            )
            .await;
            if matches!(done, Ok(Ok(out)) if out.success) {
                removed += 1;
            }
        }
        if removed > 0 {
            self.runner.reporter().info(&format!(
                "removed the {removed} local stage-* image(s) this release built (the registry keeps them; --keep-stage keeps them here too)"
            ));
        }
    }

    /// Whether the engine can do `c` (see [`Capability`]); asks the builder first, once.
    pub(crate) async fn supports(&self, c: Capability, platforms: &[Platform]) -> Result<bool> {
        self.learn_builder(platforms).await?;
        Ok(self.backend.supports(c))
    }

    /// The one-line refusal of a request for `c`, which this engine lacks.
    pub(crate) fn refusal(&self, c: Capability) -> UserError {
        crate::backend::refusal(self.backend.as_ref(), c)
    }

    /// Which builder the engine's answers are about, for messages.
    pub(crate) fn builder_note(&self) -> String {
        self.backend.builder_note()
    }

    /// The same question without asking the builder: the answer for the builder the backend
    /// assumes until its probes ran. For what must not cost an engine call (a no-op's plan).
    pub(crate) fn assumes(&self, c: Capability) -> bool {
        self.backend.supports(c)
    }

    /// Runs the read-only builder probes (once per process) that the answers of
    /// [`Engine::supports`], [`Engine::can_load`] and `check_*` depend on.
    pub(crate) async fn learn_builder(&self, platforms: &[Platform]) -> Result<()> {
        let mut probe_req = BuildRequest::new(
            Default::default(),
            Default::default(),
            ImageRef::parse("hjk-probe").expect("a valid reference"),
        );
        if !platforms.is_empty() {
            probe_req.platforms = platforms.to_vec();
        }
        while let Some(probe) = self.backend.probe(&probe_req) {
            let out = self.capture(probe.invocation).await?;
            if let Some(w) = self.backend.learn(probe.kind, &out) {
                self.runner.reporter().warn(&w);
            }
        }
        Ok(())
    }

    /// Runs a short container and captures what it printed (a probe of an image). It changes no
    /// image, so it is read-only and `--dry-run` runs it too. A command the image does not have
    /// is an answer ([`Ran::NoSuchCommand`]); any other failure is the engine's.
    pub(crate) async fn run_captured(&self, spec: &RunSpec) -> Result<Ran> {
        self.backend.check_run(spec)?;
        let inv = self.backend.run(spec).read_only();
        let shown = inv.to_string();
        let out = self.capture(inv).await?;
        if out.success {
            return Ok(Ran::Output(out));
        }
        if self.backend.missing_executable(&out) {
            return Ok(Ran::NoSuchCommand);
        }
        let tail = out.tail().join(" ");
        Err(self.engine_failed(&shown, tail.trim()))
    }

    /// Runs a tool that is not the engine (npm, cosign, syft, trivy) and requires success.
    pub(crate) async fn tool(&self, inv: &Invocation) -> Result<Captured> {
        self.runner.check(inv, &NoParser).await
    }

    /// Runs a long tool process with its output streamed like a build's.
    pub(crate) async fn tool_stream(&self, inv: &Invocation) -> Result<()> {
        self.runner.stream(inv, &NoParser).await
    }

    /// [`Engine::tool_stream`] for a tool that prints its result on stdout after its progress
    /// (`devcontainer build`): returns how it ended and all of its stdout.
    pub(crate) async fn tool_stream_result(&self, inv: &Invocation) -> Result<Captured> {
        self.runner.stream_keeping(inv, &NoParser, true).await
    }
}

/// What [`Engine::stage`] left for the workflow.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The digest the engine reported (pushed, or at the top of the layout).
    pub digest: Option<ImageDigest>,
    /// An OCI layout to push under the staging tag, when the engine wrote one.
    pub layout: Option<Utf8PathBuf>,
}

/// An engine would not start a container because of a flag the image's label asked for (a
/// host whose capability set is short, user-namespace remapping, a flag this engine lacks).
#[derive(Debug)]
pub(crate) struct FlagRefused {
    pub engine: crate::backend::BackendKind,
    /// The flag as passed (`--privileged`).
    pub flag: String,
    /// The label it came from.
    pub label: &'static str,
    /// The engine's own message.
    pub said: String,
}

impl std::fmt::Display for FlagRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.flag.split('=').next().unwrap_or(&self.flag);
        let change = match name {
            "--privileged" => format!(
                "run the image where {} may start privileged containers (a rootful engine with its full capability set and no user-namespace remapping)",
                self.engine
            ),
            _ => format!("run the image with a {} that accepts `{name}`", self.engine),
        };
        write!(
            f,
            "{} refused `{}`, which the image's {} label asks for: \"{}\"; {change}, or give that key another value in Headjack's runtime.flags, which replaces the label's",
            self.engine, self.flag, self.label, self.said
        )
    }
}

impl std::error::Error for FlagRefused {}

/// What [`Engine::run_captured`] found.
#[derive(Debug)]
pub(crate) enum Ran {
    Output(Captured),
    /// The image has no such command (a base without `/bin/sh`).
    NoSuchCommand,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Event;

    struct Quiet;
    impl Reporter for Quiet {
        fn event(&self, _: Event) {}
    }

    /// An engine answering `image inspect` with a digest that is not one: the error names the
    /// engine and the command, and says what was wrong.
    #[tokio::test(flavor = "current_thread")]
    async fn a_bad_digest_in_an_inspect_answer_names_the_command() {
        let dir = std::env::temp_dir().join(format!("ocx-bad-digest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("docker");
        std::fs::write(
            &script,
            "#!/bin/sh\necho '[{\"Id\":\"sha256:a\",\"RepoTags\":[\"a:1\"],\"RepoDigests\":[\"a@sha256:not-hex\"]}]'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let engine = Engine::new(
            Box::new(crate::backend::docker::Docker::new(
                script.to_str().unwrap(),
            )),
            Runner::new(Arc::new(Quiet), false),
        );
        let a = ImageRef::parse("a:1").unwrap();
        let err = engine.inspect(&[&a]).await.unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            err.starts_with("docker gave an unusable answer to `")
                && err.contains(" image inspect a:1`: ")
                && err.ends_with(
                    "`: RepoDigests: \"sha256:not-hex\" is not a sha256 digest (sha256:<64 hex digits>)"
                ),
            "{err}"
        );
    }
}
