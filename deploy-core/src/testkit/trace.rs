//! A `tracing` subscriber for tests that records every span, field and event (all
//! levels) as text, so that a test can grep a whole run for secret values: the
//! suites of every backend crate use it to prove that no secret reaches a log.
//!
//! Why not simply `tracing::subscriber::set_default`: `tracing-core` caches per call site
//! whether anyone is interested, and while a thread-scoped subscriber is the only one in
//! the process it asks the *registering thread's* default. A call site first reached by
//! a parallel test without a subscriber is then cached as "never", and the capture
//! silently misses it (a CI run recorded one line out of a whole webhook run). The
//! capture therefore installs, once per process, a global subscriber that is interested
//! in every call site "sometimes" and hands each event to the capture active on the
//! calling thread.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::{DefaultGuard, Interest};
use tracing::{Event, Metadata, Subscriber};

/// What was recorded, one line per span, field update or event.
#[derive(Clone, Default)]
pub struct TraceCapture {
    lines: Arc<Mutex<Vec<String>>>,
}

struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
    next: AtomicU64,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl Recorder {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut line = format!("span {}:", attributes.metadata().name());
        attributes.record(&mut Fields(&mut line));
        self.push(line);
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut line = "record:".to_owned();
        values.record(&mut Fields(&mut line));
        self.push(line);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = format!("event {} {}:", event.metadata().level(), event.metadata().target());
        event.record(&mut Fields(&mut line));
        self.push(line);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

thread_local! {
    /// The captures active on this thread, innermost last.
    static ACTIVE: RefCell<Vec<Arc<Recorder>>> = const { RefCell::new(Vec::new()) };
}

/// Whether this process's global subscriber is the [`Router`] (false when the test
/// binary had installed its own before the first capture).
static ROUTER: OnceLock<bool> = OnceLock::new();

/// The process-wide subscriber: interested in everything, recording only on threads
/// with an active capture.
struct Router;

impl Router {
    fn with<R>(f: impl FnOnce(&Recorder) -> R) -> Option<R> {
        let recorder = ACTIVE.try_with(|active| active.borrow().last().cloned()).ok().flatten()?;
        Some(f(&recorder))
    }
}

impl Subscriber for Router {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        ACTIVE.try_with(|active| !active.borrow().is_empty()).unwrap_or(false)
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        Router::with(|r| r.new_span(attributes)).unwrap_or_else(|| Id::from_u64(u64::MAX))
    }

    fn record(&self, id: &Id, values: &Record<'_>) {
        Router::with(|r| r.record(id, values));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        Router::with(|r| r.event(event));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Keeps a capture recording on this thread; dropping it stops the recording.
#[must_use = "the capture stops when the guard is dropped"]
pub struct CaptureGuard {
    /// Set when another global subscriber was installed first and the capture had to
    /// fall back to a thread-scoped one.
    scoped: Option<DefaultGuard>,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        if self.scoped.is_none() {
            let _ = ACTIVE.try_with(|active| active.borrow_mut().pop());
        }
    }
}

impl TraceCapture {
    /// Records everything on this thread until the guard is dropped (use a
    /// current-thread runtime so that every task is polled here).
    pub fn set_default(&self) -> CaptureGuard {
        let recorder = Arc::new(Recorder { lines: Arc::clone(&self.lines), next: AtomicU64::new(0) });
        let routed = *ROUTER.get_or_init(|| tracing::subscriber::set_global_default(Router).is_ok());
        if routed {
            ACTIVE.with(|active| active.borrow_mut().push(recorder));
            CaptureGuard { scoped: None }
        } else {
            CaptureGuard { scoped: Some(tracing::subscriber::set_default(ArcRecorder(recorder))) }
        }
    }

    /// Everything recorded so far.
    pub fn text(&self) -> String {
        self.lines.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Fails naming the secret and the line when any of `secrets` was recorded, and
    /// checks that something was recorded at all.
    ///
    /// # Panics
    ///
    /// When a secret was traced, or almost nothing was: it is an assertion.
    pub fn assert_free_of(&self, secrets: &[&str]) {
        let text = self.text();
        assert!(text.lines().count() > 3, "almost nothing was traced: {text}");
        for secret in secrets {
            if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                panic!("secret {secret:?} was traced: {line}");
            }
        }
    }
}

/// The fallback when the process already has a global subscriber.
struct ArcRecorder(Arc<Recorder>);

impl Subscriber for ArcRecorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        self.0.new_span(attributes)
    }

    fn record(&self, id: &Id, values: &Record<'_>) {
        self.0.record(id, values);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        self.0.event(event);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The failure this module exists for: another thread reaches a call site first,
    /// with no capture of its own, and the capture must still see it afterwards.
    #[test]
    fn a_call_site_first_reached_on_another_thread_is_still_captured() {
        fn site(n: u32) {
            tracing::info!(n, "shared call site");
        }
        let capture = TraceCapture::default();
        let _guard = capture.set_default();
        std::thread::spawn(|| site(1)).join().ok();
        site(2);
        let text = capture.text();
        assert!(text.contains("n=2"), "the capture missed its own thread's event: {text:?}");
        assert!(!text.contains("n=1"), "the capture recorded another thread's event: {text:?}");
    }
}
