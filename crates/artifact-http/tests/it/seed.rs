//! The original seed server (artifact-testkit's `SeedServer`: a bare tar answer, no headers,
//! 400 for a missing id): refused by default, accepted with `require_digest(false)` when the
//! stream is valid and complete, committed with the digest computed on receipt.

use artifact_http::Error;
use artifact_testkit::{assert_same_tree, cache::TempCache, seed::SeedServer};

use crate::support::{assert_absent_and_unlocked, commit_tree, fast, id, run, tar_of};

#[test]
fn a_bare_tar_is_refused_by_default_and_accepted_unverified_when_allowed() {
    run(async {
        let remote = TempCache::new();
        let meta = commit_tree(&remote, &id(1), 50_000);
        let stream = tar_of(remote.get(&id(1)).unwrap().path());
        let seed = SeedServer::start().await;
        seed.insert(&id(1).to_string(), stream.clone());

        let local = TempCache::new();
        let err = fast([seed.url()]).build().unwrap().download(&local, &id(1)).await.unwrap_err();
        assert!(err.to_string().contains("no x-artifact-digest header"), "{err}");
        assert_absent_and_unlocked(&local, &id(1)).await;

        let lenient = fast([seed.url()]).require_digest(false).build().unwrap();
        let downloaded = lenient.download(&local, &id(1)).await.unwrap();
        assert!(!downloaded.verified());
        assert_eq!(downloaded.metadata().digest, meta.digest, "the digest computed on receipt");
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
    });
}

#[test]
fn a_seed_answer_cut_short_is_fetched_whole_again() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 80_000);
        let stream = tar_of(remote.get(&id(1)).unwrap().path());
        let seed = SeedServer::start().await;
        seed.insert(&id(1).to_string(), stream.clone());
        seed.cut_next_after(stream.len() / 2);
        let lenient = fast([seed.url()]).require_digest(false).build().unwrap();
        let local = TempCache::new();
        let downloaded = lenient.download(&local, &id(1)).await.unwrap();
        assert_eq!(downloaded.resumes(), 0, "no length, no ranges: no resume");
        assert_eq!(downloaded.attempts(), 2);
        assert_eq!(downloaded.refetched_bytes(), stream.len() as u64 / 2, "the cut answer's bytes");
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
    });
}

#[test]
fn the_seeds_400_not_found_is_a_miss_only_when_allowed() {
    run(async {
        let seed = SeedServer::start().await;
        let local = TempCache::new();
        let strict = fast([seed.url()]).build().unwrap();
        let err = strict.download(&local, &id(7)).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{err:?}");
        assert!(!err.is_not_found());

        let lenient = fast([seed.url()]).require_digest(false).build().unwrap();
        let err = lenient.download(&local, &id(7)).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }) && err.is_not_found(), "{err:?}");
        assert_absent_and_unlocked(&local, &id(7)).await;
    });
}

#[test]
fn an_invalid_bare_stream_is_refused_even_when_allowed() {
    run(async {
        let seed = SeedServer::start().await;
        seed.insert(&id(2).to_string(), vec![b'x'; 3000]);
        let local = TempCache::new();
        let lenient = fast([seed.url()]).require_digest(false).attempts(1).build().unwrap();
        let err = lenient.download(&local, &id(2)).await.unwrap_err();
        assert!(matches!(err, Error::Stream { .. }), "{err:?}");
        assert_absent_and_unlocked(&local, &id(2)).await;
    });
}
