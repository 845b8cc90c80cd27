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
    let outcome = tokio::time::timeout(timeout, async {
        let (out, err, status) = tokio::join!(read_all(stdout), read_all(stderr), child.wait());
        (out, err, status)
    })
    .await;
    let Ok((stdout, stderr, status)) = outcome else {
        // Kill and reap: no zombie and no scanner left running past its deadline.
        let _ = child.kill().await;
        return Err(ScanError::Timeout { scanner: scanner.to_owned(), after: timeout });
    };
    let status = status.map_err(|e| ScanError::backend(format!("wait for {scanner}"), ErrorKind::Other, e))?;
    let stdout = stdout.map_err(|e| ScanError::backend(format!("read {scanner} output"), ErrorKind::Other, e))?;
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

async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut buffer).await?;
    }
    Ok(buffer)
}
