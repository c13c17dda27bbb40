//! [`ReplyBody`]: the response body of both receivers, at most one data
//! frame followed by optional trailers (gRPC sends `grpc-status` there).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

/// A response body already in memory: one buffer, then trailers if any.
#[derive(Debug, Default)]
pub struct ReplyBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl ReplyBody {
    /// No body at all (a gRPC Trailers-Only answer, or an empty HTTP body).
    pub fn empty() -> Self {
        ReplyBody::default()
    }

    pub fn new(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        ReplyBody {
            data: (!data.is_empty()).then_some(data),
            trailers: None,
        }
    }

    /// `data`, then `trailers`.
    pub fn with_trailers(data: impl Into<Bytes>, trailers: HeaderMap) -> Self {
        ReplyBody {
            trailers: Some(trailers),
            ..ReplyBody::new(data)
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// A plain-text answer, for errors below OTLP (unknown path, wrong method or
/// content type) where no response encoding has been negotiated.
pub fn plain(status: StatusCode, text: &'static str) -> Response<ReplyBody> {
    let mut response = Response::new(ReplyBody::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
