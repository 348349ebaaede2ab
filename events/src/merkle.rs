//! RFC 6962 / RFC 9162 Merkle tree math: hashing, the append frontier, proof planning and proof
//! verification. Pure: the store that keeps node hashes lives in `projections`.
//!
//! Hashing: a leaf is `SHA-256(0x00 || entry)`, an inner node `SHA-256(0x01 || left || right)`, the
//! empty tree `SHA-256("")`. A tree of `n` leaves splits at the largest power of two below `n`, so
//! every complete subtree of the final tree stays unchanged as leaves are appended. That is what the
//! store keeps: the hash of every complete subtree, named by [`NodeId`] (level `l`, index `i` covers
//! the leaves `[i * 2^l, (i + 1) * 2^l)`), about two hashes per leaf. Any root, inclusion proof or
//! consistency proof of a tree of `n` leaves then needs O(log n) stored hashes: the functions here
//! first *plan* which ones ([`inclusion_plan`], [`consistency_plan`], [`root_plan`]), the store
//! reads them in one query, and the same functions assemble the answer from a [`HashSource`].
//!
//! Verification ([`verify_inclusion`], [`verify_consistency`]) follows RFC 9162 sections 2.1.3.2
//! and 2.1.4.2 and needs nothing but the proof; the SDKs implement the same two functions, and the
//! Go SDK's tests check our proofs against `golang.org/x/mod/sumdb/tlog`.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(entry);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// A complete subtree: level `level`, index `index` covers leaves `[index << level, (index + 1) << level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves (0 = a leaf).
    pub level: u8,
    /// Position among the subtrees of that level.
    pub index: u64,
}

impl NodeId {
    /// The subtree `[lo, hi)` if it is complete and aligned, else `None`.
    fn of_range(lo: u64, hi: u64) -> Option<NodeId> {
        let width = hi - lo;
        (width.is_power_of_two() && lo % width == 0).then(|| NodeId {
            level: width.trailing_zeros() as u8,
            index: lo >> width.trailing_zeros(),
        })
    }
}

/// Where assembled proofs read stored subtree hashes from.
pub trait HashSource {
    /// The stored hash of `id`, if known.
    fn hash(&self, id: NodeId) -> Option<Hash>;
}

impl HashSource for HashMap<NodeId, Hash> {
    fn hash(&self, id: NodeId) -> Option<Hash> {
        self.get(&id).copied()
    }
}

impl HashSource for BTreeMap<NodeId, Hash> {
    fn hash(&self, id: NodeId) -> Option<Hash> {
        self.get(&id).copied()
    }
}

/// Why a proof could not be built or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The request names a leaf or size the tree does not have (bad input).
    #[error("{0}")]
    OutOfRange(String),
    /// A stored hash the proof needs is missing (the store is incomplete or corrupt).
    #[error("stored hash missing for level {} index {}", .0.level, .0.index)]
    Missing(NodeId),
    /// The proof does not lead to the expected root.
    #[error("{0}")]
    Mismatch(String),
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Appends the stored subtrees whose hashes make up `[lo, hi)`, left to right.
fn range_plan(lo: u64, hi: u64, out: &mut Vec<NodeId>) {
    if let Some(id) = NodeId::of_range(lo, hi) {
        out.push(id);
        return;
    }
    let k = split(hi - lo);
    range_plan(lo, lo + k, out);
    range_plan(lo + k, hi, out);
}

/// The hash of `[lo, hi)` (RFC 6962 MTH) from stored subtrees.
fn range_hash(lo: u64, hi: u64, source: &dyn HashSource) -> Result<Hash, ProofError> {
    if let Some(id) = NodeId::of_range(lo, hi) {
        return source.hash(id).ok_or(ProofError::Missing(id));
    }
    let k = split(hi - lo);
    Ok(node_hash(
        &range_hash(lo, lo + k, source)?,
        &range_hash(lo + k, hi, source)?,
    ))
}

/// The stored subtrees the root of a tree of `size` leaves needs (its binary decomposition).
pub fn root_plan(size: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    if size > 0 {
        range_plan(0, size, &mut out);
    }
    out
}

/// The root of the first `size` leaves.
pub fn root(size: u64, source: &dyn HashSource) -> Result<Hash, ProofError> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(0, size, source)
}

/// The ranges whose hashes form the inclusion path of `index` in `[lo, hi)`, leaf side first.
fn inclusion_ranges(index: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    if hi - lo <= 1 {
        return;
    }
    let k = split(hi - lo);
    if index < lo + k {
        inclusion_ranges(index, lo, lo + k, out);
        out.push((lo + k, hi));
    } else {
        inclusion_ranges(index, lo + k, hi, out);
        out.push((lo, lo + k));
    }
}

