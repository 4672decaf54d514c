//! The state machine against a reference model: random events, crashes and restarts; the
//! stored state always equals the model's.

use std::time::{Duration, SystemTime};

use artifact_jobs::{Action, Change, Event, NewJob, State, Store};
use artifact_testkit::cache::test_id;
use proptest::prelude::*;

/// The reference: what each event does, written as rules rather than as a table.
fn model(state: State, event: Event) -> Option<State> {
    match event {
        Event::Cancel if !state.is_ended() => Some(State::Cancelled),
        Event::Start if state == State::Queued => Some(State::Running),
        Event::Due if state == State::Retrying => Some(State::Queued),
        Event::Succeed if state == State::Running => Some(State::Succeeded),
        Event::Retry if state == State::Running => Some(State::Retrying),
        Event::Fail if state == State::Running => Some(State::Failed),
        Event::Requeue if state == State::Running => Some(State::Queued),
        _ => None,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Submit,
    Apply(usize, Event),
    CrashAndRestart,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::Start),
        Just(Event::Succeed),
        Just(Event::Retry),
        Just(Event::Fail),
        Just(Event::Cancel),
        Just(Event::Due),
        Just(Event::Requeue),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Submit),
        6 => (any::<usize>(), event()).prop_map(|(k, e)| Op::Apply(k, e)),
        1 => Just(Op::CrashAndRestart),
    ]
}

/// One job of the model: its state, attempts, and its due time while retrying.
#[derive(Debug, Clone, Copy)]
struct Model {
    state: State,
    attempts: u32,
    due: Option<SystemTime>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn stored_states_follow_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut jobs = Vec::new();
        let mut models: Vec<Model> = Vec::new();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for (step, op) in ops.into_iter().enumerate() {
            let now = start + Duration::from_secs(step as u64);
            match op {
                Op::Submit => {
                    let new = NewJob {
                        action: Action::Pull,
                        id: test_id(jobs.len() as u64),
                        endpoints: vec!["http://127.0.0.1:1".into()],
                        priority: 0,
                    };
                    let (job, created) = store.submit(&[new], 1000, now).unwrap().remove(0);
                    prop_assert!(created);
                    jobs.push(job.job);
                    models.push(Model { state: State::Queued, attempts: 0, due: None });
                }
                Op::Apply(_, _) if jobs.is_empty() => {}
                Op::Apply(k, event) => {
                    let k = k % jobs.len();
                    let due = now + Duration::from_secs(60);
                    let change = Change { due: Some(due), ..Change::default() };
                    let result = store.apply(jobs[k], event, change, now);
                    match model(models[k].state, event) {
                        Some(to) => {
                            let job = result.unwrap();
                            prop_assert_eq!(job.state, to);
                            models[k].state = to;
                            models[k].attempts += u32::from(event == Event::Start);
                            models[k].due = (to == State::Retrying).then_some(due);
                        }
                        None => {
                            let err = result.unwrap_err();
                            prop_assert!(err.is_illegal_transition(), "{err}");
                        }
                    }
                }
                Op::CrashAndRestart => {
                    drop(store);
                    store = Store::open(dir.path()).unwrap();
                    store.recover(now).unwrap();
                    for m in &mut models {
                        if m.state == State::Running {
                            m.state = State::Queued;
                        }
                    }
                }
            }
            for (job, m) in jobs.iter().zip(&models) {
                let stored = store.get(*job).unwrap();
                prop_assert_eq!(stored.state, m.state, "job {}", job);
                prop_assert_eq!(stored.attempts, m.attempts, "job {}", job);
                prop_assert_eq!(stored.due, m.due, "job {}", job);
                prop_assert_eq!(stored.log.last().map(|e| e.state), Some(m.state));
            }
        }
    }
}
