//! Tests of the run.

/// A run lives in its rollout's task for as long as the rollout waits (hours at a
/// pause, a thousand at once): its state and spec are boxed so that the task's
/// resident part stays small (it was 2,976 B inline; benches/many_rollouts.rs
/// measures the whole rollout).
#[test]
fn a_run_keeps_its_large_parts_on_the_heap() {
    let size = std::mem::size_of::<super::Run>();
    assert!(size <= 512, "Run is {size} B");
}
