//! The job model's states and events, and the state machine: [`TRANSITIONS`], the one table
//! of every transition a job may make.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for a worker of its endpoint's pool.
    Queued,
    /// A worker is transferring it.
    Running,
    /// The last attempt failed in a way a retry may mend; queued again when its backoff ends.
    Retrying,
    /// Done: the artifact is in the cache (pull) or on the target (push).
    Succeeded,
    /// Given up: a failure no retry can mend, or the last attempt failed.
    Failed,
    /// Cancelled by a user before it ended.
    Cancelled,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 6] = [
        State::Queued,
        State::Running,
        State::Retrying,
        State::Succeeded,
        State::Failed,
        State::Cancelled,
    ];

    /// The state's name, as in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Retrying => "retrying",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    /// True for `succeeded`, `failed` and `cancelled`: no transition leaves these.
    pub fn is_ended(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`State`] or an [`Action`]: the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?}")]
pub struct ParseError {
    what: &'static str,
    text: String,
}

impl FromStr for State {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<State, ParseError> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| ParseError { what: "state", text: text.to_owned() })
    }
}

/// What happens to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A worker takes it.
    Start,
    /// The transfer succeeded.
    Succeed,
    /// The transfer failed retryably and attempts are left: wait out a backoff.
    Retry,
    /// The transfer failed for good (a failure no retry mends, or the last attempt).
    Fail,
    /// A user cancels it.
    Cancel,
    /// Its backoff has ended.
    Due,
    /// It was running when the scheduler shut down or the process died: queue it again.
    Requeue,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Event::Start => "start",
            Event::Succeed => "succeed",
            Event::Retry => "retry",
            Event::Fail => "fail",
            Event::Cancel => "cancel",
            Event::Due => "due",
            Event::Requeue => "requeue",
        })
    }
}

/// Every transition a job may make: (from, event, to). Nothing else happens; [`next`] is the
/// only reader, and the store applies nothing but what it answers.
pub const TRANSITIONS: &[(State, Event, State)] = &[
    (State::Queued, Event::Start, State::Running),
    (State::Queued, Event::Cancel, State::Cancelled),
    (State::Running, Event::Succeed, State::Succeeded),
    (State::Running, Event::Retry, State::Retrying),
    (State::Running, Event::Fail, State::Failed),
    (State::Running, Event::Cancel, State::Cancelled),
    (State::Running, Event::Requeue, State::Queued),
    (State::Retrying, Event::Due, State::Queued),
    (State::Retrying, Event::Cancel, State::Cancelled),
];

/// The state after `event` in `from`, or `None` if the table has no such transition.
pub fn next(from: State, event: Event) -> Option<State> {
    TRANSITIONS.iter().find(|(f, e, _)| *f == from && *e == event).map(|(_, _, to)| *to)
}

/// Which way a job moves artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Fetch an artifact from its sources into the local cache.
    Pull,
    /// Copy an artifact from the local cache to a target.
    Push,
}

impl Action {
    /// The action's name, as in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Action, ParseError> {
        match text {
            "pull" => Ok(Action::Pull),
            "push" => Ok(Action::Push),
            _ => Err(ParseError { what: "action", text: text.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_states_have_no_way_out_and_every_other_state_can_be_cancelled() {
        for (from, _, _) in TRANSITIONS {
            assert!(!from.is_ended(), "{from} is ended but has a transition");
        }
        for state in State::ALL {
            assert_eq!(next(state, Event::Cancel).is_some(), !state.is_ended(), "{state}");
        }
    }

    #[test]
    fn the_table_is_a_function() {
        for (i, (from, event, _)) in TRANSITIONS.iter().enumerate() {
            for (other, again, _) in &TRANSITIONS[i + 1..] {
                assert!(!(from == other && event == again), "{from} on {event} twice");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>().unwrap(), state);
            assert_eq!(serde_json::to_string(&state).unwrap(), format!("\"{state}\""));
        }
        assert_eq!("push".parse::<Action>().unwrap(), Action::Push);
        assert!("copy".parse::<Action>().is_err());
    }
}
