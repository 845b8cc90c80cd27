//! Reading a build's progress: the classic builder's text output ([`BuildLog`]) and
//! BuildKit's vertex updates ([`BuildKitLog`]): which step runs, which came from the
//! cache, the image id, and the last lines of output for when a step fails.
//!
//! `FROM` is not counted as a step of either: it runs nothing and makes no layer, so
//! it can be neither built nor cached, and the cache hit rate
//! (`cached_steps / steps`) of an unchanged rebuild is 1.

use std::collections::VecDeque;

use deploy_core::build::BuildEvent;

/// The longest output line kept whole; the rest of a longer line is dropped (the
/// line ends with a note saying so), so a step that prints without newlines cannot
/// grow the reader's memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Turns chunks of the builder's `stream` text into [`BuildEvent`]s and keeps the
/// counts the analysis needs. Chunks may split or join lines; a partial line waits
/// for the rest, up to [`MAX_LINE_BYTES`]. Memory is bounded: the tail keeps
/// `tail_capacity` lines of at most [`MAX_LINE_BYTES`] each.
///
/// ```
/// use deploy_docker::build_log::BuildLog;
/// let mut log = BuildLog::new(10);
/// let events = log.feed("Step 1/2 : FROM scratch\n ---> \nStep 2/2 : COPY a /a\n ---> Using cache\n");
/// assert_eq!(events.len(), 3); // two step events, one cached
/// assert_eq!((log.steps(), log.cached_steps()), (1, 1)); // FROM is not a cacheable step
/// ```
#[derive(Debug, Clone)]
pub struct BuildLog {
    partial: String,
    steps: u32,
    cached: u32,
    current_step: Option<String>,
    /// The engine's number of the step running now (FROM included).
    step_index: u32,
    tail: VecDeque<String>,
    tail_capacity: usize,
    built_id: Option<String>,
    /// Dropping the rest of a line that was cut.
    skipping: bool,
}

impl BuildLog {
    /// A reader that keeps the last `tail_capacity` lines of output.
    pub fn new(tail_capacity: usize) -> Self {
        Self {
            partial: String::new(),
            steps: 0,
            cached: 0,
            current_step: None,
            step_index: 0,
            tail: VecDeque::with_capacity(tail_capacity),
            tail_capacity,
            built_id: None,
            skipping: false,
        }
    }

    /// Reads one chunk and returns the events for the complete lines in it.
    pub fn feed(&mut self, chunk: &str) -> Vec<BuildEvent> {
        let mut events = Vec::new();
        let mut chunk = chunk;
        if self.skipping {
            match chunk.find('\n') {
                Some(end) => {
                    self.skipping = false;
                    chunk = &chunk[end + 1..];
                }
                None => return events,
            }
        }
        self.partial.push_str(chunk);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.line(line.trim_end_matches(['\n', '\r']), &mut events);
        }
        if self.partial.len() > MAX_LINE_BYTES {
            let cut = (0..=MAX_LINE_BYTES).rev().find(|i| self.partial.is_char_boundary(*i)).unwrap_or(0);
            self.partial.truncate(cut);
            let line = format!("{} [line cut at {MAX_LINE_BYTES} bytes]", std::mem::take(&mut self.partial));
            self.line(&line, &mut events);
            self.skipping = true;
        }
        events
    }

    /// Reads whatever partial line is left at the end of the stream.
    pub fn finish(&mut self) -> Vec<BuildEvent> {
        let rest = std::mem::take(&mut self.partial);
        let mut events = Vec::new();
        if !rest.is_empty() {
            self.line(rest.trim_end_matches(['\n', '\r']), &mut events);
        }
        events
    }

    fn line(&mut self, line: &str, events: &mut Vec<BuildEvent>) {
        if let Some((index, total, instruction)) = parse_step(line) {
            if !is_from(&instruction) {
                self.steps += 1;
            }
            self.current_step = Some(instruction.clone());
            self.step_index = index;
            events.push(BuildEvent::Step { index, total, instruction });
            return;
        }
        if let Some(marker) = line.trim_start().strip_prefix("---> ") {
            let marker = marker.trim();
            if marker == "Using cache" {
                self.cached += 1;
                events.push(BuildEvent::Cached { index: self.step_index });
            }
            return;
        }
        if line.trim() == "--->" {
            return;
        }
        if let Some(id) = line.strip_prefix("Successfully built ") {
            self.built_id = Some(id.trim().to_owned());
        }
        if self.tail.len() == self.tail_capacity {
            self.tail.pop_front();
        }
        if self.tail_capacity > 0 {
            self.tail.push_back(line.to_owned());
        }
        events.push(BuildEvent::Output { line: line.to_owned() });
    }

    /// Steps begun so far.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Steps answered from the cache.
    pub fn cached_steps(&self) -> u32 {
        self.cached
    }

    /// The instruction of the step running now (`RUN make`), if any.
    pub fn current_step(&self) -> Option<&str> {
        self.current_step.as_deref()
    }

    /// The last lines of output, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// The short image id from `Successfully built …`, if seen.
    pub fn built_id(&self) -> Option<&str> {
        self.built_id.as_deref()
    }
}

