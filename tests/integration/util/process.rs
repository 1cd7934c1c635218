//! The binaries under test as child processes, and signals to them.

use super::TestEnv;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

pub fn ocx_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("ocx")
}

pub fn hjk_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("hjk")
}

/// `bin ARGS` in the test's environment and project, stdout and stderr piped.
pub fn spawn(env: &TestEnv, bin: &Path, args: &[&str]) -> Child {
    command(env, bin, args).spawn().unwrap()
}

/// [`spawn`] in a process group of its own, as `setsid hjk ... &` starts it, so a test can
/// signal the group (`kill -TERM -- -PID`) as a terminal or a CI runner would.
pub fn spawn_group(env: &TestEnv, bin: &Path, args: &[&str]) -> Child {
    command(env, bin, args).process_group(0).spawn().unwrap()
}

fn command(env: &TestEnv, bin: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .env_clear()
        .envs(&env.vars)
        .current_dir(env.project())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// kill(2) with `sig` on `pid`, or on the process group `-pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started
    unsafe { libc::kill(pid as i32, sig) };
}

/// Whether a process `pid` exists.
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Reads `child`'s stderr until a line for which `until` holds, and asserts one came: the
/// lines read so far, and a thread that drains the rest (so the child never blocks on a full
/// pipe) and returns them.
pub fn stderr_until(
    child: &mut Child,
    until: impl Fn(&str) -> bool,
) -> (Vec<String>, JoinHandle<Vec<String>>) {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let mut hit = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if until(&line) {
            hit = true;
            break;
        }
    }
    assert!(hit, "no such line on stderr:\n{}", seen.join("\n"));
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    (seen, rest)
}
