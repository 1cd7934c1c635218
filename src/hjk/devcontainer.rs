//! devcontainer.json as the Dev Container spec and the reference CLI (`@devcontainers/cli`)
//! read it: where it is ([`discover`]), what it says after variable substitution ([`read`]),
//! and which part hjk builds itself (`image`, a Dockerfile) versus what only the reference CLI
//! builds (`features`, `dockerComposeFile`; see [`Config::needs_cli`]).
//!
//! Where the two anchors differ, the reference CLI's behaviour wins, except where noted:
//! - discovery also looks one level under `.devcontainer/`, as the spec and GitHub Codespaces
//!   do (the CLI only takes `.devcontainer/devcontainer.json` and `.devcontainer.json`);
//! - a `${localEnv:VAR:default}` default keeps its colons (the CLI cuts it at the first one,
//!   devcontainers/cli#719).
//!
//! `${devcontainerId}` is refused in what names or builds the image (`image`, `build.*`, the
//! legacy `dockerFile`/`context`, `dockerComposeFile`): the spec sets it when the container is
//! created, after the build, and `devcontainer build` would pass it on literally. Elsewhere it
//! stays as written, for `up`.

use crate::error::UserError;
use camino::{Utf8Component, Utf8Path, Utf8PathBuf};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The two files the reference CLI looks for, first match wins
/// (`getWellKnownDevContainerPaths`, src/spec-configuration/configurationCommonUtils.ts).
const WELL_KNOWN: [&str; 2] = [".devcontainer/devcontainer.json", ".devcontainer.json"];

/// The devcontainer.json for `project`: `explicit` (`--config`, relative to the project) if
/// given; else the first well-known file; else the one `.devcontainer/<folder>/devcontainer.json`.
/// Several sub-folder configs and no well-known one is an error listing them.
pub(crate) fn discover(
    project: &Utf8Path,
    explicit: Option<&Utf8Path>,
) -> Result<Option<Utf8PathBuf>, UserError> {
    if let Some(p) = explicit {
        let file = normalize(project, p);
        if !present(&file)? {
            return Err(UserError::file(format!(
                "--config {p}: no such file ({file})"
            )));
        }
        return Ok(Some(file));
    }
    // a file that is there but cannot be read (a dangling or looping link, a FIFO) is an
    // error naming it, never a silent fall back to the default image
    for rel in WELL_KNOWN {
        let file = project.join(rel);
        if present(&file)? {
            return Ok(Some(file));
        }
    }
    let mut found: Vec<Utf8PathBuf> = Vec::new();
    if let Ok(entries) = project.join(".devcontainer").read_dir_utf8() {
        for e in entries.filter_map(Result::ok) {
            // only sub-folders (a link to one too), as the spec's discovery looks
            if e.path().is_dir() {
                let f = e.path().join("devcontainer.json");
                if present(&f)? {
                    found.push(f);
                }
            }
        }
    }
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => {
            let rel: Vec<String> = found
                .iter()
                .map(|f| f.strip_prefix(project).unwrap_or(f).to_string())
                .collect();
            Err(UserError::setting(format!(
                "{} devcontainer configs found: {}; pick one with --config PATH",
                rel.len(),
                rel.join(", ")
            )))
        }
    }
}

/// What a devcontainer.json says, after substitution, with paths made absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub file: Utf8PathBuf,
    pub source: Source,
    /// Feature ids, sorted (`./my-feature`, `ghcr.io/devcontainers/features/node:1`).
    pub features: Vec<String>,
    /// `build.options`: extra build CLI flags hjk does not pass (it warns when it builds).
    pub build_options: Vec<String>,
    /// The whole substituted config, for the fingerprint of a delegated build.
    pub substituted: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `image`, as written (after substitution).
    Image(String),
    /// `build.dockerfile` or the older top-level `dockerFile`.
    Dockerfile {
        dockerfile: Utf8PathBuf,
        context: Utf8PathBuf,
        target: Option<String>,
        args: BTreeMap<String, String>,
        /// The args whose value came from the user's environment (`${localEnv:NAME}` of a set
        /// variable), with that variable's name: they may be secrets, so they are passed by
        /// name and shown as `<from localEnv:NAME>`.
        env_args: BTreeMap<String, String>,
    },
    /// `dockerComposeFile` (one or several) and its `service`.
    Compose {
        files: Vec<Utf8PathBuf>,
        service: Option<String>,
    },
}

