//! Streaming answers: a channel-backed body that sends each SSE event as it is generated, and the
//! task that generates them on the simulated clock.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::generate::{done_event, Reply};

/// Small: the generator runs on the clock anyway, and backpressure stops it if the client stalls.
pub(crate) const CHANNEL_CAPACITY: usize = 16;

/// What the generator hands the body.
#[derive(Debug)]
pub(crate) enum Event {
    Data(Bytes),
    /// Abort the connection here (`Fault::CutStreamAfter`).
    Cut,
}

/// The body error that makes hyper drop the connection mid-stream, without the terminating chunk.
#[derive(Debug, thiserror::Error)]
#[error("stream cut by Fault::CutStreamAfter")]
pub(crate) struct StreamCut;

/// Every answer body: fixed bytes, or events from a generator task.
#[derive(Debug)]
pub(crate) enum SimBody {
    Full(Option<Bytes>),
    Channel {
        rx: mpsc::Receiver<Event>,
        cutting: bool,
    },
}

impl SimBody {
    pub fn full(b: Bytes) -> Self {
        SimBody::Full(Some(b))
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = StreamCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamCut>>> {
        match self.get_mut() {
            SimBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Channel { rx, cutting } => {
                if *cutting {
                    return Poll::Ready(Some(Err(StreamCut)));
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(Event::Data(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                    Poll::Ready(Some(Event::Cut)) => {
                        // hyper drops what it has buffered when the body fails, but flushes whenever
                        // the body is pending: yield once so the chunks before the cut reach the client.
                        *cutting = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            SimBody::Channel { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            SimBody::Channel { .. } => SizeHint::default(),
        }
    }
}

/// When to send what; token `t` goes out at `ttft + t * tbt`, the end at `ttft + tokens * tbt`,
/// so a stream lasts exactly as long as the same non-streaming generation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub ttft: Duration,
    pub tbt: Duration,
}

impl Timing {
    fn at(&self, start: Instant, token: u32) -> Instant {
        let offset = self
            .tbt
            .checked_mul(token)
            .and_then(|d| d.checked_add(self.ttft))
            .unwrap_or(Duration::from_secs(86_400 * 365));
        start + offset
    }
}

/// The client went away; stop generating.
struct Gone;

async fn send(tx: &mpsc::Sender<Event>, b: Bytes) -> Result<(), Gone> {
    tx.send(Event::Data(b)).await.map_err(|_| Gone)
}

/// Generates the whole event sequence into `tx`; returns the completion tokens actually sent.
///
/// Order, as Azure: prompt annotation at once; after ttft the role chunk of each choice; one
/// chunk per token and choice; a finish chunk per choice; the usage chunk if asked; `[DONE]`.
pub(crate) async fn produce(
    reply: &Reply,
    timing: Timing,
    cut_after: Option<u32>,
    tx: &mpsc::Sender<Event>,
) -> u64 {
    let mut sent = 0u64;
    let _ = generate(reply, timing, cut_after, tx, &mut sent).await;
    sent
}

async fn generate(
    reply: &Reply,
    timing: Timing,
    cut_after: Option<u32>,
    tx: &mpsc::Sender<Event>,
    sent: &mut u64,
) -> Result<(), Gone> {
    let start = Instant::now();
    send(tx, reply.annotation_event()).await?;
    pause_until(timing.at(start, 0)).await;
    for index in 0..reply.n {
        if let Some(role) = reply.role_event(index) {
            send(tx, role).await?;
        }
    }
    let mut chunks = 0u32;
    let cut_now = |chunks: u32| cut_after == Some(chunks);
    for token in 0..reply.tokens {
        pause_until(timing.at(start, token)).await;
        for index in 0..reply.n {
            if cut_now(chunks) {
                return tx.send(Event::Cut).await.map_err(|_| Gone);
            }
            send(tx, reply.token_event(index, token)).await?;
            chunks += 1;
            *sent += 1;
        }
    }
    if cut_now(chunks) {
        return tx.send(Event::Cut).await.map_err(|_| Gone);
    }
    pause_until(timing.at(start, reply.tokens)).await;
    for index in 0..reply.n {
        send(tx, reply.finish_event(index)).await?;
    }
    if let Some(usage) = reply.usage_event() {
        send(tx, usage).await?;
    }
    send(tx, done_event()).await
}

/// Waits until `at`, without touching the timer when it has passed (a zero-delay stream would
/// otherwise pay tokio's millisecond granularity on every event).
async fn pause_until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Kind;
    use serde_json::Value;

    fn reply(include_usage: bool, n: u32, tokens: u32) -> Reply {
        Reply {
            kind: Kind::Chat,
            id: "chatcmpl-t".into(),
            created: 1,
            model: "m".into(),
            n,
            tokens,
            finish_reason: "stop",
            prompt_tokens: 5,
            include_usage,
            reported_usage: None,
        }
    }

    const NOW: Timing = Timing {
        ttft: Duration::ZERO,
        tbt: Duration::ZERO,
    };

    /// Runs the generator to completion and returns its events as text (`None` marks a cut).
    async fn collect(r: Reply, cut_after: Option<u32>) -> (Vec<Option<String>>, u64) {
        let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
        let producer = tokio::spawn(async move { produce(&r, NOW, cut_after, &tx).await });
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(match e {
                Event::Data(b) => Some(String::from_utf8(b.to_vec()).unwrap()),
                Event::Cut => None,
            });
        }
        (events, producer.await.unwrap())
    }

    fn json(event: &Option<String>) -> Value {
        let s = event.as_deref().unwrap();
        serde_json::from_str(s.strip_prefix("data: ").unwrap().trim_end()).unwrap()
    }

    #[tokio::test]
    async fn sequence_with_usage() {
        let (events, sent) = collect(reply(true, 1, 3), None).await;
        assert_eq!(sent, 3);
        // annotation, role, 3 tokens, finish, usage, [DONE]
        assert_eq!(events.len(), 8);
        assert!(events.iter().all(|e| e.as_ref().unwrap().ends_with("\n\n")));
        let first = json(&events[0]);
        assert_eq!(first["choices"], serde_json::json!([]));
        assert!(first["prompt_filter_results"].is_array());
        assert_eq!(json(&events[1])["choices"][0]["delta"]["role"], "assistant");
        let text: String = events[2..5]
            .iter()
            .map(|e| {
                json(e)["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(text, "tok0 tok1 tok2 ");
        assert_eq!(json(&events[5])["choices"][0]["finish_reason"], "stop");
        for e in &events[..6] {
            assert!(
                json(e).get("usage").is_some_and(Value::is_null),
                "usage null: {e:?}"
            );
        }
        let usage = json(&events[6]);
        assert_eq!(usage["choices"], serde_json::json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 3);
        assert_eq!(events[7].as_deref(), Some("data: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn sequence_without_usage_and_several_choices() {
        let (events, sent) = collect(reply(false, 2, 2), None).await;
        assert_eq!(sent, 4);
        // annotation, 2 roles, 2x2 tokens, 2 finishes, [DONE]
        assert_eq!(events.len(), 10);
        assert!(events[..9].iter().all(|e| json(e).get("usage").is_none()));
        let indexes: Vec<u64> = events[3..7]
            .iter()
            .map(|e| json(e)["choices"][0]["index"].as_u64().unwrap())
            .collect();
        assert_eq!(indexes, vec![0, 1, 0, 1]);
        assert_eq!(events[9].as_deref(), Some("data: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn cut_after_content_chunks() {
        let (events, sent) = collect(reply(true, 1, 5), Some(2)).await;
        assert_eq!(sent, 2);
        // annotation, role, 2 tokens, then the cut and nothing more
        assert_eq!(events.len(), 5);
        assert_eq!(events[4], None);
        // A cut at exactly the token count still loses the finish chunk and [DONE].
        let (events, sent) = collect(reply(false, 1, 2), Some(2)).await;
        assert_eq!(
            (events.len(), events.last().unwrap().is_none(), sent),
            (5, true, 2)
        );
        // A cut beyond the stream never happens.
        let (events, _) = collect(reply(false, 1, 2), Some(9)).await;
        assert_eq!(events.last().unwrap().as_deref(), Some("data: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn stops_when_the_client_goes_away() {
        let (tx, mut rx) = mpsc::channel(1);
        let r = reply(false, 1, 1000);
        let producer = tokio::spawn(async move { produce(&r, NOW, None, &tx).await });
        assert!(rx.recv().await.is_some());
        drop(rx);
        assert!(producer.await.unwrap() < 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_follow_the_clock() {
        let timing = Timing {
            ttft: Duration::from_millis(50),
            tbt: Duration::from_millis(10),
        };
        let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
        let r = reply(false, 1, 3);
        let start = Instant::now();
        tokio::spawn(async move { produce(&r, timing, None, &tx).await });
        let mut at = Vec::new();
        while rx.recv().await.is_some() {
            at.push((Instant::now() - start).as_millis());
        }
        // annotation, role, tok0..tok2, finish, [DONE]
        assert_eq!(at, vec![0, 50, 50, 60, 70, 80, 80]);
    }
}
