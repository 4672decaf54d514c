//! The jobs on the server's status page: [`Jobs`] is an [`artifact_http::JobsSource`].

use std::collections::BTreeMap;

use artifact_http::{EndpointStatus, JobSummary, JobsSource, JobsStatus, JobsStatusFuture};

use crate::{Error, Jobs, State};

impl Jobs {
    /// Jobs by state, at most `listed` jobs of each unfinished state (running, retrying,
    /// queued), and the endpoints with their counters and last error.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the jobs cannot be read.
    pub async fn status(&self, listed: usize) -> Result<JobsStatus, Error> {
        let by_state = self.counts().await?.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
        let mut active = Vec::new();
        for state in [State::Running, State::Retrying, State::Queued] {
            for job in self.list(Some(state), None, listed).await? {
                active.push(JobSummary {
                    job: job.job.0,
                    action: job.action.to_string(),
                    id: job.id.to_string(),
                    state: job.state.to_string(),
                    attempts: job.attempts,
                    bytes: job.bytes,
                    endpoint: job.endpoint,
                    error: job.error,
                });
            }
        }
        let endpoints = self
            .endpoint_stats()
            .into_iter()
            .map(|(endpoint, stats)| EndpointStatus {
                endpoint: endpoint.to_string(),
                bytes: stats.bytes(),
                transfers: stats
                    .outcomes()
                    .into_iter()
                    .map(|(outcome, n)| (outcome.to_owned(), n))
                    .collect::<BTreeMap<_, _>>(),
                last_error: stats.last_error(),
            })
            .collect();
        Ok(JobsStatus { by_state, active, endpoints })
    }
}

impl JobsSource for Jobs {
    fn jobs_status(&self, listed: usize) -> JobsStatusFuture<'_> {
        Box::pin(async move { self.status(listed).await.map_err(Into::into) })
    }
}
