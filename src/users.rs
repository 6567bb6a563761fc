//! The users file: one hidden server per line,
//! `UUID BASE32SECRET [step] [digits] [label...]`, `#` comment lines.
//! Parsing reports the 1-based line of the first error; writing is atomic
//! (temporary file, fsync, rename, fsync of the folder) under an exclusive lock
//! on a sibling `.lock` file, and the file is always mode 0600.

use crate::error::{Error, IoResultExt, Result};
use crate::files::write_atomic;
use crate::limits::{MIN_SECRET_BYTES, TOTP_DIGITS, TOTP_STEP};
use crate::secret::Secret;
use crate::totp::Params;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// One hidden server allowed to register.
#[derive(Debug, Clone)]
pub struct User {
    /// Its identity.
    pub uuid: Uuid,
    /// The TOTP shared secret.
    pub secret: Secret,
    /// Step and digits.
    pub params: Params,
    /// Free text for the operator (may be empty).
    pub label: String,
}

/// The parsed users file, in file order.
#[derive(Debug, Clone, Default)]
pub struct Users {
    list: Vec<User>,
    index: HashMap<Uuid, usize>,
}

impl Users {
    /// An empty table.
    pub fn new() -> Users {
        Users::default()
    }

    /// Look a user up.
    pub fn get(&self, uuid: &Uuid) -> Option<&User> {
        self.index.get(uuid).map(|&i| &self.list[i])
    }

    /// All users in file order.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.list.iter()
    }

    /// How many users.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Add a user; fails if the UUID is already present.
    pub fn add(&mut self, user: User) -> std::result::Result<(), String> {
        if self.index.contains_key(&user.uuid) {
            return Err(format!("uuid {} already present", user.uuid));
        }
        self.index.insert(user.uuid, self.list.len());
        self.list.push(user);
        Ok(())
    }

    /// Remove a user; returns whether it was there.
    pub fn remove(&mut self, uuid: &Uuid) -> bool {
        let Some(i) = self.index.remove(uuid) else {
            return false;
        };
        self.list.remove(i);
        self.index = self
            .list
            .iter()
            .enumerate()
            .map(|(i, u)| (u.uuid, i))
            .collect();
        true
    }

    /// Parse file text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Users> {
        let mut users = Users::new();
        for (n, raw) in text.lines().enumerate() {
            let lineno = n + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let user = parse_line(line).map_err(|msg| Error::config(path, Some(lineno), msg))?;
            users
                .add(user)
                .map_err(|msg| Error::config(path, Some(lineno), msg))?;
        }
        Ok(users)
    }

    /// The file text for this table (step and digits always written).
    pub fn render(&self) -> String {
        let mut out = String::from("# rendezvous users: UUID BASE32SECRET step digits label\n");
        for u in &self.list {
            out.push_str(&u.line());
            out.push('\n');
        }
        out
    }
}

impl User {
    /// The user as a line of the users file (step and digits always
    /// written): also how a shared store keeps it.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} {} {} {}",
            self.uuid.hyphenated(),
            self.secret.to_base32(),
            self.params.step,
            self.params.digits
        );
        if !self.label.is_empty() {
            line.push(' ');
            line.push_str(&self.label);
        }
        line
    }

    /// A user from one line of the users file.
    pub fn parse(line: &str) -> std::result::Result<User, String> {
        parse_line(line.trim())
    }
}

