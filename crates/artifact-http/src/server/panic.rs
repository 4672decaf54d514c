//! The panic guard around every route: a handler that panics, in its call or while its
//! answer is awaited, gets `500 Service panicked` and an error in the log, as with
//! tower-http's `CatchPanic`, but every other answer's body passes as it is (`CatchPanic`
//! boxes it once more, and axum then boxes that again: two allocations per request).

use std::{
    any::Any,
    convert::Infallible,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    response::Response,
};

/// The layer of [`PanicGuard`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PanicGuardLayer;

impl<S> tower::Layer<S> for PanicGuardLayer {
    type Service = PanicGuard<S>;

    fn layer(&self, inner: S) -> PanicGuard<S> {
        PanicGuard(inner)
    }
}

/// `inner`, with its panics answered 500.
#[derive(Debug, Clone)]
pub(crate) struct PanicGuard<S>(S);

impl<S> tower::Service<Request> for PanicGuard<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Guarded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Guarded<S::Future> {
        match catch_unwind(AssertUnwindSafe(|| self.0.call(request))) {
            Ok(answer) => Guarded::Running { answer },
            Err(panic) => Guarded::Panicked { panic: Some(panic) },
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of a guarded service.
    #[project = GuardedProj]
    pub(crate) enum Guarded<F> {
        Running { #[pin] answer: F },
        Panicked { panic: Option<Box<dyn Any + Send>> },
    }
}

impl<F> Future for Guarded<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardedProj::Running { answer } => {
                match catch_unwind(AssertUnwindSafe(|| answer.poll(cx))) {
                    Ok(poll) => poll,
                    Err(panic) => Poll::Ready(Ok(panicked(&*panic))),
                }
            }
            GuardedProj::Panicked { panic } => {
                let panic = panic.take().expect("polled after it answered");
                Poll::Ready(Ok(panicked(&*panic)))
            }
        }
    }
}

/// The answer for a panic, with its message in the log.
fn panicked(panic: &(dyn Any + Send)) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    tracing::error!("Service panicked: {message}");
    let mut response = Response::new(Body::from("Service panicked"));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use tower::{Layer, ServiceExt};

    use super::*;

    async fn answer_of<S>(service: S) -> (StatusCode, String, Option<String>)
    where
        S: tower::Service<Request, Response = Response, Error = Infallible>,
    {
        let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
        let kind = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().into());
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap(), kind)
    }

    fn expected_panic() -> (StatusCode, String, Option<String>) {
        let kind = Some("text/plain; charset=utf-8".to_owned());
        (StatusCode::INTERNAL_SERVER_ERROR, "Service panicked".to_owned(), kind)
    }

    #[tokio::test]
    async fn a_panic_in_the_call_or_in_the_answer_is_a_500_and_others_pass() {
        #[allow(unreachable_code)]
        let in_call =
            tower::service_fn(|_: Request| -> std::future::Ready<Result<Response, Infallible>> {
                panic!("in the call")
            });
        assert_eq!(answer_of(PanicGuardLayer.layer(in_call)).await, expected_panic());
        let in_answer = tower::service_fn(|_: Request| async {
            if std::hint::black_box(true) {
                panic!("{}", String::from("in the answer"));
            }
            Ok::<Response, Infallible>(Response::new(Body::empty()))
        });
        assert_eq!(answer_of(PanicGuardLayer.layer(in_answer)).await, expected_panic());
        let fine = tower::service_fn(|_: Request| async {
            Ok::<_, Infallible>((StatusCode::IM_A_TEAPOT, "short and stout").into_response())
        });
        let (status, body, _) = answer_of(PanicGuardLayer.layer(fine)).await;
        assert_eq!((status, body.as_str()), (StatusCode::IM_A_TEAPOT, "short and stout"));
    }
}