impl Config {
    /// Why only the reference CLI can build this config, if so: the features or the compose
    /// files it names.
    pub fn needs_cli(&self) -> Option<String> {
        if let Source::Compose { files, .. } = &self.source {
            let names: Vec<&str> = files.iter().map(|f| f.file_name().unwrap_or("")).collect();
            return Some(format!("dockerComposeFile ({})", names.join(", ")));
        }
        if !self.features.is_empty() {
            return Some(format!("features ({})", self.features.join(", ")));
        }
        None
    }
}

/// What the `${...}` variables of phase 1 stand for.
pub struct Context<'a> {
    /// The environment `${localEnv:X}` reads.
    pub env: &'a BTreeMap<String, String>,
    /// `${localWorkspaceFolder}`: the project directory.
    pub workspace: &'a Utf8Path,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    image: Option<String>,
    build: Option<RawBuild>,
    /// The older top-level spelling of build.dockerfile; with it, only top-level `context`
    /// counts (configuration.ts: `'dockerFile' in config ? config.context : config.build.context`).
    docker_file: Option<String>,
    context: Option<String>,
    docker_compose_file: Option<StringOrList>,
    service: Option<String>,
    #[serde(default)]
    features: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBuild {
    dockerfile: Option<String>,
    context: Option<String>,
    target: Option<String>,
    #[serde(default)]
    args: BTreeMap<String, Value>,
    #[serde(default)]
    options: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

/// Whether a devcontainer.json is at `file` (see [`crate::input_file::present`]).
fn present(file: &Utf8Path) -> Result<bool, UserError> {
    crate::input_file::present(file)
}

/// Reads and interprets `file` (see [`parse`]), read as every input is
/// ([`crate::input_file`]: a regular file of at most 1 MiB).
pub(crate) fn read(file: &Utf8Path, ctx: &Context) -> Result<Config, UserError> {
    let text = crate::input_file::read_required(
        file,
        crate::input_file::DEVCONTAINER,
        "name an existing devcontainer.json",
    )?;
    parse(file, &text, ctx)
}

/// Parses devcontainer.json text (JSON with comments and trailing commas), substitutes the
/// variables in every string value (keys stay as written, like the CLI's `substitute0`), and
/// resolves paths against the file's directory. Any input gives a config or a one-line error.
pub fn parse(file: &Utf8Path, text: &str, ctx: &Context) -> Result<Config, UserError> {
    let malformed = |e: &dyn std::fmt::Display| {
        UserError::config(format!(
            "malformed {file}: {}",
            e.to_string().replace('\n', " ")
        ))
    };
    // json5's parser recurses per level: 8,000 levels overflowed the stack (SIGABRT)
    crate::input_file::check_json_depth(text).map_err(|e| malformed(&e))?;
    let value: Value = json5::from_str(text).map_err(|e| malformed(&e))?;
    if !value.is_object() {
        return Err(UserError::config(format!(
            "malformed {file}: the top level must be an object"
        )));
    }
    let env_args = env_args(&value, ctx.env);
    let vars = Vars::new(ctx, &value);
    let value = substitute(value, &vars)?;
    refuse_container_time_ids(file, &value)?;
    let raw: Raw = serde_json::from_value(value.clone()).map_err(|e| malformed(&e))?;
    let dir = file.parent().map(Utf8Path::to_owned).unwrap_or_default();
    let features: Vec<String> = raw.features.unwrap_or_default().into_keys().collect();
    let build = raw.build.unwrap_or_default();
    // the CLI's order (isDockerFileConfig, then dockerComposeFile, then image)
    let source = if let Some(df) = raw.docker_file.as_ref().or(build.dockerfile.as_ref()) {
        let context = if raw.docker_file.is_some() {
            raw.context.as_ref()
        } else {
            build.context.as_ref()
        };
        let dockerfile = normalize(&dir, Utf8Path::new(df));
        // no context: the Dockerfile's own directory (getDockerContextPath, src/spec-node/utils.ts)
        let context = match context {
            Some(c) => normalize(&dir, Utf8Path::new(c)),
            None => dockerfile
                .parent()
                .map(Utf8Path::to_owned)
                .unwrap_or_default(),
        };
        let mut args = BTreeMap::new();
        for (k, v) in &build.args {
            args.insert(k.clone(), stringify_arg(file, k, v)?);
        }
        let env_args = env_args
            .into_iter()
            .filter(|(k, _)| args.contains_key(k))
            .collect();
        Source::Dockerfile {
            dockerfile,
            context,
            target: build.target.clone().filter(|t| !t.is_empty()),
            args,
            env_args,
        }
    } else if let Some(compose) = raw.docker_compose_file {
        let files = match compose {
            StringOrList::One(f) => vec![f],
            StringOrList::Many(v) => v,
        };
        Source::Compose {
            files: files
                .iter()
                .map(|f| normalize(&dir, Utf8Path::new(f)))
                .collect(),
            service: raw.service,
        }
    } else if let Some(image) = raw.image {
        Source::Image(image)
    } else {
        return Err(UserError::config(format!(
            "{file} names none of image, build.dockerfile or dockerComposeFile"
        )));
    };
    Ok(Config {
        file: file.to_owned(),
        source,
        features,
        build_options: build.options,
        substituted: value,
    })
}

/// The `build.args` (as written, before substitution) whose value uses `${localEnv:NAME}` or
/// `${env:NAME}` of a variable that is set, each with the first such name.
fn env_args(raw: &Value, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let Some(args) = raw.pointer("/build/args").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (k, v) in args {
        let Some(text) = v.as_str() else { continue };
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let Some(len) = rest[start + 2..].find('}') else {
                break;
            };
            let body = &rest[start + 2..start + 2 + len];
            rest = &rest[start + 3 + len..];
            let mut parts = body.split(':');
            if matches!(parts.next(), Some("localEnv" | "env")) {
                if let Some(var) = parts.next().filter(|v| env.contains_key(*v)) {
                    out.insert(k.clone(), var.to_string());
                    break;
                }
            }
        }
    }
    out
}