/// Whether a Dockerfile instruction is `FROM` (any case), which runs nothing.
fn is_from(instruction: &str) -> bool {
    instruction.split_whitespace().next().is_some_and(|word| word.eq_ignore_ascii_case("FROM"))
}

/// One update of a BuildKit vertex (a node of the build graph), as the engine's
/// `moby.buildkit.trace` progress reports it. The same vertex is reported again as
/// it starts, is found in the cache, completes or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VertexUpdate<'a> {
    /// The vertex's digest: its identity across updates.
    pub digest: &'a str,
    /// `[2/3] RUN make`, `[builder 1/2] COPY . /src`, `[internal] load metadata …`.
    pub name: &'a str,
    /// Answered from the cache.
    pub cached: bool,
    /// Finished (with or without an error).
    pub completed: bool,
    /// Why it failed; empty when it did not.
    pub error: &'a str,
}

impl<'a> VertexUpdate<'a> {
    /// An update of vertex `digest` named `name` that has neither completed nor failed.
    pub fn new(digest: &'a str, name: &'a str) -> Self {
        Self { digest, name, cached: false, completed: false, error: "" }
    }

    /// Marks the update as cached.
    #[must_use]
    pub fn cached(mut self, cached: bool) -> Self {
        self.cached = cached;
        self
    }

    /// Marks the update as completed.
    #[must_use]
    pub fn completed(mut self, completed: bool) -> Self {
        self.completed = completed;
        self
    }

    /// Sets the error the vertex failed with.
    #[must_use]
    pub fn error(mut self, error: &'a str) -> Self {
        self.error = error;
        self
    }
}

/// A Dockerfile step of a BuildKit build.
#[derive(Debug, Clone)]
struct KitStep {
    digest: String,
    cached: bool,
}

/// Turns BuildKit's vertex updates and logs into [`BuildEvent`]s and keeps the
/// counts the analysis needs. Only vertices named like Dockerfile steps
/// (`[N/M] INSTRUCTION`, `[stage N/M] INSTRUCTION`) count, `FROM` excepted;
/// BuildKit's own work (`[internal] …`, `exporting to image`) does not.
///
/// ```
/// use deploy_docker::build_log::{BuildKitLog, VertexUpdate};
/// let mut log = BuildKitLog::new(10);
/// log.vertex(VertexUpdate::new("sha256:a", "[internal] load build definition from Dockerfile"));
/// log.vertex(VertexUpdate::new("sha256:b", "[1/2] COPY busybox /bin/busybox").cached(true).completed(true));
/// log.vertex(VertexUpdate::new("sha256:c", "[2/2] RUN make"));
/// assert_eq!((log.steps(), log.cached_steps()), (2, 1));
/// ```
#[derive(Debug, Clone)]
pub struct BuildKitLog {
    steps: Vec<KitStep>,
    current_step: Option<String>,
    failed: Option<(String, String)>,
    output: BuildLog,
}

impl BuildKitLog {
    /// A reader that keeps the last `tail_capacity` lines of the steps' output.
    pub fn new(tail_capacity: usize) -> Self {
        Self { steps: Vec::new(), current_step: None, failed: None, output: BuildLog::new(tail_capacity) }
    }

