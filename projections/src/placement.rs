//! Where a key of the sharded hot tier is read and written (pure; no I/O).
//!
//! A placement is the ring reads go through plus every ring writes go through. Outside a
//! migration both are the same ring. While `flk migrate` moves keys, writes go through the old and
//! the new ring (dual write), so whichever ring reads use, and whichever way the migration ends
//! (cutover or rollback), that ring holds every key written since. State version 0 is the
//! configuration's own ring, used until `flk migrate` first records a ring in Postgres.

use std::collections::BTreeSet;

use crate::ring::HashRing;

/// Reads through one ring, writes through one or two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `ring_state.state_version` this placement was built from (0: the configuration's ring).
    pub state_version: i64,
    /// Ring version reads go through (0: the configuration's ring).
    pub read_version: i64,
    /// The ring reads go through.
    pub read: HashRing,
    /// Every ring writes go through, the read ring first; (version, ring).
    pub writes: Vec<(i64, HashRing)>,
    /// The migration that set this placement, if any.
    pub migration_id_opt: Option<String>,
}

impl Placement {
    /// The configuration's ring, before any ring is recorded in Postgres.
    pub fn from_config(ring: HashRing) -> Self {
        Placement {
            state_version: 0,
            read_version: 0,
            read: ring.clone(),
            writes: vec![(0, ring)],
            migration_id_opt: None,
        }
    }

    /// The node reads of `key` go to.
    pub fn read_owner(&self, key: &[u8]) -> &str {
        self.read.node_for(key)
    }

    /// The nodes writes of `key` go to (one, or two while a migration moves it), read owner first.
    pub fn write_owners(&self, key: &[u8]) -> Vec<&str> {
        let mut owners: Vec<&str> = Vec::with_capacity(self.writes.len());
        for (_, ring) in &self.writes {
            let owner = ring.node_for(key);
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        owners
    }

    /// Every node any ring of this placement names (the connections a process needs).
    pub fn node_ids(&self) -> BTreeSet<&str> {
        self.writes
            .iter()
            .flat_map(|(_, ring)| ring.nodes().iter().map(String::as_str))
            .chain(self.read.nodes().iter().map(String::as_str))
            .collect()
    }

    /// True while writes go through more than one ring.
    pub fn dual_writing(&self) -> bool {
        self.writes.len() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(nodes: &[&str]) -> HashRing {
        HashRing::new(nodes.iter().map(|node| (*node).to_owned()).collect(), 64).unwrap()
    }

    #[test]
    fn outside_a_migration_reads_and_writes_agree() {
        let placement = Placement::from_config(ring(&["a", "b", "c"]));
        for index in 0..1_000 {
            let key = format!("flk:t:{index}");
            assert_eq!(
                placement.write_owners(key.as_bytes()),
                [placement.read_owner(key.as_bytes())]
            );
        }
        assert!(!placement.dual_writing());
    }

    #[test]
    fn dual_writes_reach_both_owners_read_owner_first() {
        let old = ring(&["a", "b", "c"]);
        let new = ring(&["a", "b", "c", "d"]);
        let placement = Placement {
            state_version: 3,
            read_version: 1,
            read: old.clone(),
            writes: vec![(1, old.clone()), (2, new.clone())],
            migration_id_opt: Some("m".into()),
        };
        let mut moved = 0;
        for index in 0..2_000 {
            let key = format!("flk:t:{index}");
            let owners = placement.write_owners(key.as_bytes());
            assert_eq!(owners[0], old.node_for(key.as_bytes()));
            assert!(owners.contains(&new.node_for(key.as_bytes())));
            if owners.len() == 2 {
                moved += 1;
                assert_eq!(owners[1], "d", "adding a node only moves keys to it");
            }
        }
        assert!(moved > 0);
        assert_eq!(
            placement.node_ids().into_iter().collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
    }
}
