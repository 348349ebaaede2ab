//! The object store client (`[object_store]`): a local directory or an S3-compatible service
//! behind the `object_store` crate, and write-once puts.
//!
//! Write-once: an object written here is never replaced. [`put_once`] reads first; an object
//! already there with the same bytes is success (a retry after a crash), with other bytes an
//! error. Callers make sure only one writer can produce the bytes of a path (the anchorer writes
//! a checkpoint only after Postgres accepted it as the one for its size).

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use thiserror::Error;

use crate::config::{ObjectStoreConfig, ObjectStoreKind};

/// Why an object operation failed.
#[derive(Debug, Error)]
pub enum ObjectError {
    /// The configuration cannot be used.
    #[error("object store configuration: {0}")]
    Config(String),
    /// The store did not answer as expected; retry later.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// An object of that name exists with other bytes (never overwritten).
    #[error("object {0} exists with other content; it is never overwritten")]
    Conflict(String),
}

/// A shared object store handle.
pub type Objects = Arc<dyn ObjectStore>;

/// Opens the configured store (for `local`, creates the directory).
pub fn open(config: &ObjectStoreConfig) -> Result<Objects, ObjectError> {
    match config.kind {
        ObjectStoreKind::Local => {
            std::fs::create_dir_all(&config.local_dir).map_err(|error| {
                ObjectError::Config(format!("creating {}: {error}", config.local_dir.display()))
            })?;
            let store = LocalFileSystem::new_with_prefix(&config.local_dir)
                .map_err(|error| ObjectError::Config(error.to_string()))?;
            Ok(Arc::new(store))
        }
        ObjectStoreKind::S3 => {
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(&config.bucket)
                .with_region(&config.region)
                .with_virtual_hosted_style_request(false);
            if let Some(endpoint) = &config.endpoint_opt {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(id) = &config.access_key_id_opt {
                builder = builder.with_access_key_id(id);
            }
            if let Some(secret) = &config.secret_access_key_opt {
                builder = builder.with_secret_access_key(secret);
            }
            let store = builder
                .build()
                .map_err(|error| ObjectError::Config(error.to_string()))?;
            Ok(Arc::new(store))
        }
    }
}

/// An empty in-memory store (tests, and processes that must never write objects).
pub fn in_memory() -> Objects {
    Arc::new(object_store::memory::InMemory::new())
}

/// Writes `bytes` at `path` unless it is already there (same bytes: success; other: conflict).
pub async fn put_once(objects: &Objects, path: &str, bytes: Vec<u8>) -> Result<(), ObjectError> {
    let location = Path::from(path);
    match objects.get(&location).await {
        Ok(existing) => {
            let stored = existing
                .bytes()
                .await
                .map_err(|error| ObjectError::Unavailable(error.to_string()))?;
            return if stored.as_ref() == bytes.as_slice() {
                Ok(())
            } else {
                Err(ObjectError::Conflict(path.to_owned()))
            };
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(error) => return Err(ObjectError::Unavailable(error.to_string())),
    }
    objects
        .put(&location, PutPayload::from(bytes))
        .await
        .map(|_| ())
        .map_err(|error| ObjectError::Unavailable(error.to_string()))
}

/// Reads an object (`None` when absent).
pub async fn get(objects: &Objects, path: &str) -> Result<Option<Vec<u8>>, ObjectError> {
    match objects.get(&Path::from(path)).await {
        Ok(found) => found
            .bytes()
            .await
            .map(|bytes| Some(bytes.to_vec()))
            .map_err(|error| ObjectError::Unavailable(error.to_string())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(error) => Err(ObjectError::Unavailable(error.to_string())),
    }
}

/// Deletes an object (absent is success).
pub async fn delete(objects: &Objects, path: &str) -> Result<(), ObjectError> {
    match objects.delete(&Path::from(path)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(error) => Err(ObjectError::Unavailable(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_object_is_written_once() {
        let dir = std::env::temp_dir().join(format!("flk-objects-{}", std::process::id()));
        let config = ObjectStoreConfig {
            local_dir: dir.clone(),
            ..ObjectStoreConfig::default()
        };
        let objects = open(&config).unwrap();
        put_once(&objects, "a/b", b"one".to_vec()).await.unwrap();
        put_once(&objects, "a/b", b"one".to_vec()).await.unwrap();
        assert!(matches!(
            put_once(&objects, "a/b", b"two".to_vec()).await,
            Err(ObjectError::Conflict(_))
        ));
        assert_eq!(get(&objects, "a/b").await.unwrap(), Some(b"one".to_vec()));
        assert_eq!(get(&objects, "a/c").await.unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
