//! How to reach a shared store: `--store` and the options beside it.

/// How to reach a shared store (`--store` and the options beside it).
#[derive(Debug, Clone)]
pub struct StoreArgs {
    /// `redis://…`, `rediss://…` or `unix://…`, without credentials;
    /// empty when the sentinels name the store.
    pub url: String,
    /// The store's password (`--store-password-file` or
    /// `$RENDEZVOUS_STORE_PASSWORD`).
    pub password: Option<crate::secret::Password>,
    /// `--store-ca`: trust only this PEM (a CA, or the store's own
    /// certificate) for TLS, instead of the system's roots.
    pub ca: Option<std::path::PathBuf>,
    /// `--store-sentinel`: Redis Sentinels (`HOST:PORT`) to ask which
    /// server is the store's primary.
    pub sentinels: Vec<String>,
    /// `--store-service`: the name the sentinels monitor the store by.
    pub service: Option<String>,
}

impl StoreArgs {
    /// A store at `url`, with no password, TLS trust or sentinels.
    pub fn new(url: impl Into<String>) -> StoreArgs {
        StoreArgs {
            url: url.into(),
            password: None,
            ca: None,
            sentinels: Vec::new(),
            service: None,
        }
    }

    /// For messages: the URL, or the service and its sentinels.
    pub fn describe(&self) -> String {
        match &self.service {
            Some(s) if !self.sentinels.is_empty() => {
                format!("service {s} (sentinels {})", self.sentinels.join(","))
            }
            _ => self.url.clone(),
        }
    }
}
