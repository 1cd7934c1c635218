//! Who the container user is, decided here from the base's facts (see `super::probe`) and the
//! config, never in a shell script: the generated Dockerfile only carries out the decision, as a
//! list of [`Op`]s the fixed `setup-user.sh` knows.
//!
//! The order of preference (what the Dev Containers CLI does with `updateRemoteUserUID`, plus
//! adoption):
//! 1. `username` unset and a user already holds the UID: that user is used as it is (name,
//!    home, shell, groups, sudo rules); only a different GID is applied.
//! 2. `username` unset and the base has one non-root user (its `USER`, or the only regular
//!    account): that user gets the UID/GID, and its home is chowned. Unlike the CLI, which
//!    keeps the user's old GID when a group with the new one exists, that group becomes the
//!    primary group (`gid_ops`): files the user writes to the mounted project carry the
//!    host user's GID.
//! 3. Otherwise a user is created (`developer`, or `username`).
//! 4. An explicit `username` wins: the user holding the UID is renamed, and its home moves to
//!    `/home/<username>`. A shell is never changed.
//!
//! A base without `/bin/sh` (or without `awk`) cannot have its `/etc/passwd` edited: the user
//! is then only a UID/GID with `HOME` set, and its home comes from a `COPY --chown`.

use super::config::Username;
use super::probe::{BaseFacts, PasswdEntry};
use crate::build::RunAs;
use crate::error::UserError;

/// The directories under the home that ocx mounts or opencode writes; made by the setup so an
/// engine does not create their parents root-owned.
pub(crate) const HOME_DIRS: &[&str] = &[
    ".config/opencode",
    ".local/share/opencode",
    ".local/state",
    ".cache",
];

/// The name a created user gets when `username` is unset.
const DEFAULT_NAME: &str = "developer";

/// What the config asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    pub username: Option<&'a Username>,
    pub uid: u32,
    pub gid: u32,
}

/// One step of `setup-user.sh`. Every value is checked ([`safe_name`], [`safe_home`]) before
/// it becomes an op, so an op's arguments are safe in an exec-form `RUN` and in the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Give an existing group another GID.
    GroupGid {
        group: String,
        gid: u32,
    },
    GroupAdd {
        group: String,
        gid: u32,
    },
    /// Set a user's UID and primary GID.
    UserIds {
        user: String,
        uid: u32,
        gid: u32,
    },
    UserRename {
        from: String,
        to: String,
    },
    /// Set a user's home, moving the old directory there.
    UserHome {
        user: String,
        home: String,
    },
    UserAdd {
        user: String,
        uid: u32,
        gid: u32,
        home: String,
        shell: String,
    },
    /// Make the home and [`HOME_DIRS`]; chown all of the home (`recursive`) or only those.
    Home {
        home: String,
        uid: u32,
        gid: u32,
        recursive: bool,
    },
}

impl Op {
    pub(crate) fn args(&self) -> Vec<String> {
        let s = |v: &[&dyn ToString]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            Op::GroupGid { group, gid } => s(&[&"group-gid", group, gid]),
            Op::GroupAdd { group, gid } => s(&[&"group-add", group, gid]),
            Op::UserIds { user, uid, gid } => s(&[&"user-ids", user, uid, gid]),
            Op::UserRename { from, to } => s(&[&"user-rename", from, to]),
            Op::UserHome { user, home } => s(&[&"user-home", user, home]),
            Op::UserAdd {
                user,
                uid,
                gid,
                home,
                shell,
            } => s(&[&"user-add", user, uid, gid, home, shell]),
            Op::Home {
                home,
                uid,
                gid,
                recursive,
            } => s(&[
                &"home",
                home,
                uid,
                gid,
                &if *recursive { "all" } else { "mounts" },
            ]),
        }
    }
}