fn parse_line(line: &str) -> std::result::Result<User, String> {
    let mut fields = line.split_whitespace();
    let uuid_text = fields.next().unwrap_or_default();
    let uuid = Uuid::try_parse(uuid_text).map_err(|_| "malformed uuid".to_string())?;
    let secret_text = fields.next().ok_or("missing secret")?;
    let secret = Secret::from_base32(secret_text).ok_or("secret is not valid base32")?;
    if secret.expose().len() < MIN_SECRET_BYTES {
        return Err(format!(
            "secret is shorter than {} bytes ({} bits)",
            MIN_SECRET_BYTES,
            MIN_SECRET_BYTES * 8
        ));
    }
    let rest: Vec<&str> = fields.collect();
    let mut params = Params::default();
    let mut i = 0;
    if let Some(step) = rest.first().filter(|s| is_number(s)) {
        params.step = step
            .parse::<u64>()
            .ok()
            .filter(|s| TOTP_STEP.contains(s))
            .ok_or_else(|| {
                format!(
                    "step must be {} to {} seconds",
                    TOTP_STEP.start(),
                    TOTP_STEP.end()
                )
            })?;
        i = 1;
        if let Some(digits) = rest.get(1).filter(|s| is_number(s)) {
            params.digits = digits
                .parse::<u32>()
                .ok()
                .filter(|d| TOTP_DIGITS.contains(d))
                .ok_or_else(|| {
                    format!(
                        "digits must be {} to {}",
                        TOTP_DIGITS.start(),
                        TOTP_DIGITS.end()
                    )
                })?;
            i = 2;
        }
    }
    Ok(User {
        uuid,
        secret,
        params,
        label: rest[i..].join(" "),
    })
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Read and parse a users file. A missing file is an error here; `serve`
/// creates an empty one first.
pub fn load(path: &Path) -> Result<Users> {
    let text = fs::read_to_string(path).op("read users file")?;
    Users::parse(&text, path)
}

/// A warning for the operator when the users file is a symbolic link:
/// `serve` reads the link's target, but `user add` and `user remove` write
/// a new file and rename it over the path, which replaces the link itself.
pub fn link_warning(path: &Path) -> Option<String> {
    fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_symlink())
        .map(|_| {
            format!(
                "{} is a symbolic link: serve reads its target, but user add and user remove replace the link with a regular file",
                path.display()
            )
        })
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Read, change and atomically rewrite the users file under an exclusive lock.
///
/// A missing file starts as an empty table. `change` returns an error to
/// abandon the update (nothing is written).
pub fn update<T>(path: &Path, change: impl FnOnce(&mut Users) -> Result<T>) -> Result<T> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path(path))
        .op("open users lock file")?;
    lock.lock().op("lock users file")?;
    let mut users = match fs::read_to_string(path) {
        Ok(text) => Users::parse(&text, path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Users::new(),
        Err(e) => return Err(Error::io("read users file", e)),
    };
    let out = change(&mut users)?;
    write_atomic(path, users.render().as_bytes(), 0o600)?;
    // The lock is released when `lock` is dropped.
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    const U: &str = "0b3e1c4e-6f55-4a8e-9d7a-5b2f0c1d2e3f";

    #[test]
    fn fields_and_defaults() {
        let text = format!("# c\n\n{U} {S}\n");
        let users = Users::parse(&text, Path::new("u")).expect("parses");
        let u = users.iter().next().expect("one");
        assert_eq!(u.params, Params::default());
        assert_eq!(u.label, "");
        let text = format!("{U} {S} 60 8 kitchen gateway 2\n");
        let users = Users::parse(&text, Path::new("u")).expect("parses");
        let u = users.iter().next().expect("one");
        assert_eq!((u.params.step, u.params.digits), (60, 8));
        assert_eq!(u.label, "kitchen gateway 2");
        let text = format!("{U} {S} home\n");
        let u = Users::parse(&text, Path::new("u")).expect("parses");
        assert_eq!(u.iter().next().map(|u| u.label.as_str()), Some("home"));
    }

    #[test]
    fn render_round_trips() {
        let text = format!("{U} {S} 45 7 the label\n");
        let users = Users::parse(&text, Path::new("u")).expect("parses");
        let again = Users::parse(&users.render(), Path::new("u")).expect("reparses");
        let (a, b) = (users.iter().next().unwrap(), again.iter().next().unwrap());
        assert_eq!(a.uuid, b.uuid);
        assert_eq!(a.secret, b.secret);
        assert_eq!(a.params, b.params);
        assert_eq!(a.label, b.label);
    }

    #[test]
    fn errors_carry_line_numbers() {
        let text = format!("# ok\n{U} {S}\n{U} {S}\n");
        let e = Users::parse(&text, Path::new("/x/users")).unwrap_err();
        assert!(e.to_string().starts_with("/x/users:3: "), "{e}");
        let e = Users::parse(&format!("{U} {S} 30 9\n"), Path::new("u")).unwrap_err();
        assert!(e.to_string().contains("digits"), "{e}");
    }

    #[test]
    fn errors_never_echo_the_secret() {
        let e = Users::parse(&format!("{U} GEZDGNBV\n"), Path::new("u")).unwrap_err();
        assert!(!e.to_string().contains("GEZDGNBV"), "{e}");
    }
}
