//! Cold segments in the object store: their names, writing one with a read-back check, and a
//! reader that serves entries only from objects that pass their manifest's checks (with a small
//! cache of verified segments, so a burst of reads of one segment fetches it once).
//!
//! Names: `<prefix>/cold/<tenant>/<object sha256>.zlib` for the object and `<that>.manifest.json`
//! beside it (the tenant percent-encoded). The name follows from the bytes, so a demoter that
//! redoes a segment after a crash writes the same name, and two segments never share one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use events::cold_segment::{self, ColdEntry, Manifest, Segment};
use infra::objects::{ObjectError, Objects, delete, get, put_once};
use thiserror::Error;

use crate::cold_tier::SealedSegment;

/// Why a cold entry could not be served.
#[derive(Debug, Error)]
pub enum ColdReadError {
    /// The object store did not answer; retry later.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The object is missing or fails its manifest (never served).
    #[error("cold segment {segment_key} unreadable: {reason}")]
    Unreadable {
        /// The segment.
        segment_key: String,
        /// What failed.
        reason: String,
    },
    /// The segment does not hold the key the index says it does.
    #[error("cold segment {0} does not hold the requested entry")]
    NotInSegment(String),
}

/// The object name of a segment of `tenant` with `manifest`.
pub fn segment_key(prefix: &str, manifest: &Manifest) -> String {
    format!(
        "{prefix}/cold/{}/{}.zlib",
        encode_component(&manifest.tenant),
        manifest.object_sha256
    )
}

/// The manifest object beside `segment_key`.
pub fn manifest_key(segment_key: &str) -> String {
    format!("{segment_key}.manifest.json")
}

/// Tenant names may hold any character but `/`; object names keep `[A-Za-z0-9_-]` and
/// percent-encode the rest (dots too, so no tenant is named `..`).
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn unavailable(error: ObjectError) -> ColdReadError {
    ColdReadError::Unavailable(error.to_string())
}

/// Writes a segment and its manifest (write-once), reads the object back and checks it against
/// the manifest. Only a segment that passed this may have its warm rows deleted.
pub async fn write_and_verify(
    objects: &Objects,
    key: &str,
    segment: &Segment,
) -> Result<(), ColdReadError> {
    let manifest_json = serde_json::to_vec_pretty(&segment.manifest).map_err(|error| {
        ColdReadError::Unreadable {
            segment_key: key.to_owned(),
            reason: error.to_string(),
        }
    })?;
    put_once(objects, key, segment.object.clone())
        .await
        .map_err(|error| match error {
            ObjectError::Conflict(_) => ColdReadError::Unreadable {
                segment_key: key.to_owned(),
                reason: "an object of that name holds other bytes".to_owned(),
            },
            other => unavailable(other),
        })?;
    put_once(objects, &manifest_key(key), manifest_json)
        .await
        .map_err(unavailable)?;
    let stored = get(objects, key).await.map_err(unavailable)?;
    let Some(stored) = stored else {
        return Err(ColdReadError::Unreadable {
            segment_key: key.to_owned(),
            reason: "missing right after it was written".to_owned(),
        });
    };
    cold_segment::unpack(&stored, &segment.manifest).map_err(|error| {
        ColdReadError::Unreadable {
            segment_key: key.to_owned(),
            reason: error.to_string(),
        }
    })?;
    Ok(())
}

/// Deletes a segment's object and manifest (absent is fine).
pub async fn delete_segment(objects: &Objects, key: &str) -> Result<(), ColdReadError> {
    for name in [key.to_owned(), manifest_key(key)] {
        delete(objects, &name).await.map_err(unavailable)?;
    }
    Ok(())
}

/// Reads and verifies a whole segment (for `flk tier verify` and the reader).
pub async fn read_segment(
    objects: &Objects,
    segment: &SealedSegment,
) -> Result<Vec<ColdEntry>, ColdReadError> {
    let bytes = get(objects, &segment.segment_key)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ColdReadError::Unreadable {
            segment_key: segment.segment_key.clone(),
            reason: "object missing".to_owned(),
        })?;
    cold_segment::unpack(&bytes, &segment.manifest).map_err(|error| ColdReadError::Unreadable {
        segment_key: segment.segment_key.clone(),
        reason: error.to_string(),
    })
}

/// Serves cold entries from verified segments, caching the newest few.
#[derive(Clone)]
pub struct ColdReader {
    objects: Objects,
    cache: Arc<Mutex<SegmentCache>>,
}

impl std::fmt::Debug for ColdReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdReader").finish_non_exhaustive()
    }
}

/// Verified segments by name, evicted oldest first.
#[derive(Debug)]
struct SegmentCache {
    capacity: usize,
    entries: HashMap<String, Arc<Vec<ColdEntry>>>,
    order: VecDeque<String>,
}

impl ColdReader {
    /// A reader keeping up to `capacity` verified segments in memory.
    pub fn new(objects: Objects, capacity: usize) -> Self {
        ColdReader {
            objects,
            cache: Arc::new(Mutex::new(SegmentCache {
                capacity,
                entries: HashMap::new(),
                order: VecDeque::new(),
            })),
        }
    }

    /// The entry of `pcs_id` in `segment`, from a verified copy of the segment.
    pub async fn entry(
        &self,
        segment: &SealedSegment,
        pcs_id: &str,
    ) -> Result<(ColdEntry, bool), ColdReadError> {
        let cached_opt = self
            .cache
            .lock()
            .ok()
            .and_then(|cache| cache.entries.get(&segment.segment_key).cloned());
        let (entries, from_cache) = match cached_opt {
            Some(entries) => (entries, true),
            None => {
                let entries = Arc::new(read_segment(&self.objects, segment).await?);
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(segment.segment_key.clone(), entries.clone());
                }
                (entries, false)
            }
        };
        entries
            .binary_search_by(|entry| entry.pcs_id.as_str().cmp(pcs_id))
            .ok()
            .map(|index| (entries[index].clone(), from_cache))
            .ok_or_else(|| ColdReadError::NotInSegment(segment.segment_key.clone()))
    }
}

impl SegmentCache {
    fn insert(&mut self, key: String, entries: Arc<Vec<ColdEntry>>) {
        if self.capacity == 0 || self.entries.contains_key(&key) {
            return;
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_cannot_escape_their_folder() {
        assert_eq!(encode_component("acme"), "acme");
        assert_eq!(encode_component("a/../b c%"), "a%2F%2E%2E%2Fb%20c%25");
    }
}
