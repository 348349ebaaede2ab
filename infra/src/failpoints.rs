//! Named fault-injection points for tests: `FLK_FAILPOINTS="projector.before_commit=stall_once"`.
//!
//! Compiled in only with the cargo feature `failpoints` (tests and chaos builds); a release build
//! without it refuses a non-empty `FLK_FAILPOINTS` and every hit is a no-op. With the feature, a
//! process without the variable pays one map lookup per hit. Actions:
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

/// What a failpoint hit asks the caller to do (for callers that cannot await, see
/// [`Failpoints::fire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// Fail as if the dependency had failed here.
    Error,
    /// Never make progress again (a stuck handler).
    Stall,
}

/// The configured failpoints (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Failpoints {
    actions: Arc<Mutex<HashMap<String, Action>>>,
}

impl Failpoints {
    /// Parses `name=action[,name=action...]`; unknown actions are an error naming them. Without
    /// the `failpoints` feature any non-empty text is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !cfg!(feature = "failpoints") && !text.trim().is_empty() {
            return Err(
                "this build has no failpoints (build with the cargo feature `failpoints`)".into(),
            );
        }
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

    /// Hits the point `name` without waiting: what the caller must do, if anything.
    pub fn fire(&self, name: &str) -> Option<Fired> {
        match self.take(name)? {
            Action::Error | Action::ErrorOnce => {
                tracing::warn!(failpoint = name, "failpoint: injected error");
                Some(Fired::Error)
            }
            Action::Stall | Action::StallOnce => {
                tracing::warn!(failpoint = name, "failpoint: stalling");
                Some(Fired::Stall)
            }
        }
    }

    /// The action configured for `name` (a once-action is removed as it is taken).
    fn take(&self, name: &str) -> Option<Action> {
        if !cfg!(feature = "failpoints") {
            return None;
        }
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
    }

    /// Hits the point `name`: errors or never returns when the point says so.
    pub async fn hit(&self, name: &str) -> Result<(), InjectedFailure> {
        match self.fire(name) {
            None => Ok(()),
            Some(Fired::Error) => Err(InjectedFailure(name.to_owned())),
            Some(Fired::Stall) => {
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    }
}

#[cfg(all(test, feature = "failpoints"))]
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
        let stall = Failpoints::parse("s=stall_once").unwrap();
        assert_eq!(stall.fire("s"), Some(Fired::Stall));
        assert_eq!(stall.fire("s"), None);
    }
}

#[cfg(all(test, not(feature = "failpoints")))]
mod release_tests {
    use super::*;

    #[tokio::test]
    async fn a_build_without_the_feature_refuses_failpoints_and_ignores_hits() {
        assert!(Failpoints::parse("a=error").is_err());
        let none = Failpoints::parse(" ").unwrap();
        assert!(none.hit("a").await.is_ok());
        assert_eq!(none.fire("a"), None);
    }
}