fn check_inclusion_args(index: u64, size: u64) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf index {index} is not in a tree of size {size}"
        )));
    }
    Ok(())
}

/// The stored subtrees an inclusion proof of leaf `index` in a tree of `size` leaves needs.
pub fn inclusion_plan(index: u64, size: u64) -> Result<Vec<NodeId>, ProofError> {
    check_inclusion_args(index, size)?;
    let mut ranges = Vec::new();
    inclusion_ranges(index, 0, size, &mut ranges);
    let mut out = Vec::new();
    for (lo, hi) in ranges {
        range_plan(lo, hi, &mut out);
    }
    Ok(out)
}

/// The RFC 9162 inclusion proof (audit path) of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    source: &dyn HashSource,
) -> Result<Vec<Hash>, ProofError> {
    check_inclusion_args(index, size)?;
    let mut ranges = Vec::new();
    inclusion_ranges(index, 0, size, &mut ranges);
    ranges
        .into_iter()
        .map(|(lo, hi)| range_hash(lo, hi, source))
        .collect()
}

/// RFC 9162 SUBPROOF over `[lo, hi)` for the first `m` leaves of it.
fn consistency_ranges(m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push((lo, hi));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        consistency_ranges(m, lo, lo + k, complete, out);
        out.push((lo + k, hi));
    } else {
        consistency_ranges(m - k, lo + k, hi, false, out);
        out.push((lo, lo + k));
    }
}

fn check_consistency_args(old_size: u64, new_size: u64) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange(format!(
            "old size {old_size} is larger than new size {new_size}"
        )));
    }
    Ok(())
}

fn consistency_range_list(old_size: u64, new_size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    if old_size > 0 && old_size < new_size {
        consistency_ranges(old_size, 0, new_size, true, &mut ranges);
    }
    ranges
}

/// The stored subtrees a consistency proof from `old_size` to `new_size` needs.
pub fn consistency_plan(old_size: u64, new_size: u64) -> Result<Vec<NodeId>, ProofError> {
    check_consistency_args(old_size, new_size)?;
    let mut out = Vec::new();
    for (lo, hi) in consistency_range_list(old_size, new_size) {
        range_plan(lo, hi, &mut out);
    }
    Ok(out)
}

