//! Balance, movement and lookup cost of the hot-cache placements, to choose the default.
//!
//! Run: `cargo run --release -p projections --example ring_balance`
//!
//! For 3 -> 4 nodes and 4 -> 3 nodes (the last node joins or leaves, the only change jump hash
//! supports), over 1,000,000 keys shaped like the real ones (`flk:<tenant>:<64 hex pcs_id>`), it
//! prints per placement: the fraction of keys that moved (ideal 0.25), moves that did not
//! involve the changed node (ideal 0), max/mean keys per node on 3 and on 4 nodes (ideal 1.0),
//! and nanoseconds per lookup, both for a whole lookup (SHA-256 of the key included) and for
//! the placement alone given the key's point. A last table shows how the placement alone scales
//! with the node count. Timings are the best of a few passes; they measure, nothing gates on
//! them.

use std::error::Error;
use std::hint::black_box;
use std::time::Instant;

use projections::ring::{HashRing, RingError, ring_point};
use projections::ring_algorithms::{JumpHash, Rendezvous};
use sha2::{Digest, Sha256};

/// Keys in the movement and balance tables.
const KEY_COUNT: usize = 1_000_000;
/// Distinct tenants the keys are spread over.
const TENANT_COUNT: usize = 37;
/// Timed passes per measurement; the fastest is reported (the others saw other work).
const TIMED_PASSES: usize = 3;

/// A placement to measure.
#[derive(Debug, Clone, Copy)]
enum Algorithm {
    /// [`HashRing`] with this many virtual nodes per node.
    Ring(u32),
    /// [`JumpHash`].
    Jump,
    /// [`Rendezvous`].
    Rendezvous,
}

impl Algorithm {
    fn name(self) -> String {
        match self {
            Algorithm::Ring(virtual_nodes) => format!("ring, {virtual_nodes} vnodes"),
            Algorithm::Jump => "jump".to_owned(),
            Algorithm::Rendezvous => "rendezvous".to_owned(),
        }
    }

    fn build(self, nodes: &[String]) -> Result<Placement, RingError> {
        Ok(match self {
            Algorithm::Ring(virtual_nodes) => {
                Placement::Ring(HashRing::new(nodes.to_vec(), virtual_nodes)?)
            }
            Algorithm::Jump => Placement::Jump(JumpHash::new(nodes.to_vec())?),
            Algorithm::Rendezvous => Placement::Rendezvous(Rendezvous::new(nodes.to_vec())?),
        })
    }
}

/// A built placement; one `match` per lookup costs every algorithm the same.
#[derive(Debug)]
enum Placement {
    Ring(HashRing),
    Jump(JumpHash),
    Rendezvous(Rendezvous),
}

impl Placement {
    fn node_index(&self, key: &[u8]) -> usize {
        match self {
            Placement::Ring(ring) => ring.node_index(key),
            Placement::Jump(jump) => jump.node_index(key),
            Placement::Rendezvous(rendezvous) => rendezvous.node_index(key),
        }
    }

    fn node_index_for_point(&self, point: u64) -> usize {
        match self {
            Placement::Ring(ring) => ring.node_index_for_point(point),
            Placement::Jump(jump) => jump.node_index_for_point(point),
            Placement::Rendezvous(rendezvous) => rendezvous.node_index_for_point(point),
        }
    }

    fn nodes(&self) -> &[String] {
        match self {
            Placement::Ring(ring) => ring.nodes(),
            Placement::Jump(jump) => jump.nodes(),
            Placement::Rendezvous(rendezvous) => rendezvous.nodes(),
        }
    }
}

/// `count` node ids like the hot cache's (`redis://127.0.0.1:16379`, ...).
fn node_ids(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("redis://127.0.0.1:{}", 16379 + i))
        .collect()
}

/// Keys as the hot cache builds them: prefix, tenant, 64-hex `pcs_id` (a SHA-256).
fn cache_keys() -> Vec<String> {
    (0..KEY_COUNT)
        .map(|i| {
            let pcs_id = hex::encode(Sha256::digest(i.to_le_bytes()));
            format!("flk:tenant-{:02}:{pcs_id}", i % TENANT_COUNT)
        })
        .collect()
}

/// Owner index of every key, and the best time per key of a whole lookup, in nanoseconds.
fn assign(placement: &Placement, keys: &[String]) -> (Vec<usize>, f64) {
    let mut owners = Vec::new();
    let mut best = f64::INFINITY;
    for _ in 0..TIMED_PASSES {
        let started = Instant::now();
        owners = keys
            .iter()
            .map(|key| placement.node_index(black_box(key.as_bytes())))
            .collect();
        best = best.min(started.elapsed().as_nanos() as f64 / keys.len() as f64);
    }
    (owners, best)
}

/// Best time per key of the placement alone (key already hashed), in nanoseconds.
fn placement_ns(placement: &Placement, points: &[u64]) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..TIMED_PASSES {
        let started = Instant::now();
        let mut checksum = 0usize;
        for point in points {
            checksum = checksum.wrapping_add(placement.node_index_for_point(black_box(*point)));
        }
        black_box(checksum);
        best = best.min(started.elapsed().as_nanos() as f64 / points.len() as f64);
    }
    best
}