/// How the user came about; shown once when the image is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum How {
    Root,
    Adopted,
    Renumbered {
        from_uid: u32,
    },
    Renamed {
        from: String,
    },
    Created,
    /// The base has no shell (or no awk): only `--user uid:gid` and `HOME`.
    Unnamed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserPlan {
    /// `None` when the base's `/etc/passwd` is left alone ([`How::Unnamed`]).
    pub name: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub how: How,
    pub ops: Vec<Op>,
    /// Said once at build time: what a rename broke, why a home moved.
    pub notes: Vec<String>,
}

impl UserPlan {
    /// The user a label and messages name: the name, or `uid` for an unnamed user.
    pub(crate) fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.uid.to_string())
    }

    /// Who the container runs as (`USER` and `--user`). A user with a passwd entry runs by
    /// UID alone, so the engine takes its primary group (the configured GID: the plan made it
    /// so) and its supplementary groups from the image; `uid:gid` would drop the latter, and
    /// with them `%sudo` rules and group access to a mounted socket. An unnamed user has no
    /// entry to take them from, and root keeps the configured group.
    pub(crate) fn run_as(&self) -> RunAs {
        match self.how {
            How::Unnamed | How::Root => RunAs::ids(self.uid, self.gid),
            _ => RunAs::uid(self.uid),
        }
    }

    /// One line for the build log.
    pub(crate) fn describe(&self) -> String {
        let ids = format!("uid {}, gid {}, home {}", self.uid, self.gid, self.home);
        let mut s = match &self.how {
            How::Root => format!("container user root ({ids})"),
            How::Adopted if self.ops.iter().any(|o| matches!(o, Op::UserIds { .. })) => format!(
                "container user {} from the base, its primary group changed to gid {} ({ids}; home chowned)",
                self.label(),
                self.gid
            ),
            How::Adopted => format!("container user {} from the base, as it is ({ids})", self.label()),
            How::Renumbered { from_uid } => format!(
                "container user {} from the base, uid {from_uid} changed ({ids}; home chowned)",
                self.label()
            ),
            How::Renamed { from } => {
                format!("container user {from} from the base renamed to {} ({ids})", self.label())
            }
            How::Created => format!("container user {} created ({ids})", self.label()),
            How::Unnamed => format!(
                "container user {}:{} with HOME {} (the base has no /bin/sh and awk, so its /etc/passwd is left as it is)",
                self.uid, self.gid, self.home
            ),
        };
        for n in &self.notes {
            s.push_str("; ");
            s.push_str(n);
        }
        s
    }
}

