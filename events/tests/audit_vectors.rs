//! The committed audit vectors, judged by the Rust verifiers (the SDKs run the same file), and
//! property tests of proofs over random trees of up to 100,000 leaves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use events::SignedFields;
use events::audit_proof::{ProofBundle, decode_hashes, verify_bundle};
use events::checkpoint::NoteVerifier;
use events::merkle::{self, Frontier, Hash, NodeId};
use proptest::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const VECTORS: &str = include_str!("../../tests/vectors/audit-vectors.json");
const PINNED: &str = include_str!("../../tests/vectors/audit-vectors.json.sha256");

fn hash(value: &Value) -> Hash {
    BASE64
        .decode(value.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn hash_list(value: &Value) -> Vec<Hash> {
    let list: Vec<String> = serde_json::from_value(value.clone()).unwrap();
    decode_hashes(&list).unwrap()
}

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

#[test]
fn the_file_is_the_pinned_one() {
    let digest = hex::encode(Sha256::digest(VECTORS.as_bytes()));
    assert_eq!(PINNED, format!("{digest}  audit-vectors.json\n"));
}

#[test]
fn roots_and_hashing() {
    let doc = vectors();
    let mut frontier = Frontier::new();
    let mut roots = vec![frontier.root()];
    for i in 0..1000 {
        frontier.append(merkle::leaf_hash(format!("flk test leaf {i}").as_bytes()));
        roots.push(frontier.root());
    }
    for case in doc["roots"].as_array().unwrap() {
        let size = case["size"].as_u64().unwrap() as usize;
        assert_eq!(roots[size], hash(&case["root"]), "size {size}");
    }
    assert_eq!(merkle::empty_root(), hash(&doc["hashing"]["empty_root"]));
    let node = &doc["hashing"]["node"];
    assert_eq!(
        merkle::node_hash(&hash(&node["left"]), &hash(&node["right"])),
        hash(&node["hash"])
    );
    for case in doc["hashing"]["leaves"].as_array().unwrap() {
        let entry = BASE64.decode(case["entry"].as_str().unwrap()).unwrap();
        assert_eq!(merkle::leaf_hash(&entry), hash(&case["leaf_hash"]));
    }
}

#[test]
fn inclusion_and_consistency_cases() {
    let doc = vectors();
    for case in doc["inclusion"].as_array().unwrap() {
        let entry = BASE64.decode(case["entry"].as_str().unwrap()).unwrap();
        let result = merkle::verify_inclusion(
            &merkle::leaf_hash(&entry),
            case["index"].as_u64().unwrap(),
            case["size"].as_u64().unwrap(),
            &hash_list(&case["proof"]),
            &hash(&case["root"]),
        );
        assert_eq!(result.is_ok(), case["valid"].as_bool().unwrap(), "{case}");
    }
    for case in doc["consistency"].as_array().unwrap() {
        let result = merkle::verify_consistency(
            case["old_size"].as_u64().unwrap(),
            case["new_size"].as_u64().unwrap(),
            &hash(&case["old_root"]),
            &hash(&case["new_root"]),
            &hash_list(&case["proof"]),
        );
        assert_eq!(result.is_ok(), case["valid"].as_bool().unwrap(), "{case}");
    }
}

#[test]
fn checkpoint_and_bundle_cases() {
    let doc = vectors();
    let verifier =
        NoteVerifier::parse(doc["checkpoints"]["verifier_key"].as_str().unwrap()).unwrap();
    for case in doc["checkpoints"]["cases"].as_array().unwrap() {
        let result = verifier.open_checkpoint(case["note"].as_str().unwrap());
        assert_eq!(
            result.is_ok(),
            case["valid"].as_bool().unwrap(),
            "{}",
            case["name"]
        );
        if let Ok(checkpoint) = result {
            assert_eq!(checkpoint.size, case["size"].as_u64().unwrap());
            assert_eq!(checkpoint.root, hash(&case["root"]));
        }
    }
    let verifier = NoteVerifier::parse(doc["bundles"]["verifier_key"].as_str().unwrap()).unwrap();
    for case in doc["bundles"]["cases"].as_array().unwrap() {
        let bundle: ProofBundle = serde_json::from_value(case["bundle"].clone()).unwrap();
        let record_opt = (!case["record"].is_null())
            .then(|| SignedFields::from_json_bytes(case["record"].to_string().as_bytes()).unwrap());
        let got = match verify_bundle(&bundle, &verifier, record_opt.as_ref()) {
            Ok(_) => "ok",
            Err(error) => error.kind(),
        };
        assert_eq!(got, case["expect"].as_str().unwrap(), "{}", case["name"]);
    }
}

fn tree(size: u64) -> (Vec<Hash>, HashMap<NodeId, Hash>) {
    let mut frontier = Frontier::new();
    let mut store = HashMap::new();
    let mut roots = vec![frontier.root()];
    for i in 0..size {
        store.extend(frontier.append(merkle::leaf_hash(&i.to_be_bytes())));
        roots.push(frontier.root());
    }
    (roots, store)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn proofs_verify_in_random_trees(size in 1u64..=100_000, a in any::<u64>(), b in any::<u64>()) {
        let (roots, store) = tree(size);
        let index = a % size;
        let proof = merkle::inclusion_proof(index, size, &store).unwrap();
        prop_assert!(proof.len() <= 64 - size.leading_zeros() as usize);
        prop_assert_eq!(merkle::root(size, &store).unwrap(), roots[size as usize]);
        let leaf = merkle::leaf_hash(&index.to_be_bytes());
        prop_assert!(merkle::verify_inclusion(&leaf, index, size, &proof, &roots[size as usize]).is_ok());
        let other = merkle::leaf_hash(&(index + 1).to_be_bytes());
        prop_assert!(merkle::verify_inclusion(&other, index, size, &proof, &roots[size as usize]).is_err());
        let old = b % (size + 1);
        let consistency = merkle::consistency_proof(old, size, &store).unwrap();
        prop_assert!(merkle::verify_consistency(old, size, &roots[old as usize], &roots[size as usize], &consistency).is_ok());
        if old > 0 && old < size {
            let wrong = merkle::node_hash(&roots[old as usize], &roots[old as usize]);
            prop_assert!(merkle::verify_consistency(old, size, &wrong, &roots[size as usize], &consistency).is_err());
        }
    }
}