    /// Reads one vertex update and returns its events: a step seen for the first
    /// time, a step found in the cache.
    pub fn vertex(&mut self, update: VertexUpdate<'_>) -> Vec<BuildEvent> {
        let mut events = Vec::new();
        let Some((index, total, instruction)) = parse_kit_step(update.name) else {
            if !update.error.is_empty() && self.failed.is_none() {
                self.failed = Some((update.name.to_owned(), update.error.to_owned()));
            }
            return events;
        };
        if !update.error.is_empty() && self.failed.is_none() {
            self.failed = Some((instruction.clone(), update.error.to_owned()));
        }
        if is_from(&instruction) {
            return events;
        }
        let position = match self.steps.iter().position(|step| step.digest == update.digest) {
            Some(position) => position,
            None => {
                self.steps.push(KitStep { digest: update.digest.to_owned(), cached: false });
                events.push(BuildEvent::Step { index, total: Some(total), instruction: instruction.clone() });
                self.steps.len() - 1
            }
        };
        if !update.completed {
            self.current_step = Some(instruction);
        }
        let step = &mut self.steps[position];
        if update.cached && !step.cached {
            step.cached = true;
            events.push(BuildEvent::Cached { index });
        }
        events
    }

    /// Reads output a step printed.
    pub fn log(&mut self, bytes: &[u8]) -> Vec<BuildEvent> {
        self.output.feed(&String::from_utf8_lossy(bytes))
    }

    /// Reads whatever partial output line is left at the end of the stream.
    pub fn finish(&mut self) -> Vec<BuildEvent> {
        self.output.finish()
    }

    /// Dockerfile steps seen (`FROM` excepted).
    pub fn steps(&self) -> u32 {
        u32::try_from(self.steps.len()).unwrap_or(u32::MAX)
    }

    /// Steps answered from the cache.
    pub fn cached_steps(&self) -> u32 {
        u32::try_from(self.steps.iter().filter(|step| step.cached).count()).unwrap_or(u32::MAX)
    }

    /// The step that started last and has not completed, if any.
    pub fn current_step(&self) -> Option<&str> {
        self.current_step.as_deref()
    }

    /// The first vertex that failed, and its error.
    pub fn failed(&self) -> Option<(&str, &str)> {
        self.failed.as_ref().map(|(step, error)| (step.as_str(), error.as_str()))
    }

    /// The last lines of the steps' output, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.output.tail()
    }
}

/// `[stage 2/3] RUN make` → `(2, 3, "RUN make")`; `[internal] …` → `None`.
fn parse_kit_step(name: &str) -> Option<(u32, u32, String)> {
    let rest = name.strip_prefix('[')?;
    let (label, instruction) = rest.split_once("] ")?;
    let numbers = label.rsplit(' ').next()?;
    let (index, total) = numbers.split_once('/')?;
    Some((index.parse().ok()?, total.parse().ok()?, instruction.trim().to_owned()))
}

