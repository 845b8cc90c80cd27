//! A `tracing` subscriber for tests that records every span, field and event (all
//! levels) as text, so that a test can grep a whole run for secret values: the
//! suites of every backend crate use it to prove that no secret reaches a log.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
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

impl TraceCapture {
    /// Records everything on this thread until the guard is dropped (use a
    /// current-thread runtime so that every task is polled here).
    pub fn set_default(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(Recorder { lines: Arc::clone(&self.lines), next: AtomicU64::new(0) })
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
