//! `[object_store]`: where immutable objects go (signed checkpoints today, cold segments later).

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// Which kind of store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectStoreKind {
    /// A local directory (the default: nothing to run).
    Local,
    /// An S3-compatible service.
    S3,
}

/// The object store.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreConfig {
    /// `local` or `s3`; setting `FLK_S3_ENDPOINT` selects `s3`.
    pub kind: ObjectStoreKind,
    /// Directory of the `local` kind (created when missing).
    pub local_dir: PathBuf,
    /// S3 endpoint URL (`FLK_S3_ENDPOINT`), e.g. `http://127.0.0.1:19000`; AWS itself when unset.
    pub endpoint_opt: Option<String>,
    /// Bucket (`FLK_S3_BUCKET`); must exist.
    pub bucket: String,
    /// Region (`AWS_REGION`).
    pub region: String,
    /// Access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id_opt: Option<String>,
    /// Secret access key (`AWS_SECRET_ACCESS_KEY`); never printed.
    pub secret_access_key_opt: Option<String>,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        ObjectStoreConfig {
            kind: ObjectStoreKind::Local,
            local_dir: PathBuf::from(".local/objects"),
            endpoint_opt: None,
            bucket: "flk".to_owned(),
            region: "us-east-1".to_owned(),
            access_key_id_opt: None,
            secret_access_key_opt: None,
        }
    }
}

impl std::fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("kind", &self.kind)
            .field("local_dir", &self.local_dir)
            .field("endpoint_opt", &self.endpoint_opt)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id_opt", &self.access_key_id_opt)
            .field(
                "secret_access_key_opt",
                &self.secret_access_key_opt.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl ObjectStoreConfig {
    pub(super) fn apply_env(&mut self, get: &dyn Fn(&str) -> Option<String>) {
        if let Some(value) = get("FLK_S3_ENDPOINT") {
            self.kind = ObjectStoreKind::S3;
            self.endpoint_opt = Some(value);
        }
        if let Some(value) = get("FLK_S3_BUCKET") {
            self.bucket = value;
        }
        if let Some(value) = get("AWS_REGION") {
            self.region = value;
        }
        if let Some(value) = get("AWS_ACCESS_KEY_ID") {
            self.access_key_id_opt = Some(value);
        }
        if let Some(value) = get("AWS_SECRET_ACCESS_KEY") {
            self.secret_access_key_opt = Some(value);
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.kind == ObjectStoreKind::S3 && self.bucket.is_empty() {
            return Err(invalid("object_store.bucket", "must not be empty"));
        }
        if let Some(endpoint) = &self.endpoint_opt {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(invalid(
                    "object_store.endpoint_opt",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        Ok(())
    }
}
