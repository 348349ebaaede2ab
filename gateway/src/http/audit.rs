//! The audit proof API (docs/api.md, "Audit proofs"): the latest or a given signed checkpoint,
//! proof bundles for a tenant's record or leaf, consistency proofs between tree sizes, and the
//! leaf entries themselves. Everything a verifier needs to check a record offline with only the
//! log's public key (`flk audit verify`, the SDKs' `verify_bundle`).
//!
//! Tenant scope: a record or leaf of another tenant answers 404 exactly like a missing one, so a
//! tenant learns nothing about another's entries. Checkpoints and consistency proofs carry no
//! tenant data and are the same for everyone.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use events::audit_proof::ProofBundle;
use projections::StoreError;
use projections::merkle_log::{StoredCheckpoint, StoredLeaf};
use serde_json::{Value, json};

use super::AppState;
use super::status::{ApiError, ok};
use super::submit::tenant_of;

/// The parameters of a request's query string (see [`flk_http_head::query::parameters`]).
type Query = HashMap<String, String>;

fn query_of(request: &HttpRequest) -> Query {
    flk_http_head::query::parameters(request.query_string())
}

fn store_error(state: &AppState, error: StoreError) -> ApiError {
    match error {
        // Sizes and indexes are checked before the store is asked; this is a request the
        // tree cannot answer (an index beyond a size, say).
        StoreError::InvalidInput(message) => ApiError::BadQuery(message),
        error => {
            tracing::warn!(error = %error, "audit query failed");
            ApiError::Store {
                error,
                retry_after_secs: state.config.retry_after_secs,
            }
        }
    }
}

/// A size or index named `name`: a non-negative integer the store can hold (below 2^63).
fn count(name: &str, text: &str) -> Result<u64, ApiError> {
    flk_http_head::query::count(text).ok_or_else(|| {
        ApiError::BadQuery(format!(
            "{name} must be a non-negative integer, got {text:?}"
        ))
    })
}

/// The query parameter `name` as a [`count`], if given.
fn number(query: &Query, name: &str) -> Result<Option<u64>, ApiError> {
    query.get(name).map(|text| count(name, text)).transpose()
}

fn checkpoint_json(checkpoint: &StoredCheckpoint) -> Value {
    json!({
        "tree_size": checkpoint.tree_size,
        "root": BASE64.encode(checkpoint.root),
        "checkpoint": checkpoint.note,
        "created_at_ms": checkpoint.created_at_ms,
    })
}

async fn latest(state: &AppState) -> Result<StoredCheckpoint, ApiError> {
    state
        .store
        .latest_checkpoint()
        .await
        .map_err(|error| store_error(state, error))?
        .ok_or_else(|| ApiError::NoSuch("no checkpoint has been signed yet".into()))
}

async fn checkpoint_of_size(
    state: &AppState,
    tree_size: u64,
) -> Result<StoredCheckpoint, ApiError> {
    state
        .store
        .checkpoint_at(tree_size)
        .await
        .map_err(|error| store_error(state, error))?
        .ok_or_else(|| {
            ApiError::NoSuch(format!(
                "no checkpoint was signed for tree size {tree_size}"
            ))
        })
}

/// `GET /v1/audit/checkpoint`: the newest signed checkpoint.
pub async fn latest_checkpoint(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let checkpoint = latest(&state).await?;
    Ok(ok().json(checkpoint_json(&checkpoint)))
}

/// `GET /v1/audit/checkpoint/{tree_size}`: the checkpoint signed for that size.
pub async fn checkpoint(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let text = path.into_inner();
    let tree_size = count("tree_size", &text)?;
    let checkpoint = checkpoint_of_size(&state, tree_size).await?;
    Ok(ok().json(checkpoint_json(&checkpoint)))
}

/// The leaf, if it exists and belongs to `tenant` (another tenant's leaf is "not found").
fn owned(leaf_opt: Option<StoredLeaf>, tenant: &str, what: &str) -> Result<StoredLeaf, ApiError> {
    leaf_opt
        .filter(|leaf| leaf.tenant == tenant)
        .ok_or_else(|| ApiError::NoSuch(format!("{what} is not in the audit log of this tenant")))
}