/// A build argument as the CLI passes it: `${key}=${value}` in a template literal, so numbers,
/// booleans and null become their JavaScript text (`18`, `1.5`, `true`, `null`) and arrays are
/// joined with commas. An object makes the CLI throw; here it is bad input.
fn stringify_arg(file: &Utf8Path, key: &str, v: &Value) -> Result<String, UserError> {
    fn js(v: &Value) -> Option<String> {
        Some(match v {
            Value::String(s) => s.clone(),
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i.to_string(),
                (_, Some(u), _) => u.to_string(),
                (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
                (_, _, Some(f)) => f.to_string(),
                _ => n.to_string(),
            },
            // Array.prototype.toString: elements joined by ",", null and undefined as ""
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::Null => Some(String::new()),
                    i => js(i),
                })
                .collect::<Option<Vec<_>>>()?
                .join(","),
            Value::Object(_) => return None,
        })
    }
    js(v).ok_or_else(|| {
        UserError::config(format!(
            "{file}: build.args.{key} is an object; build arguments are strings"
        ))
    })
}

/// Lexical `path.resolve(base, p)`: absolute paths stay, `.` and `..` fold, no symlinks are
/// followed (the CLI's `path.posix.resolve`).
pub(crate) fn normalize(base: &Utf8Path, p: &Utf8Path) -> Utf8PathBuf {
    let joined = if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    };
    let mut out = Utf8PathBuf::new();
    for c in joined.components() {
        match c {
            Utf8Component::ParentDir => {
                out.pop();
            }
            Utf8Component::CurDir => {}
            c => out.push(c.as_str()),
        }
    }
    out
}

/// The values of the variables a config may use before a container exists.
struct Vars<'a> {
    env: &'a BTreeMap<String, String>,
    workspace: String,
    workspace_basename: String,
    container_workspace: String,
}

impl<'a> Vars<'a> {
    fn new(ctx: &Context<'a>, raw: &Value) -> Self {
        let basename = ctx.workspace.file_name().unwrap_or("").to_string();
        // the CLI's getWorkspaceConfiguration: `workspaceFolder`, or /workspaces/<basename>
        let container_workspace = raw
            .get("workspaceFolder")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| format!("/workspaces/{basename}"));
        Vars {
            env: ctx.env,
            workspace: ctx.workspace.to_string(),
            workspace_basename: basename,
            container_workspace,
        }
    }

    /// One `${...}` body, or `None` to leave it as written (the CLI's `build` leaves unknown
    /// variables, `${devcontainerId}` and `${containerEnv:...}` unchanged; the first is then
    /// refused where it would reach a build, see [`refuse_container_time_ids`]).
    fn value(&self, body: &str) -> Result<Option<String>, String> {
        let (name, args) = match body.split_once(':') {
            Some((n, rest)) => (n, Some(rest)),
            None => (body, None),
        };
        Ok(Some(match name {
            "localEnv" | "env" => {
                let Some(args) = args.filter(|a| !a.is_empty()) else {
                    return Err(format!(
                        "${{{body}}} names no environment variable; write ${{localEnv:NAME}}"
                    ));
                };
                let (var, default) = match args.split_once(':') {
                    Some((v, d)) => (v, Some(d)),
                    None => (args, None),
                };
                match (self.env.get(var), default) {
                    (Some(v), _) => v.clone(),
                    (None, Some(d)) => d.to_string(),
                    // like a shell (and the CLI): unset is empty
                    (None, None) => String::new(),
                }
            }
            "localWorkspaceFolder" => self.workspace.clone(),
            "localWorkspaceFolderBasename" => self.workspace_basename.clone(),
            "containerWorkspaceFolder" => self.container_workspace.clone(),
            "containerWorkspaceFolderBasename" => self
                .container_workspace
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string(),
            _ => return Ok(None),
        }))
    }
}