/// `Step 3/5 : RUN make` → `(3, Some(5), "RUN make")`.
fn parse_step(line: &str) -> Option<(u32, Option<u32>, String)> {
    let rest = line.strip_prefix("Step ")?;
    let (numbers, instruction) = rest.split_once(" : ")?;
    let (index, total) = match numbers.split_once('/') {
        Some((i, t)) => (i.trim().parse().ok()?, t.trim().parse().ok()),
        None => (numbers.trim().parse().ok()?, None),
    };
    Some((index, total, instruction.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_without_end_is_cut_and_memory_stays_bounded() {
        let mut log = BuildLog::new(3);
        let mut events = Vec::new();
        for _ in 0..1000 {
            events.extend(log.feed(&"x".repeat(10_000)));
        }
        events.extend(log.feed("tail of the long line\nStep 2/2 : RUN true\nnext\n"));
        assert!(log.partial.is_empty());
        let outputs: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                BuildEvent::Output { line } => Some(line.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(outputs.len(), 2, "the cut line once, then `next`");
        assert!(outputs[0].len() < MAX_LINE_BYTES + 64 && outputs[0].ends_with("[line cut at 65536 bytes]"));
        assert_eq!(outputs[1], "next");
        assert_eq!(log.steps(), 1);
    }

    const REAL: &str = "Step 1/4 : FROM scratch\n ---> \nStep 2/4 : COPY busybox /bin/busybox\n ---> Using cache\n ---> 1a2b3c\nStep 3/4 : RUN [\"/bin/busybox\", \"echo\", \"hi\"]\n ---> Running in 9f8e7d\nhi\nRemoving intermediate container 9f8e7d\n ---> 4d5e6f\nStep 4/4 : CMD [\"/bin/busybox\"]\n ---> Running in 0a0b0c\nRemoving intermediate container 0a0b0c\n ---> 7a8b9c\nSuccessfully built 7a8b9c\nSuccessfully tagged t:1\n";

    #[test]
    fn counts_steps_and_cache_hits_across_split_chunks() {
        let mut log = BuildLog::new(3);
        let mut events = Vec::new();
        for chunk in REAL.as_bytes().chunks(7) {
            events.extend(log.feed(std::str::from_utf8(chunk).unwrap()));
        }
        events.extend(log.finish());
        assert_eq!(log.steps(), 3, "FROM is not counted");
        assert_eq!(log.cached_steps(), 1);
        assert_eq!(log.built_id(), Some("7a8b9c"));
        assert_eq!(log.current_step(), Some("CMD [\"/bin/busybox\"]"));
        assert_eq!(
            log.tail(),
            ["Removing intermediate container 0a0b0c", "Successfully built 7a8b9c", "Successfully tagged t:1"]
        );
        assert_eq!(events[0], BuildEvent::Step { index: 1, total: Some(4), instruction: "FROM scratch".into() });
        assert!(events.contains(&BuildEvent::Cached { index: 2 }));
        assert!(events.contains(&BuildEvent::Output { line: "hi".into() }));
    }

    #[test]
    fn a_partial_last_line_is_read_at_the_end() {
        let mut log = BuildLog::new(5);
        assert!(log.feed("partial").is_empty());
        assert_eq!(log.finish(), [BuildEvent::Output { line: "partial".into() }]);
    }

    #[test]
    fn buildkit_vertices_count_dockerfile_steps_once_and_their_cache_hits() {
        let mut log = BuildKitLog::new(5);
        let mut events = Vec::new();
        for update in [
            VertexUpdate::new("sha256:0", "[internal] load remote build context"),
            VertexUpdate::new("sha256:0", "[internal] load remote build context").completed(true),
            VertexUpdate::new("sha256:f", "[builder 1/3] FROM docker.io/library/alpine:3").cached(true),
            VertexUpdate::new("sha256:1", "[builder 2/3] COPY busybox /bin/busybox"),
            VertexUpdate::new("sha256:1", "[builder 2/3] COPY busybox /bin/busybox").cached(true).completed(true),
            VertexUpdate::new("sha256:2", "[builder 3/3] RUN make"),
            VertexUpdate::new("sha256:2", "[builder 3/3] RUN make").completed(true).error("exit code: 2"),
            VertexUpdate::new("sha256:9", "exporting to image"),
        ] {
            events.extend(log.vertex(update));
        }
        events.extend(log.log(b"make: *** [all] Error 2\npartial"));
        events.extend(log.finish());
        assert_eq!((log.steps(), log.cached_steps()), (2, 1));
        assert_eq!(log.failed(), Some(("RUN make", "exit code: 2")));
        assert_eq!(log.current_step(), Some("RUN make"));
        assert_eq!(log.tail(), ["make: *** [all] Error 2", "partial"]);
        assert_eq!(
            events[..3],
            [
                BuildEvent::Step { index: 2, total: Some(3), instruction: "COPY busybox /bin/busybox".into() },
                BuildEvent::Cached { index: 2 },
                BuildEvent::Step { index: 3, total: Some(3), instruction: "RUN make".into() },
            ]
        );
        assert_eq!(parse_kit_step("[internal] load .dockerignore"), None);
        assert_eq!(parse_kit_step("[1/1] COPY a /a"), Some((1, 1, "COPY a /a".into())));
    }

    #[test]
    fn step_lines_without_a_total_still_count() {
        assert_eq!(parse_step("Step 7 : RUN x"), Some((7, None, "RUN x".into())));
        assert_eq!(parse_step("Stepping out"), None);
    }
}
