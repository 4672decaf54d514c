//! [`Downloader::repair`]: fetching again, whole, an artifact the cache quarantined, and keeping
//! the new copy only if it has the digest recorded for the old one.

use artifact_cache::{Cache, Quarantined};
use tracing::{info, warn};

use super::{Downloaded, Downloader};
use crate::Error;

impl Downloader {
    /// Fetches the quarantined artifact `quarantined.id` again into `cache` (after
    /// [`Cache::quarantine`] moved the corrupt copy out of the way) from this downloader's
    /// endpoints, verified end to end like every download, and checks that the new tree has
    /// the digest recorded for the old one at its commit.
    ///
    /// A copy with another digest is refused: it is quarantined in turn (ids name immutable
    /// content, so whoever holds it is wrong) and [`Error::DigestMismatch`] returned. When the
    /// old copy's metadata was unreadable, there is nothing to compare, and the verified
    /// download is taken as it is. If the cache already has the id again (another task or
    /// process repaired it), that copy is checked the same way.
    ///
    /// ```no_run
    /// use artifact_cache::{ArtifactId, Cache};
    /// use artifact_http::Downloader;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = Cache::open("/var/cache/artifact")?;
    /// let id: ArtifactId = "5eed".parse()?;
    /// if cache.verify(&id).is_err_and(|err| err.is_corrupt()) {
    ///     let moved = cache.quarantine(&id, "corrupt")?;
    ///     let downloader = Downloader::builder().endpoint("http://peer-a:8417").build()?;
    ///     let repaired = downloader.repair(&cache, &moved).await?;
    ///     println!("repaired from {:?}", repaired.endpoint());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[tracing::instrument(name = "repair", skip_all, fields(id = %quarantined.id), err(level = "warn"))]
    pub async fn repair(
        &self,
        cache: &Cache,
        quarantined: &Quarantined,
    ) -> Result<Downloaded, Error> {
        let id = quarantined.id;
        let downloaded = self.download(cache, &id).await?;
        let actual = downloaded.metadata().digest;
        let Some(expected) = quarantined.metadata.as_ref().map(|meta| meta.digest) else {
            info!(endpoint = downloaded.endpoint(), "repaired (no recorded digest to compare)");
            return Ok(downloaded);
        };
        if actual == expected {
            info!(endpoint = downloaded.endpoint(), "repaired");
            return Ok(downloaded);
        }
        let endpoint = downloaded.endpoint().unwrap_or("the local cache").to_owned();
        drop(downloaded);
        let reason = format!(
            "a repair fetched tree digest {actual} from {endpoint}, but {expected} was recorded"
        );
        let wait = self.inner.settings.lock_wait;
        if let Err(err) = cache.quarantine_wait(&id, &reason, wait).await {
            warn!(error = %err, "cannot quarantine the copy with the wrong digest");
        }
        Err(Error::DigestMismatch { id, endpoint, expected, actual })
    }
}