/// The properties that name or build the image: what hjk acts on before any container exists.
const BUILD_TIME: [&str; 5] = [
    "image",
    "build",
    "dockerFile",
    "context",
    "dockerComposeFile",
];

/// A `${devcontainerId}` left in a [`BUILD_TIME`] property, as an error naming where.
fn refuse_container_time_ids(file: &Utf8Path, value: &Value) -> Result<(), UserError> {
    fn find(v: &Value, path: String) -> Option<String> {
        match v {
            Value::String(s) if s.contains("${devcontainerId}") => Some(path),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, x)| find(x, format!("{path}[{i}]"))),
            Value::Object(map) => map.iter().find_map(|(k, x)| find(x, format!("{path}.{k}"))),
            _ => None,
        }
    }
    match BUILD_TIME
        .iter()
        .find_map(|k| find(value.get(*k)?, k.to_string()))
    {
        Some(at) => Err(UserError::config(format!(
            "${{devcontainerId}} in {at} of {file}: the Dev Container spec sets it when the \
             container is created, after the image is built, so it cannot name or build one; \
             use ${{localWorkspaceFolderBasename}} or a fixed value"
        ))),
        None => Ok(()),
    }
}

/// Replaces `${...}` (up to the first `}`) in every string value, recursively.
fn substitute(v: Value, vars: &Vars) -> Result<Value, UserError> {
    Ok(match v {
        Value::String(s) => Value::String(substitute_str(&s, vars).map_err(UserError::config)?),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| substitute(i, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| Ok((k, substitute(v, vars)?)))
                .collect::<Result<_, UserError>>()?,
        ),
        v => v,
    })
}

