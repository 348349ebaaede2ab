//! Named fault-injection points for tests: `FLK_FAILPOINTS="projector.before_commit=stall_once"`.
//!
//! Off unless the variable is set; a process without it pays one map lookup per hit. Actions:
//! - `error_once` / `error`: the point returns an error once / every time (the caller fails as if
//!   its dependency had failed there);
//! - `stall_once` / `stall`: the point never returns once / every time (a stuck handler, for the
//!   heartbeat watchdog).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use thiserror::Error;

/// Names of the points the code hits (so tests and code agree).
pub mod points {
    /// In the projector, after building a batch, before its Postgres transaction.
    pub const PROJECTOR_BEFORE_COMMIT: &str = "projector.before_commit";
    /// In the shard, before producing a decision.
    pub const SHARD_BEFORE_PRODUCE: &str = "shard.before_produce";
}

/// What a failpoint does when hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    ErrorOnce,
    Error,
    StallOnce,
    Stall,
}

/// An injected failure.
#[derive(Debug, Error)]
#[error("failpoint {0} fired")]
pub struct InjectedFailure(pub String);

/// The configured failpoints (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Failpoints {
    actions: Arc<Mutex<HashMap<String, Action>>>,
}

impl Failpoints {
    /// Parses `name=action[,name=action...]`; unknown actions are an error naming them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut actions = HashMap::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (name, action) = item
                .split_once('=')
                .ok_or_else(|| format!("failpoint `{item}` must be name=action"))?;
            let action = match action {
                "error_once" => Action::ErrorOnce,
                "error" => Action::Error,
                "stall_once" => Action::StallOnce,
                "stall" => Action::Stall,
                other => return Err(format!("unknown failpoint action `{other}`")),
            };
            actions.insert(name.to_owned(), action);
        }
        Ok(Failpoints {
            actions: Arc::new(Mutex::new(actions)),
        })
    }

    /// Hits the point `name`.
    pub async fn hit(&self, name: &str) -> Result<(), InjectedFailure> {
        let action_opt = {
            let mut actions = self
                .actions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match actions.get(name).copied() {
                Some(action @ (Action::ErrorOnce | Action::StallOnce)) => {
                    actions.remove(name);
                    Some(action)
                }
                other => other,
            }
        };
        match action_opt {
            None => Ok(()),
            Some(Action::Error | Action::ErrorOnce) => {
                tracing::warn!(failpoint = name, "failpoint: injected error");
                Err(InjectedFailure(name.to_owned()))
            }
            Some(Action::Stall | Action::StallOnce) => {
                tracing::warn!(failpoint = name, "failpoint: stalling");
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn once_actions_fire_once() {
        let failpoints = Failpoints::parse("a=error_once, b=error").unwrap();
        assert!(failpoints.hit("a").await.is_err());
        assert!(failpoints.hit("a").await.is_ok());
        assert!(failpoints.hit("b").await.is_err());
        assert!(failpoints.hit("b").await.is_err());
        assert!(failpoints.hit("c").await.is_ok());
        assert!(Failpoints::parse("a=explode").is_err());
        assert!(Failpoints::parse("a").is_err());
    }
}
