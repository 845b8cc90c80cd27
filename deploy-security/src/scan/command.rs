//! Running a scanner program with a deadline.

use std::ffi::OsString;
use std::io;
use std::process::Stdio;

use deploy_core::error::ErrorKind;
use deploy_core::scan::ScanError;

use super::cli::CliScannerConfig;

/// The most of a failed scanner's error output kept in [`ScanError::Failed`].
const STDERR_TAIL: usize = 4096;

/// Runs `program args…`, and returns its standard output if it exits with status 0.
///
/// A program that is not found is [`ScanError::NotInstalled`]; a non-zero exit is
/// [`ScanError::Failed`] with the end of its error output; a program still running at
/// `timeout` is killed (SIGKILL) and reaped, and the scan is [`ScanError::Timeout`].
pub(crate) async fn run(scanner: &str, config: &CliScannerConfig, args: &[OsString]) -> Result<Vec<u8>, ScanError> {
    let (program, timeout) = (&config.program, config.timeout);
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ScanError::NotInstalled {
                scanner: scanner.to_owned(),
                reason: format!("{} was not found on PATH", program.display()),
            },
            io::ErrorKind::PermissionDenied => ScanError::NotInstalled {
                scanner: scanner.to_owned(),
                reason: format!("{} is not executable", program.display()),
            },
            _ => ScanError::backend(format!("start {scanner}"), ErrorKind::Other, e),
        })?;

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let limit = config.max_output_bytes;
    // The error output drains on its own task, so that a scanner filling it never
    // blocks the report; the report is read up to the limit.
    let stderr_task = tokio::spawn(read_tail(stderr, STDERR_TAIL));
    let outcome = tokio::time::timeout(timeout, async {
        let out = read_limited(stdout, limit).await;
        if matches!(out, Ok(None)) {
            return (out, None);
        }
        (out, Some(child.wait().await))
    })
    .await;
    let Ok((stdout, status)) = outcome else {
        // Kill and reap: no zombie and no scanner left running past its deadline.
        let _ = child.kill().await;
        stderr_task.abort();
        return Err(ScanError::Timeout { scanner: scanner.to_owned(), after: timeout });
    };
    let Some(status) = status else {
        let _ = child.kill().await;
        stderr_task.abort();
        return Err(ScanError::OutputTooLarge { scanner: scanner.to_owned(), limit });
    };
    let stderr = stderr_task.await.ok().and_then(Result::ok);
    let status = status.map_err(|e| ScanError::backend(format!("wait for {scanner}"), ErrorKind::Other, e))?;
    let stdout = stdout
        .map_err(|e| ScanError::backend(format!("read {scanner} output"), ErrorKind::Other, e))?
        .unwrap_or_default();
    let stderr = stderr.unwrap_or_default();
    if !status.success() {
        let text = String::from_utf8_lossy(&stderr);
        let start = text.len().saturating_sub(STDERR_TAIL);
        let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        return Err(ScanError::Failed {
            scanner: scanner.to_owned(),
            status: status.to_string(),
            stderr: text[start..].trim().to_owned(),
        });
    }
    Ok(stdout)
}

/// All of `pipe` up to `limit` bytes; `None` as soon as it holds more.
async fn read_limited(pipe: Option<impl tokio::io::AsyncRead + Unpin>, limit: u64) -> io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::new();
    if let Some(pipe) = pipe {
        // One byte past the limit tells "exactly the limit" from "more".
        pipe.take(limit.saturating_add(1)).read_to_end(&mut buffer).await?;
    }
    Ok(if buffer.len() as u64 > limit { None } else { Some(buffer) })
}

/// The last `keep` bytes of `pipe`, read to its end in fixed chunks.
async fn read_tail(pipe: Option<impl tokio::io::AsyncRead + Unpin>, keep: usize) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut tail = std::collections::VecDeque::with_capacity(keep);
    if let Some(mut pipe) = pipe {
        let mut chunk = [0u8; 8192];
        loop {
            let n = pipe.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            tail.extend(&chunk[..n]);
            let excess = tail.len().saturating_sub(keep);
            tail.drain(..excess);
        }
    }
    Ok(tail.into())
}
