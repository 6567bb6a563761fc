//! The administrative commands of `rendezvousd`: `user add`, `user list`,
//! `user remove` and `cert`. Each takes plain options
//! (the front ends fill them from argh) and writes its result to a `Write`.

use crate::certs;
use crate::error::{Error, Result};
use crate::files;
use crate::files::ensure_dir;
use crate::limits;
use crate::provision::Provision;
use crate::secret::Secret;
use crate::state::StatePaths;
use crate::totp::Params;
use crate::users::{self, User};
use std::io::Write;
use std::path::PathBuf;
use uuid::Uuid;

/// Options of `rendezvousd user add`.
#[derive(Debug, Clone, Default)]
pub struct UserAdd {
    /// State folder paths.
    pub paths: Option<StatePaths>,
    /// Free-text label.
    pub label: Option<String>,
    /// The UUID to use (default: a new random one).
    pub uuid: Option<Uuid>,
    /// TOTP step in seconds.
    pub step: u64,
    /// TOTP digits.
    pub digits: u32,
    /// Registrar URLs written into the provisioning file (space-separated;
    /// none: this host's name on the default port).
    pub server: Vec<String>,
    /// Where to write the provisioning file (default: the writer).
    pub out: Option<PathBuf>,
    /// Pin this certificate instead of the state folder's.
    pub cert: Option<PathBuf>,
    /// Write `ca = PATH` instead of a pin.
    pub ca: Option<PathBuf>,
    /// Add the user to this store instead of the users file.
    pub store: Option<StoreArgs>,
}

pub use crate::server::store::StoreArgs;

/// What the user commands change: the users file, or a store's table.
enum Table<'a> {
    File(&'a std::path::Path),
    #[cfg(feature = "store-redis")]
    Store(Box<crate::server::store::redis::RedisStore>),
}

impl Table<'_> {
    fn open<'a>(paths: &'a StatePaths, store: Option<&StoreArgs>) -> Result<Table<'a>> {
        let Some(s) = store else {
            return Ok(Table::File(&paths.users));
        };
        #[cfg(feature = "store-redis")]
        {
            let r = crate::server::store::redis::RedisStore::connect(s, crate::clock::system())?;
            Ok(Table::Store(Box::new(r)))
        }
        #[cfg(not(feature = "store-redis"))]
        Err(Error::Usage(format!(
            "--store {}: this rendezvousd was built without the store-redis feature",
            s.describe()
        )))
    }

    fn add(&self, user: User) -> Result<()> {
        match self {
            Table::File(path) => users::update(path, |table| table.add(user).map_err(Error::Other)),
            #[cfg(feature = "store-redis")]
            Table::Store(r) => match r.add_user(&user) {
                Ok(true) => Ok(()),
                Ok(false) => Err(Error::Other(format!("duplicate uuid {}", user.uuid.hyphenated()))),
                Err(_) => Err(unavailable(r)),
            },
        }
    }

    fn file(&self) -> Option<&std::path::Path> {
        match self {
            Table::File(path) => Some(path),
            #[cfg(feature = "store-redis")]
            Table::Store(_) => None,
        }
    }

    fn list(&self) -> Result<users::Users> {
        match self {
            Table::File(path) => users::load(path),
            #[cfg(feature = "store-redis")]
            Table::Store(r) => r.users().map_err(|_| unavailable(r)),
        }
    }

    /// Remove `uuid`; an error when it is not there (and nothing written).
    fn remove(&self, uuid: &Uuid) -> Result<()> {
        let missing = |where_: &str| Error::Other(format!("uuid {} is not in {where_}", uuid.hyphenated()));
        match self {
            Table::File(path) => users::update(path, |table| {
                if table.remove(uuid) {
                    Ok(())
                } else {
                    Err(missing("the users file"))
                }
            }),
            #[cfg(feature = "store-redis")]
            Table::Store(r) => match r.remove_user(uuid) {
                Ok(true) => Ok(()),
                Ok(false) => Err(missing("the store")),
                Err(_) => Err(unavailable(r)),
            },
        }
    }
}

#[cfg(feature = "store-redis")]
fn unavailable(r: &crate::server::store::redis::RedisStore) -> Error {
    Error::Other(format!("store {}: unavailable", r.describe()))
}

fn paths_or_default(p: &Option<StatePaths>) -> StatePaths {
    p.clone()
        .unwrap_or_else(|| StatePaths::resolve(None, None, None, None))
}

