//! A backend bound to the runner: the workflows' handle on an engine. It runs probes lazily
//! (only before a build), and falls back to one inspect per image only when a combined inspect
//! cannot be matched to its requests.

use crate::backend::Backend;
use crate::build::{BuildRequest, ImageInfo, RunSpec};
use crate::exec::Runner;
use crate::image_ref::ImageRef;
use anyhow::Result;

pub struct Engine {
    pub backend: Box<dyn Backend>,
    pub runner: Runner,
}

impl Engine {
    pub fn new(backend: Box<dyn Backend>, runner: Runner) -> Self {
        Engine { backend, runner }
    }

    /// One `image inspect` for all references.
    pub async fn inspect(&self, refs: &[&ImageRef]) -> Result<Vec<ImageInfo>> {
        let inv = self.backend.inspect(refs);
        let out = self.runner.capture(&inv).await?;
        if let Some(infos) = self.backend.parse_inspect(refs, &out) {
            return Ok(infos);
        }
        let mut infos = Vec::with_capacity(refs.len());
        for r in refs {
            let inv = self.backend.inspect(&[r]);
            let out = self.runner.capture(&inv).await?;
            let info = self.backend.parse_inspect(&[r], &out);
            infos.push(
                info.and_then(|mut v| v.pop())
                    .unwrap_or_else(ImageInfo::missing),
            );
        }
        Ok(infos)
    }

    /// Probes what the backend needs, checks the request, then runs the build processes.
    pub async fn build(&self, req: &BuildRequest) -> Result<()> {
        self.prepare(req).await?;
        for inv in self.backend.build(req) {
            self.runner.stream(&inv).await?;
        }
        Ok(())
    }

    /// Probes and checks without building, so a multi-node plan can fail before any build.
    pub async fn prepare(&self, req: &BuildRequest) -> Result<()> {
        if !self.runner.dry_run() {
            while let Some(probe) = self.backend.probe(req) {
                let out = self.runner.capture(&probe).await?;
                if let Some(w) = self.backend.learn(&probe, &out) {
                    self.runner.reporter().warn(&w);
                }
            }
        }
        self.backend.check_build(req)?;
        Ok(())
    }

    pub async fn pull(&self, image: &ImageRef) -> Result<bool> {
        Ok(self
            .runner
            .capture(&self.backend.pull(image))
            .await?
            .success)
    }

    pub async fn run_interactive(&self, spec: &RunSpec) -> Result<i32> {
        self.runner.interactive(&self.backend.run(spec)).await
    }
}