/// Largest node load over the mean load.
fn max_over_mean(owners: &[usize], node_count: usize) -> f64 {
    let mut counts = vec![0usize; node_count];
    for owner in owners {
        if let Some(count) = counts.get_mut(*owner) {
            *count += 1;
        }
    }
    let max = counts.iter().copied().max().unwrap_or_default();
    max as f64 * node_count as f64 / owners.len() as f64
}

/// One row of a movement table.
#[derive(Debug)]
struct Row {
    /// Fraction of keys whose node changed.
    moved: f64,
    /// Moves between two nodes that were both present before and after.
    stray_moves: usize,
    /// max/mean on the 3-node placement.
    balance_three: f64,
    /// max/mean on the 4-node placement.
    balance_four: f64,
    /// Whole lookup on the 4-node placement, ns per key.
    lookup_ns: f64,
    /// Placement alone on the 4-node placement, ns per key.
    placement_ns: f64,
}

fn measure(
    algorithm: Algorithm,
    before_nodes: &[String],
    after_nodes: &[String],
    keys: &[String],
    points: &[u64],
) -> Result<Row, RingError> {
    let before = algorithm.build(before_nodes)?;
    let after = algorithm.build(after_nodes)?;
    let (before_owners, before_ns) = assign(&before, keys);
    let (after_owners, after_ns) = assign(&after, keys);
    let mut moved = 0usize;
    let mut stray_moves = 0usize;
    for (old, new) in before_owners.iter().zip(&after_owners) {
        let old_id = &before.nodes()[*old];
        let new_id = &after.nodes()[*new];
        if old_id != new_id {
            moved += 1;
            if before.nodes().contains(new_id) && after.nodes().contains(old_id) {
                stray_moves += 1;
            }
        }
    }
    let (three, four) = if before_nodes.len() == 3 {
        ((&before, &before_owners), (&after, &after_owners))
    } else {
        ((&after, &after_owners), (&before, &before_owners))
    };
    Ok(Row {
        moved: moved as f64 / keys.len() as f64,
        stray_moves,
        balance_three: max_over_mean(three.1, 3),
        balance_four: max_over_mean(four.1, 4),
        lookup_ns: if before_nodes.len() == 4 {
            before_ns
        } else {
            after_ns
        },
        placement_ns: placement_ns(four.0, points),
    })
}

fn print_table(
    title: &str,
    algorithms: &[Algorithm],
    before_nodes: &[String],
    after_nodes: &[String],
    keys: &[String],
    points: &[u64],
) -> Result<(), RingError> {
    println!("\n{title} ({} keys)", keys.len());
    println!(
        "| algorithm         | moved (ideal 0.25) | stray moves | max/mean 3 | max/mean 4 | lookup ns/key | placement ns/key |"
    );
    println!(
        "|-------------------|--------------------|-------------|------------|------------|---------------|------------------|"
    );
    for algorithm in algorithms {
        let row = measure(*algorithm, before_nodes, after_nodes, keys, points)?;
        println!(
            "| {:<17} | {:>18.4} | {:>11} | {:>10.3} | {:>10.3} | {:>13.0} | {:>16.1} |",
            algorithm.name(),
            row.moved,
            row.stray_moves,
            row.balance_three,
            row.balance_four,
            row.lookup_ns,
            row.placement_ns,
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let algorithms = [
        Algorithm::Ring(64),
        Algorithm::Ring(128),
        Algorithm::Ring(256),
        Algorithm::Ring(512),
        Algorithm::Jump,
        Algorithm::Rendezvous,
    ];
    let keys = cache_keys();
    let points: Vec<u64> = keys.iter().map(|key| ring_point(key.as_bytes())).collect();
    let three = node_ids(3);
    let four = node_ids(4);
    print_table(
        "3 -> 4 nodes (redis://127.0.0.1:16382 joins)",
        &algorithms,
        &three,
        &four,
        &keys,
        &points,
    )?;
    print_table(
        "4 -> 3 nodes (redis://127.0.0.1:16382 leaves)",
        &algorithms,
        &four,
        &three,
        &keys,
        &points,
    )?;

    println!("\nplacement alone (key already hashed), ns/key, by node count");
    let counts = [4usize, 16, 64];
    println!("| algorithm         | {:>6} | {:>6} | {:>6} |", 4, 16, 64);
    println!("|-------------------|--------|--------|--------|");
    let sample = &points[..200_000];
    for algorithm in algorithms {
        let mut cells = Vec::new();
        for count in counts {
            let placement = algorithm.build(&node_ids(count))?;
            cells.push(format!("{:>6.1}", placement_ns(&placement, sample)));
        }
        println!("| {:<17} | {} |", algorithm.name(), cells.join(" | "));
    }
    Ok(())
}