/// `rendezvousd user add`: add a hidden server to the users file and emit its
/// provisioning file (to `--out`, mode 0600, or to `out`).
pub fn user_add(opts: &UserAdd, out: &mut dyn Write) -> Result<()> {
    if opts.cert.is_some() && opts.ca.is_some() {
        return Err(Error::Usage("--cert and --ca exclude each other".into()));
    }
    if !limits::TOTP_STEP.contains(&opts.step) {
        return Err(Error::Usage("--step must be 1 to 3600 seconds".into()));
    }
    if !limits::TOTP_DIGITS.contains(&opts.digits) {
        return Err(Error::Usage("--digits must be 6 to 8".into()));
    }
    if opts
        .label
        .as_deref()
        .is_some_and(|l| l.contains(['\n', '\r']))
    {
        return Err(Error::Usage("--label must be one line".into()));
    }
    let paths = paths_or_default(&opts.paths);
    let table = Table::open(&paths, opts.store.as_ref())?;
    // Trust first, so that a failure leaves no user without a provisioning file.
    let (pin, ca) = match (&opts.ca, &opts.cert) {
        (Some(ca), _) => {
            certs::load_certs(ca)?;
            let abs = std::fs::canonicalize(ca).unwrap_or_else(|_| ca.clone());
            (None, Some(abs))
        }
        (None, Some(cert)) => (Some(certs::file_fingerprint(cert)?), None),
        (None, None) => {
            ensure_dir(&paths.dir)?;
            (Some(certs::ensure_pair(&paths.cert, &paths.key)?.0), None)
        }
    };
    if let Some(dir) = table.file().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
        ensure_dir(dir)?;
    }
    let user = User {
        uuid: opts.uuid.unwrap_or_else(Uuid::new_v4),
        secret: Secret::generate(limits::NEW_SECRET_BYTES),
        params: Params {
            step: opts.step,
            digits: opts.digits,
        },
        label: opts.label.clone().unwrap_or_default(),
    };
    let provision = Provision {
        server: Some(if opts.server.is_empty() {
            format!(
                "https://{}:{}",
                certs::system_hostname().unwrap_or_else(|| "localhost".into()),
                limits::DEFAULT_REGISTRAR_PORT
            )
        } else {
            opts.server.join(" ")
        }),
        uuid: Some(user.uuid),
        secret: Some(user.secret.clone()),
        step: Some(user.params.step),
        digits: Some(user.params.digits),
        pin_sha256: pin,
        ca,
    };
    let uuid = user.uuid;
    table.add(user)?;
    let text = provision.render();
    match &opts.out {
        Some(path) => {
            files::write_atomic(path, text.as_bytes(), 0o600)?;
            writeln!(out, "{}", uuid.hyphenated()).map_err(|e| Error::io("write output", e))?;
        }
        None => out
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("write output", e))?,
    }
    Ok(())
}

/// `rendezvousd user list`: one line per user, `UUID STEP DIGITS LABEL`; never the secret.
pub fn user_list(paths: &StatePaths, store: Option<&StoreArgs>, out: &mut dyn Write) -> Result<()> {
    let table = Table::open(paths, store)?.list()?;
    for u in table.iter() {
        let line = format!(
            "{} {} {} {}",
            u.uuid.hyphenated(),
            u.params.step,
            u.params.digits,
            u.label
        );
        writeln!(out, "{}", line.trim_end()).map_err(|e| Error::io("write output", e))?;
    }
    Ok(())
}

/// `rendezvousd user remove UUID`.
pub fn user_remove(paths: &StatePaths, store: Option<&StoreArgs>, uuid: &Uuid) -> Result<()> {
    Table::open(paths, store)?.remove(uuid)
}

/// `rendezvousd cert`: write a self-signed pair into the state folder and print
/// its SHA-256 fingerprint. Refuses to overwrite without `force`.
pub fn cert(paths: &StatePaths, hosts: &[String], force: bool, out: &mut dyn Write) -> Result<()> {
    ensure_dir(&paths.dir)?;
    let hosts = if hosts.is_empty() {
        certs::default_hosts()
    } else {
        hosts.to_vec()
    };
    let fp = certs::write_self_signed(&paths.cert, &paths.key, &hosts, force)?;
    writeln!(out, "{fp}").map_err(|e| Error::io("write output", e))
}