/// A user or group name from the base that may go into the setup's arguments.
/// Not only dots: `..` would make `/home/..` of a home.
pub(crate) fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && !s.chars().all(|c| c == '.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A home directory that may go into a Dockerfile line and be chowned: absolute, plain
/// characters, and not a system directory (`/`, `/nonexistent`, `/var`, ...).
pub(crate) fn safe_home(s: &str) -> bool {
    let plain = s.starts_with('/')
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && !s.split('/').any(|c| c == "..");
    let system = [
        "/",
        "/nonexistent",
        "/bin",
        "/sbin",
        "/usr",
        "/etc",
        "/var",
        "/lib",
        "/dev",
        "/proc",
        "/sys",
        "/run",
        "/tmp",
        "/opt",
        "/srv",
        "/boot",
    ];
    let trimmed = s.trim_end_matches('/');
    plain
        && !system.contains(&trimmed)
        && !system.contains(&s)
        && !["/proc/", "/sys/", "/dev/"]
            .iter()
            .any(|p| s.starts_with(p))
}

fn unusable(what: &str, value: &str) -> UserError {
    UserError::base(format!(
        "the base image's {what} {value:?} cannot be used by ocx (it needs a name of letters, digits, '.', '_' and '-'); set username to pick another user"
    ))
}

fn checked_name(name: &str) -> Result<String, UserError> {
    if safe_name(name) {
        Ok(name.to_string())
    } else {
        Err(unusable("user or group name", name))
    }
}

/// Decides the container user.
pub(crate) fn plan(
    f: &BaseFacts,
    base_user: Option<&str>,
    w: &Wanted,
) -> Result<UserPlan, UserError> {
    if w.uid == 0 {
        let home = f
            .user_by_uid(0)
            .map(|p| p.home.clone())
            .filter(|h| safe_home(h))
            .unwrap_or_else(|| "/root".into());
        return Ok(UserPlan {
            name: Some("root".into()),
            uid: 0,
            gid: w.gid,
            home,
            how: How::Root,
            ops: Vec::new(),
            notes: Vec::new(),
        });
    }
    if !f.shell || !f.has("awk") {
        let name = w.username.map(|u| u.as_str()).unwrap_or(DEFAULT_NAME);
        return Ok(UserPlan {
            name: None,
            uid: w.uid,
            gid: w.gid,
            home: format!("/home/{name}"),
            how: How::Unnamed,
            ops: Vec::new(),
            notes: Vec::new(),
        });
    }
    let holder = f.user_by_uid(w.uid);
    match w.username.map(Username::as_str) {
        None => {
            if let Some(u) = holder {
                return keep(f, u, w, How::Adopted);
            }
            if let Some(u) = non_root_user(f, base_user) {
                return keep(f, u, w, How::Renumbered { from_uid: u.uid });
            }
            let name = [DEFAULT_NAME, "ocx"]
                .into_iter()
                .find(|n| f.user_by_name(n).is_none())
                .ok_or_else(|| {
                    UserError::base(format!(
                        "the base has users named {DEFAULT_NAME} and ocx but none with uid {}; set username",
                        w.uid
                    ))
                })?;
            create(f, name, w)
        }
        Some(name) => match (f.user_by_name(name), holder) {
            (Some(u), _) if u.uid == w.uid => keep(f, u, w, How::Adopted),
            (Some(u), Some(h)) => Err(UserError::base(format!(
                "username {name} has uid {} in the base, and uid {} belongs to its user {}; set username to {} or unset it, or pick another uid",
                u.uid, w.uid, h.name, h.name
            ))),
            (Some(u), None) => keep(f, u, w, How::Renumbered { from_uid: u.uid }),
            (None, Some(h)) => rename(f, h, name, w),
            (None, None) => create(f, name, w),
        },
    }
}

/// The base's one non-root user: its `USER` (by name or number), else its only regular
/// account (uid 1000-59999).
fn non_root_user<'a>(f: &'a BaseFacts, base_user: Option<&str>) -> Option<&'a PasswdEntry> {
    let declared = base_user
        .map(|u| u.split(':').next().unwrap_or(""))
        .filter(|u| !u.is_empty())
        .and_then(|u| match u.parse::<u32>() {
            Ok(uid) => f.user_by_uid(uid),
            Err(_) => f.user_by_name(u),
        })
        .filter(|p| p.uid != 0);
    if declared.is_some() {
        return declared;
    }
    let mut regular = f.passwd.iter().filter(|p| (1000..60000).contains(&p.uid));
    match (regular.next(), regular.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// The ops that give user `u` the GID `gid`: an existing group with that GID becomes its
/// primary group; otherwise its own group (named like it) is renumbered, or a group is added.
fn gid_ops(f: &BaseFacts, u: &PasswdEntry, name: &str, w: &Wanted) -> Result<Vec<Op>, UserError> {
    if u.gid == w.gid {
        return Ok(Vec::new());
    }
    if f.group_by_gid(w.gid).is_some() {
        return Ok(Vec::new());
    }
    match f.group_by_gid(u.gid) {
        Some(g) if g.name == u.name => Ok(vec![Op::GroupGid {
            group: checked_name(&g.name)?,
            gid: w.gid,
        }]),
        _ => Ok(vec![Op::GroupAdd {
            group: free_group_name(f, name, w.gid),
            gid: w.gid,
        }]),
    }
}

fn free_group_name(f: &BaseFacts, name: &str, gid: u32) -> String {
    if f.group_by_name(name).is_none() {
        name.to_string()
    } else {
        format!("ocx{gid}")
    }
}

/// `/home/<name>` for a checked name. [`safe_name`] keeps it safe (no `..`); asserted, as
/// every home that goes into an op is.
fn home_for(name: &str) -> String {
    let h = format!("/home/{name}");
    debug_assert!(safe_home(&h), "{h}");
    h
}

/// The op that makes and chowns `home`, which must be [`safe_home`].
fn home_op(home: &str, w: &Wanted, recursive: bool) -> Op {
    debug_assert!(safe_home(home), "{home}");
    Op::Home {
        home: home.to_string(),
        uid: w.uid,
        gid: w.gid,
        recursive,
    }
}

/// Keeps user `u` (adopted or renumbered): only its ids change, when they differ.
fn keep(f: &BaseFacts, u: &PasswdEntry, w: &Wanted, how: How) -> Result<UserPlan, UserError> {
    let name = checked_name(&u.name)?;
    let mut ops = gid_ops(f, u, &name, w)?;
    let mut notes = Vec::new();
    let changed = u.uid != w.uid || u.gid != w.gid;
    if changed {
        ops.push(Op::UserIds {
            user: name.clone(),
            uid: w.uid,
            gid: w.gid,
        });
    }
    let home = if safe_home(&u.home) {
        u.home.clone()
    } else {
        let h = home_for(&name);
        notes.push(format!(
            "its home {:?} is not usable, so it is now {h}",
            u.home
        ));
        ops.push(Op::UserHome {
            user: name.clone(),
            home: h.clone(),
        });
        h
    };
    ops.push(home_op(&home, w, changed));
    Ok(UserPlan {
        name: Some(name),
        uid: w.uid,
        gid: w.gid,
        home,
        how,
        ops,
        notes,
    })
}

/// Renames the user holding the UID to `to`; its home moves to `/home/<to>`.
fn rename(f: &BaseFacts, h: &PasswdEntry, to: &str, w: &Wanted) -> Result<UserPlan, UserError> {
    let from = checked_name(&h.name)?;
    let home = home_for(to);
    let mut ops = vec![Op::UserRename {
        from: from.clone(),
        to: to.to_string(),
    }];
    ops.extend(gid_ops(f, h, to, w)?);
    ops.push(Op::UserIds {
        user: to.to_string(),
        uid: w.uid,
        gid: w.gid,
    });
    ops.push(Op::UserHome {
        user: to.to_string(),
        home: home.clone(),
    });
    ops.push(home_op(&home, w, true));
    let mut notes = Vec::new();
    if f.sudoers.iter().any(|s| s != "README") {
        notes.push(format!(
            "rules in /etc/sudoers.d that name {from} no longer apply (unset username to keep {from})"
        ));
    }
    Ok(UserPlan {
        name: Some(to.to_string()),
        uid: w.uid,
        gid: w.gid,
        home,
        how: How::Renamed { from },
        ops,
        notes,
    })
}

fn create(f: &BaseFacts, name: &str, w: &Wanted) -> Result<UserPlan, UserError> {
    let home = home_for(name);
    let mut ops = Vec::new();
    if f.group_by_gid(w.gid).is_none() {
        ops.push(Op::GroupAdd {
            group: free_group_name(f, name, w.gid),
            gid: w.gid,
        });
    }
    let shell = if f.has("bash") {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    ops.push(Op::UserAdd {
        user: name.to_string(),
        uid: w.uid,
        gid: w.gid,
        home: home.clone(),
        shell: shell.into(),
    });
    ops.push(home_op(&home, w, true));
    Ok(UserPlan {
        name: Some(name.to_string()),
        uid: w.uid,
        gid: w.gid,
        home,
        how: How::Created,
        ops,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocx::probe::parse;

    fn facts(passwd: &str, group: &str) -> BaseFacts {
        parse(&format!(
            "ocx-probe 3\n[passwd]\nroot:x:0:0:root:/root:/bin/bash\n{passwd}[group]\nroot:x:0:\n{group}[sudoers.d]\nvscode\n[tools]\nawk\nbash\n[musl]\n[glibc]\n/lib64/ld-linux-x86-64.so.2\n[end]\n"
        ))
        .unwrap()
    }

    fn want(name: Option<&str>, uid: u32, gid: u32) -> (Option<Username>, u32, u32) {
        (name.map(|n| Username::parse(n).unwrap()), uid, gid)
    }

    fn run(f: &BaseFacts, base_user: Option<&str>, w: (Option<Username>, u32, u32)) -> UserPlan {
        plan(
            f,
            base_user,
            &Wanted {
                username: w.0.as_ref(),
                uid: w.1,
                gid: w.2,
            },
        )
        .unwrap()
    }

    #[test]
    fn the_user_holding_the_uid_is_adopted_unchanged() {
        let f = facts(
            "vscode:x:1000:1000::/home/vscode:/bin/zsh\n",
            "vscode:x:1000:\n",
        );
        let p = run(&f, Some("vscode"), want(None, 1000, 1000));
        assert_eq!(p.how, How::Adopted);
        assert_eq!(
            (p.name.as_deref(), p.home.as_str()),
            (Some("vscode"), "/home/vscode")
        );
        assert_eq!(
            p.ops,
            [Op::Home {
                home: "/home/vscode".into(),
                uid: 1000,
                gid: 1000,
                recursive: false
            }],
            "no passwd edit, no shell change"
        );
    }

    #[test]
    fn an_adopted_user_whose_gid_changes_is_not_described_as_unchanged() {
        let f = facts(
            "vscode:x:1000:1000::/home/vscode:/bin/zsh\n",
            "vscode:x:1000:\nsudo:x:27:vscode\n",
        );
        let p = run(&f, None, want(None, 1000, 1001));
        assert_eq!(p.how, How::Adopted);
        let line = p.describe();
        assert!(!line.contains("as it is"), "{line}");
        assert!(
            line.contains("its primary group changed to gid 1001"),
            "{line}"
        );
        let p = run(&f, None, want(None, 1000, 1000));
        assert!(p.describe().contains("as it is"), "{}", p.describe());
        // the container runs by uid alone, keeping `sudo` as a supplementary group
        assert_eq!(p.run_as().to_string(), "1000");
        let p = run(&BaseFacts::shell_less(), None, want(None, 1000, 1000));
        assert_eq!(p.run_as().to_string(), "1000:1000");
    }

    #[test]
    fn a_non_root_user_with_another_uid_is_renumbered_with_its_own_group() {
        let f = facts("node:x:1000:1000::/home/node:/bin/bash\n", "node:x:1000:\n");
        let p = run(&f, None, want(None, 1001, 1001));
        assert_eq!(p.how, How::Renumbered { from_uid: 1000 });
        assert_eq!(
            p.ops,
            [
                Op::GroupGid {
                    group: "node".into(),
                    gid: 1001
                },
                Op::UserIds {
                    user: "node".into(),
                    uid: 1001,
                    gid: 1001
                },
                Op::Home {
                    home: "/home/node".into(),
                    uid: 1001,
                    gid: 1001,
                    recursive: true
                },
            ]
        );
    }

    #[test]
    fn the_declared_user_wins_over_other_regular_accounts() {
        let f = facts(
            "jovyan:x:1000:100::/home/jovyan:/bin/bash\nother:x:1005:1005::/home/other:/bin/sh\n",
            "users:x:100:\nother:x:1005:\n",
        );
        let p = run(&f, Some("jovyan"), want(None, 1002, 100));
        assert_eq!(p.name.as_deref(), Some("jovyan"));
        assert_eq!(
            p.ops[0],
            Op::UserIds {
                user: "jovyan".into(),
                uid: 1002,
                gid: 100
            },
            "gid 100 exists: it stays the primary group, no group edit"
        );
        // without USER and with two regular accounts nobody is taken over
        let p = run(&f, None, want(None, 1002, 1002));
        assert_eq!(
            (p.how, p.name.as_deref()),
            (How::Created, Some("developer"))
        );
    }

    #[test]
    fn an_explicit_username_renames_the_holder_and_moves_its_home() {
        let f = facts(
            "ubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n",
            "ubuntu:x:1000:\n",
        );
        let p = run(&f, None, want(Some("dev"), 1000, 1000));
        assert_eq!(
            p.how,
            How::Renamed {
                from: "ubuntu".into()
            }
        );
        assert_eq!(p.home, "/home/dev");
        assert!(p.ops.contains(&Op::UserHome {
            user: "dev".into(),
            home: "/home/dev".into()
        }));
        assert!(p.describe().contains("/etc/sudoers.d"), "{}", p.describe());
        let err = plan(
            &facts(
                "ubuntu:x:1000:1000::/home/ubuntu:/bin/bash\ndev:x:1001:1001::/home/dev:/bin/sh\n",
                "",
            ),
            None,
            &Wanted {
                username: Some(&Username::parse("dev").unwrap()),
                uid: 1000,
                gid: 1000,
            },
        )
        .unwrap_err();
        assert!(
            err.message()
                .contains("uid 1000 belongs to its user ubuntu"),
            "{err}"
        );
    }

    #[test]
    fn a_user_is_created_only_when_none_fits() {
        let f = facts("", "staff:x:50:\n");
        let p = run(&f, None, want(None, 1000, 50));
        assert_eq!(
            p.ops[0],
            Op::UserAdd {
                user: "developer".into(),
                uid: 1000,
                gid: 50,
                home: "/home/developer".into(),
                shell: "/bin/bash".into()
            },
            "the group with the gid is reused"
        );
    }

    #[test]
    fn shell_less_bases_get_an_unnamed_user_and_root_gets_roots_home() {
        let p = run(&BaseFacts::shell_less(), None, want(None, 1000, 1000));
        assert_eq!(
            (p.how, p.home.as_str(), p.ops.len()),
            (How::Unnamed, "/home/developer", 0)
        );
        let p = run(&facts("", ""), None, want(None, 0, 0));
        assert_eq!((p.how, p.home.as_str()), (How::Root, "/root"));
    }

    #[test]
    fn hostile_names_and_homes_from_the_base_are_refused_or_replaced() {
        let refused = |passwd: &str| {
            let w = Wanted {
                username: None,
                uid: 1000,
                gid: 1000,
            };
            plan(&facts(passwd, ""), None, &w).is_err()
        };
        assert!(refused("a$(id):x:1000:1000::/home/x:/bin/sh\n"));
        // a user named `..` with home `/` would make `/home/..` of its new home
        for dots in ["..", ".", "..."] {
            assert!(!safe_name(dots), "{dots}");
            assert!(
                refused(&format!("{dots}:x:1000:1000::/:/bin/sh\n")),
                "{dots}"
            );
        }
        assert!(safe_name("a.b") && safe_name(".profile-user"));
        let f = facts("svc:x:1000:1000::/:/bin/sh\n", "svc:x:1000:\n");
        let p = run(&f, None, want(None, 1000, 1000));
        assert_eq!(p.home, "/home/svc");
        for bad in [
            "/",
            "/var",
            "relative",
            "/home/a b",
            "/home/../etc",
            "/proc/1",
        ] {
            assert!(!safe_home(bad), "{bad}");
        }
        assert!(safe_home("/home/jovyan") && safe_home("/root") && safe_home("/var/lib/app"));
        // every home that goes into an op is a safe one
        for p in [
            run(&f, None, want(None, 1000, 1000)),
            run(&f, None, want(Some("dev"), 1000, 1000)),
        ] {
            for op in &p.ops {
                if let Op::Home { home, .. }
                | Op::UserHome { home, .. }
                | Op::UserAdd { home, .. } = op
                {
                    assert!(safe_home(home), "{home}");
                }
            }
        }
    }
}
