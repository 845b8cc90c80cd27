//! Reading the classic builder's output: which step runs, which came from the
//! cache, the image id, and the last lines of output for when a step fails.

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
/// assert_eq!(events.len(), 3); // two steps, one cached
/// assert_eq!((log.steps(), log.cached_steps()), (2, 1));
/// ```
#[derive(Debug, Clone)]
pub struct BuildLog {
    partial: String,
    steps: u32,
    cached: u32,
    current_step: Option<String>,
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
            self.steps += 1;
            self.current_step = Some(instruction.clone());
            events.push(BuildEvent::Step { index, total, instruction });
            return;
        }
        if let Some(marker) = line.trim_start().strip_prefix("---> ") {
            let marker = marker.trim();
            if marker == "Using cache" {
                self.cached += 1;
                events.push(BuildEvent::Cached { index: self.steps });
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
        assert_eq!(log.steps(), 4);
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
    fn step_lines_without_a_total_still_count() {
        assert_eq!(parse_step("Step 7 : RUN x"), Some((7, None, "RUN x".into())));
        assert_eq!(parse_step("Stepping out"), None);
    }
}