/// `GET /v1/audit/proof?pcs_id=ID` or `?leaf_index=I`, optionally `&tree_size=N` (a signed
/// size; the newest by default): the proof bundle of the record's first leaf.
pub async fn proof(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_of(&request);
    let query = query_of(&request);
    let checkpoint = match number(&query, "tree_size")? {
        Some(tree_size) => checkpoint_of_size(&state, tree_size).await?,
        None => latest(&state).await?,
    };
    let leaf = match (query.get("pcs_id"), number(&query, "leaf_index")?) {
        (Some(pcs_id), None) => {
            let found = state
                .store
                .first_leaf_of(&tenant, pcs_id, checkpoint.tree_size)
                .await
                .map_err(|error| store_error(&state, error))?;
            owned(
                found,
                &tenant,
                &format!(
                    "pcs_id {pcs_id:?} (or not yet anchored at tree size {})",
                    checkpoint.tree_size
                ),
            )?
        }
        (None, Some(index)) => {
            if index >= checkpoint.tree_size {
                return Err(ApiError::BadQuery(format!(
                    "leaf_index {index} is not below tree size {}",
                    checkpoint.tree_size
                )));
            }
            let found = state
                .store
                .leaf_at(index)
                .await
                .map_err(|error| store_error(&state, error))?;
            owned(found, &tenant, &format!("leaf {index}"))?
        }
        _ => {
            return Err(ApiError::BadQuery(
                "give exactly one of pcs_id and leaf_index".into(),
            ));
        }
    };
    let inclusion = state
        .store
        .inclusion_proof(leaf.leaf_index, checkpoint.tree_size)
        .await
        .map_err(|error| store_error(&state, error))?;
    let bundle = ProofBundle {
        checkpoint: checkpoint.note,
        leaf_index: leaf.leaf_index,
        tree_size: checkpoint.tree_size,
        entry: BASE64.encode(&leaf.entry),
        inclusion: inclusion.iter().map(|hash| BASE64.encode(hash)).collect(),
    };
    Ok(ok().json(bundle))
}

/// `GET /v1/audit/consistency?old_size=A&new_size=B` (`new_size` defaults to the newest):
/// the RFC 9162 consistency proof between the two trees.
pub async fn consistency(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = query_of(&request);
    let old_size = number(&query, "old_size")?
        .ok_or_else(|| ApiError::BadQuery("old_size is required".into()))?;
    let newest = latest(&state).await?.tree_size;
    let new_size = number(&query, "new_size")?.unwrap_or(newest);
    if old_size > new_size {
        return Err(ApiError::BadQuery(format!(
            "old_size {old_size} is larger than new_size {new_size}"
        )));
    }
    if new_size > newest {
        return Err(ApiError::BadQuery(format!(
            "new_size {new_size} is beyond the newest checkpoint ({newest} leaves)"
        )));
    }
    let proof = state
        .store
        .consistency_proof(old_size, new_size)
        .await
        .map_err(|error| store_error(&state, error))?;
    Ok(ok().json(json!({
        "old_size": old_size,
        "new_size": new_size,
        "proof": proof.iter().map(|hash| BASE64.encode(hash)).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/audit/entries/{leaf_index}`: the leaf bytes (base64, as hashed) and their fields.
pub async fn entry(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_of(&request);
    let text = path.into_inner();
    let index = count("leaf_index", &text)?;
    let found = state
        .store
        .leaf_at(index)
        .await
        .map_err(|error| store_error(&state, error))?;
    let leaf = owned(found, &tenant, &format!("leaf {index}"))?;
    let fields: Value = serde_json::from_slice(&leaf.entry).unwrap_or(Value::Null);
    Ok(ok().json(json!({
        "leaf_index": leaf.leaf_index,
        "entry": BASE64.encode(&leaf.entry),
        "leaf": fields,
    })))
}