/// The RFC 9162 consistency proof between the trees of `old_size` and `new_size` leaves (empty when
/// either is 0 or they are equal: such trees are consistent with nothing to show).
pub fn consistency_proof(
    old_size: u64,
    new_size: u64,
    source: &dyn HashSource,
) -> Result<Vec<Hash>, ProofError> {
    check_consistency_args(old_size, new_size)?;
    consistency_range_list(old_size, new_size)
        .into_iter()
        .map(|(lo, hi)| range_hash(lo, hi, source))
        .collect()
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`
/// (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    check_inclusion_args(index, size)?;
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::Mismatch(
                "inclusion proof is longer than the tree is deep".into(),
            ));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::Mismatch(
            "inclusion proof is shorter than the tree is deep".into(),
        ));
    }
    if &r != root {
        return Err(ProofError::Mismatch(
            "inclusion proof does not lead to the root".into(),
        ));
    }
    Ok(())
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of `old_size`
/// leaves with root `old_root` (RFC 9162 section 2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    check_consistency_args(old_size, new_size)?;
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::Mismatch(
                "equal sizes need an empty consistency proof".into(),
            ));
        }
        if old_root != new_root {
            return Err(ProofError::Mismatch(
                "two different roots for the same tree size".into(),
            ));
        }
        return Ok(());
    }
    if old_size == 0 {
        // Every tree extends the empty one.
        if !proof.is_empty() {
            return Err(ProofError::Mismatch(
                "a proof from the empty tree must be empty".into(),
            ));
        }
        return Ok(());
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(ProofError::Mismatch("consistency proof is empty".into()));
    };
    // When the old tree is a complete subtree, its root is the proof's implicit first element.
    let (seed, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::Mismatch(
                "consistency proof is longer than expected".into(),
            ));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::Mismatch(
            "consistency proof is shorter than expected".into(),
        ));
    }
    if &fr != old_root {
        return Err(ProofError::Mismatch(
            "consistency proof does not lead to the old root".into(),
        ));
    }
    if &sr != new_root {
        return Err(ProofError::Mismatch(
            "consistency proof does not lead to the new root".into(),
        ));
    }
    Ok(())
}

/// The right edge of a growing tree: the hashes of its binary decomposition (largest subtree
/// first). Appending a leaf yields the stored subtrees it completes, so a writer never reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// (level, hash) of each subtree of the decomposition, left to right.
    peaks: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// The frontier of a tree of `size` leaves, from its stored subtrees ([`root_plan`]).
    pub fn load(size: u64, source: &dyn HashSource) -> Result<Self, ProofError> {
        let peaks = root_plan(size)
            .into_iter()
            .map(|id| {
                source
                    .hash(id)
                    .map(|hash| (id.level, hash))
                    .ok_or(ProofError::Missing(id))
            })
            .collect::<Result<_, _>>()?;
        Ok(Frontier { size, peaks })
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; returns the stored subtrees it creates (the leaf itself first).
    pub fn append(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        let mut created = vec![(NodeId { level: 0, index }, leaf)];
        let (mut level, mut hash) = (0u8, leaf);
        while let Some(&(peak_level, peak_hash)) = self.peaks.last() {
            if peak_level != level {
                break;
            }
            self.peaks.pop();
            hash = node_hash(&peak_hash, &hash);
            level += 1;
            created.push((
                NodeId {
                    level,
                    index: index >> level,
                },
                hash,
            ));
        }
        self.peaks.push((level, hash));
        self.size += 1;
        created
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(&(_, last)) = iter.next() else {
            return empty_root();
        };
        iter.fold(last, |acc, (_, left)| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    /// RFC 6962 MTH straight from the definition (the oracle for everything else here).
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (Frontier, HashMap<NodeId, Hash>) {
        let mut frontier = Frontier::new();
        let mut store = HashMap::new();
        for leaf in leaves(n) {
            store.extend(frontier.append(leaf));
        }
        (frontier, store)
    }

    #[test]
    fn roots_match_the_definition_and_the_frontier() {
        let all = leaves(70);
        let (_, store) = build(70);
        for size in 0..=70u64 {
            let expected = mth(&all[..size as usize]);
            assert_eq!(root(size, &store).unwrap(), expected, "size {size}");
            let (frontier, _) = build(size);
            assert_eq!(frontier.root(), expected, "frontier size {size}");
            assert_eq!(Frontier::load(size, &store).unwrap(), frontier);
        }
    }

    #[test]
    fn about_two_stored_hashes_per_leaf() {
        let (_, store) = build(1024);
        assert_eq!(store.len(), 2047);
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_tampering_fails() {
        let (_, store) = build(40);
        for size in 1..=40u64 {
            let root_now = root(size, &store).unwrap();
            for index in 0..size {
                let leaf = store[&NodeId { level: 0, index }];
                let proof = inclusion_proof(index, size, &store).unwrap();
                assert!(inclusion_plan(index, size).unwrap().len() >= proof.len());
                verify_inclusion(&leaf, index, size, &proof, &root_now).unwrap();
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = node_hash(first, first);
                    assert!(verify_inclusion(&leaf, index, size, &bad, &root_now).is_err());
                }
                let other = index ^ 1;
                if other < size {
                    assert!(
                        verify_inclusion(&leaf, other, size, &proof, &root_now).is_err(),
                        "index {index} size {size}"
                    );
                }
            }
            for old in 0..=size {
                let old_root = root(old, &store).unwrap();
                let proof = consistency_proof(old, size, &store).unwrap();
                verify_consistency(old, size, &old_root, &root_now, &proof).unwrap();
                if old > 0 && old < size {
                    let wrong = node_hash(&old_root, &old_root);
                    assert!(verify_consistency(old, size, &wrong, &root_now, &proof).is_err());
                    assert!(verify_consistency(old, size, &old_root, &wrong, &proof).is_err());
                    assert!(verify_consistency(old, size, &old_root, &root_now, &[]).is_err());
                }
            }
        }
    }

    #[test]
    fn out_of_range_requests_are_refused() {
        let (_, store) = build(5);
        assert!(matches!(
            inclusion_proof(5, 5, &store),
            Err(ProofError::OutOfRange(_))
        ));
        assert!(matches!(
            consistency_proof(6, 5, &store),
            Err(ProofError::OutOfRange(_))
        ));
        assert!(matches!(root(6, &store), Err(ProofError::Missing(_))));
    }

    #[test]
    fn known_answer_from_rfc6962_test_data() {
        // The certificate-transparency test vectors: leaves are these byte strings.
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let mut frontier = Frontier::new();
        for input in inputs {
            frontier.append(leaf_hash(input));
        }
        assert_eq!(
            hex::encode(frontier.root()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