fn substitute_str(s: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let body = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        match vars.value(body)? {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[start..start + 3 + len]),
        }
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_parse(text: &str, env: &[(&str, &str)]) -> Result<Config, UserError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ctx = Context {
            env: &env,
            workspace: Utf8Path::new("/home/u/proj"),
        };
        parse(
            Utf8Path::new("/home/u/proj/.devcontainer/devcontainer.json"),
            text,
            &ctx,
        )
    }

    #[test]
    fn variables_substitute_like_the_cli() {
        let c = ctx_parse(
            r#"{ "build": { "dockerfile": "${localEnv:DF:Dockerfile}", "target": "${localEnv:T}",
                 "args": { "TZ": "${localEnv:TZ:America/Los_Angeles}", "HOME_SET": "${localEnv:HOME}",
                           "EMPTY": "${localEnv:NOPE}", "WS": "${localWorkspaceFolderBasename}",
                           "CWS": "${containerWorkspaceFolder}", "URL": "${localEnv:U:http://x:8080/y}",
                           "KEEP": "${containerEnv:PATH} ${unknown}", "WF": "${localWorkspaceFolder}" } },
               "mounts": [ "source=history-${devcontainerId},target=/h,type=volume" ] }"#,
            &[("HOME", "/root"), ("T", "dev")],
        )
        .unwrap();
        let Source::Dockerfile {
            dockerfile,
            target,
            args,
            env_args,
            ..
        } = c.source
        else {
            panic!("{:?}", c.source)
        };
        assert_eq!(dockerfile, "/home/u/proj/.devcontainer/Dockerfile");
        assert_eq!(target.as_deref(), Some("dev"));
        assert_eq!(args["TZ"], "America/Los_Angeles");
        // only values taken from a set variable count as the user's environment
        let from_env: Vec<(&str, &str)> = env_args
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(from_env, [("HOME_SET", "HOME")]);
        assert_eq!(args["HOME_SET"], "/root");
        assert_eq!(args["EMPTY"], "");
        assert_eq!(args["WS"], "proj");
        assert_eq!(args["CWS"], "/workspaces/proj");
        assert_eq!(args["URL"], "http://x:8080/y");
        assert_eq!(args["KEEP"], "${containerEnv:PATH} ${unknown}");
        assert_eq!(args["WF"], "/home/u/proj");
        // where it reaches an image name or a build, refused with where it is
        for (text, at) in [
            (
                r#"{ "image": "x", "build": { "args": { "ID": "${devcontainerId}" } } }"#,
                "build.args.ID",
            ),
            (r#"{ "image": "app-${devcontainerId}:dev" }"#, "image"),
            (
                r#"{ "dockerComposeFile": ["a.yml", "${devcontainerId}.yml"], "service": "s" }"#,
                "dockerComposeFile[1]",
            ),
        ] {
            let err = ctx_parse(text, &[]).unwrap_err();
            assert!(
                err.message().starts_with(&format!(
                    "${{devcontainerId}} in {at} of /home/u/proj/.devcontainer/devcontainer.json: "
                )),
                "{err}"
            );
        }
        let err = ctx_parse(r#"{ "image": "${localEnv}" }"#, &[]).unwrap_err();
        assert!(
            err.message().contains("names no environment variable"),
            "{err}"
        );
    }

    #[test]
    fn numeric_and_boolean_args_are_stringified() {
        let c = ctx_parse(
            r#"{ "build": { "dockerfile": "Dockerfile", "args": { "N": 18, "F": 1.50, "B": true, "Z": null, "L": [1, "x", null], "BIG": 1e3 } } }"#,
            &[],
        )
        .unwrap();
        let Source::Dockerfile { args, .. } = c.source else {
            panic!()
        };
        let got: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("B", "true"),
                ("BIG", "1000"),
                ("F", "1.5"),
                ("L", "1,x,"),
                ("N", "18"),
                ("Z", "null")
            ]
        );
        let err = ctx_parse(
            r#"{ "build": { "dockerfile": "D", "args": { "O": {} } } }"#,
            &[],
        )
        .unwrap_err();
        assert!(err.message().contains("build.args.O is an object"), "{err}");
    }

    #[test]
    fn context_defaults_to_the_dockerfiles_directory() {
        for (text, dockerfile, context) in [
            (
                r#"{ "dockerFile": "../Dockerfile" }"#,
                "/home/u/proj/Dockerfile",
                "/home/u/proj",
            ),
            (
                r#"{ "build": { "dockerfile": "Dockerfile" } }"#,
                "/home/u/proj/.devcontainer/Dockerfile",
                "/home/u/proj/.devcontainer",
            ),
            (
                r#"{ "build": { "dockerfile": "../docker/Dockerfile", "context": "../.." } }"#,
                "/home/u/proj/docker/Dockerfile",
                "/home/u",
            ),
            // legacy dockerFile reads only top-level context
            (
                r#"{ "dockerFile": "../docker/Dockerfile", "build": { "context": ".." } }"#,
                "/home/u/proj/docker/Dockerfile",
                "/home/u/proj/docker",
            ),
            (
                r#"{ "dockerFile": "Dockerfile", "context": ".." }"#,
                "/home/u/proj/.devcontainer/Dockerfile",
                "/home/u/proj",
            ),
        ] {
            let c = ctx_parse(text, &[]).unwrap();
            let Source::Dockerfile {
                dockerfile: d,
                context: ctxd,
                ..
            } = c.source
            else {
                panic!("{text}")
            };
            assert_eq!((d.as_str(), ctxd.as_str()), (dockerfile, context), "{text}");
        }
    }

    #[test]
    fn features_and_compose_need_the_cli() {
        let c = ctx_parse(
            r#"{ "image": "x", "features": { "./my-feature": {}, "ghcr.io/devcontainers/features/node:1": { "version": "20" } } }"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            c.needs_cli().unwrap(),
            "features (./my-feature, ghcr.io/devcontainers/features/node:1)"
        );
        let c = ctx_parse(r#"{ "image": "x", "features": {} }"#, &[]).unwrap();
        assert_eq!(c.needs_cli(), None);
        let c = ctx_parse(
            r#"{ "dockerComposeFile": ["../docker-compose.yml", "compose.dev.yml"], "service": "app" }"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            c.needs_cli().unwrap(),
            "dockerComposeFile (docker-compose.yml, compose.dev.yml)"
        );
    }

    #[test]
    fn bad_shapes_are_one_line_errors() {
        for text in [
            "[]",
            "{ \"image\": 5 }",
            "{}",
            "{ \"build\": { \"args\": [1] } }",
            "{",
        ] {
            let e = ctx_parse(text, &[]).unwrap_err();
            assert!(!e.message().contains('\n'), "{text}: {e}");
        }
    }
}
