//! Packing a build context: the directory as an uncompressed tar stream, minus what
//! `.dockerignore` excludes, as the docker CLI sends it.
//!
//! Headers are deterministic (owner 0, a fixed modification time, mode 0644 or
//! 0755), so the same files give the same bytes and the engine's layer cache hits.
//!
//! Packing streams: file contents are copied through a fixed 256 KiB buffer into
//! the writer, and [`ChunkSender`] hands the archive on in chunks through a bounded
//! channel, so a build context of any size is packed and sent in constant memory
//! (the image builder streams it to the engine as it is packed).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::dockerignore::{DockerIgnore, PatternError};

/// A [`Write`] that hands what is written on in chunks of `chunk` bytes through a
/// bounded channel: the writer blocks while the channel is full, so at most
/// `capacity + 1` chunks exist at a time. For a blocking thread that packs a
/// context while an async task sends it ([`ChunkSender::channel`]).
#[derive(Debug)]
pub struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, io::Error>>,
    pending: Vec<u8>,
    chunk: usize,
}

impl ChunkSender {
    /// A sender of `chunk`-byte pieces over a channel of `capacity` pieces, and the
    /// receiving end.
    pub fn channel(
        chunk: usize,
        capacity: usize,
    ) -> (Self, tokio::sync::mpsc::Receiver<Result<bytes::Bytes, io::Error>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        (Self { tx, pending: Vec::with_capacity(chunk), chunk: chunk.max(1) }, rx)
    }

    /// Passes an error on to the receiver (the stream ends with it).
    pub fn fail(self, error: io::Error) {
        let _ = self.tx.blocking_send(Err(error));
    }

    fn ship(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.pending, Vec::with_capacity(self.chunk));
        self.tx
            .blocking_send(Ok(bytes::Bytes::from(full)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the receiver of the build context hung up"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.chunk - self.pending.len();
        let n = room.min(buf.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() >= self.chunk {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ship()
    }
}

/// A failure while packing a build context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The context directory does not exist or is not a directory.
    #[error("build context {path} is not a directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The Dockerfile is not in the context.
    #[error("dockerfile {path} not found in the build context")]
    DockerfileNotFound {
        /// The Dockerfile's path.
        path: PathBuf,
    },
    /// `.dockerignore` has a pattern that cannot be compiled.
    #[error(transparent)]
    Ignore(#[from] PatternError),
    /// Reading a file or writing the archive failed.
    #[error("failed to pack {path} into the build context: {source}")]
    Io {
        /// The file being packed.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// What went into a packed context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ContextStats {
    /// Regular files and symlinks packed.
    pub files: u64,
    /// Directories packed.
    pub directories: u64,
    /// Bytes of file content packed (before tar headers and padding).
    pub content_bytes: u64,
    /// Entries left out by `.dockerignore` (an excluded directory counts once).
    pub excluded: u64,
}

/// Packs `context` into `out` as a tar archive, honouring `context/.dockerignore`.
///
/// `dockerfile` is relative to the context; it must exist, and it and
/// `.dockerignore` are always packed even when excluded, because the engine needs
/// them (the docker CLI does the same). Entries are written in sorted order.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("ctx-doc-{}", std::process::id()));
/// std::fs::create_dir_all(dir.join("target"))?;
/// std::fs::write(dir.join("Dockerfile"), "FROM scratch\n")?;
/// std::fs::write(dir.join("target/big.bin"), vec![0u8; 1024])?;
/// std::fs::write(dir.join(".dockerignore"), "target\n")?;
/// let mut tar = Vec::new();
/// let stats = deploy_docker::context::pack_context(&dir, "Dockerfile".as_ref(), &mut tar)?;
/// assert_eq!(stats.files, 2); // Dockerfile and .dockerignore
/// assert_eq!(stats.excluded, 1); // target/
/// # std::fs::remove_dir_all(&dir)?; Ok(()) }
/// ```
pub fn pack_context<W: Write>(context: &Path, dockerfile: &Path, out: W) -> Result<ContextStats, ContextError> {
    if !context.is_dir() {
        return Err(ContextError::NotADirectory { path: context.to_path_buf() });
    }
    let dockerfile_path = context.join(dockerfile);
    if !dockerfile_path.is_file() {
        return Err(ContextError::DockerfileNotFound { path: dockerfile_path });
    }
    let ignore = match fs::read_to_string(context.join(".dockerignore")) {
        Ok(text) => DockerIgnore::parse(&text)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(source) => return Err(ContextError::Io { path: context.join(".dockerignore"), source }),
    };
    let always: [String; 2] = [to_slash(dockerfile), ".dockerignore".to_owned()];
    let mut packer = Packer { builder: tar::Builder::new(out), ignore, always, stats: ContextStats::default() };
    packer.builder.mode(tar::HeaderMode::Deterministic);
    packer.builder.follow_symlinks(false);
    packer.walk(context, "")?;
    packer.builder.finish().map_err(|source| ContextError::Io { path: context.to_path_buf(), source })?;
    Ok(packer.stats)
}

struct Packer<W: Write> {
    builder: tar::Builder<W>,
    ignore: DockerIgnore,
    always: [String; 2],
    stats: ContextStats,
}

/// Reads exactly `expected` bytes from a file: more are not read, fewer (the file
/// shrank while it was packed) is an error, so the tar header's size always holds.
struct ExactReader<R> {
    inner: io::Take<io::BufReader<R>>,
    left: u64,
}

impl<R: io::Read> io::Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was being packed"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl<W: Write> Packer<W> {
    fn walk(&mut self, dir: &Path, prefix: &str) -> Result<(), ContextError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ContextError::Io { path, source }
        };
        let mut entries = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .map(|entry| entry.map(|e| (e.file_name(), e)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err(dir))?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, entry) in entries {
            let Some(name) = name.to_str() else {
                return Err(ContextError::Io {
                    path: entry.path(),
                    source: io::Error::new(io::ErrorKind::InvalidData, "file name is not UTF-8"),
                });
            };
            let relative = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") };
            let path = entry.path();
            let file_type = entry.file_type().map_err(io_err(&path))?;
            let excluded = self.ignore.is_excluded(&relative) && !self.always.contains(&relative);
            if file_type.is_dir() {
                if excluded && !self.ignore.has_exceptions() {
                    self.stats.excluded += 1;
                    continue;
                }
                if !excluded {
                    self.builder.append_dir(&relative, &path).map_err(io_err(&path))?;
                    self.stats.directories += 1;
                }
                self.walk(&path, &relative)?;
            } else if excluded {
                self.stats.excluded += 1;
            } else if file_type.is_symlink() {
                let target = fs::read_link(&path).map_err(io_err(&path))?;
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                header.set_mode(0o777);
                header.set_mtime(DETERMINISTIC_MTIME);
                self.builder.append_link(&mut header, &relative, &target).map_err(io_err(&path))?;
                self.stats.files += 1;
            } else if file_type.is_file() {
                self.append_file(&path, &relative)?;
            }
        }
        Ok(())
    }

    fn append_file(&mut self, path: &Path, relative: &str) -> Result<(), ContextError> {
        let io_err = |source| ContextError::Io { path: path.to_path_buf(), source };
        let mut file = fs::File::open(path).map_err(io_err)?;
        let metadata = file.metadata().map_err(io_err)?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&metadata, tar::HeaderMode::Deterministic);
        // Streamed through a 256 KiB buffer: memory does not grow with the file.
        let size = metadata.len();
        header.set_size(size);
        let reader = ExactReader {
            inner: io::Read::take(io::BufReader::with_capacity(256 * 1024, &mut file), size),
            left: size,
        };
        self.builder.append_data(&mut header, relative, reader).map_err(io_err)?;
        self.stats.files += 1;
        self.stats.content_bytes += size;
        Ok(())
    }
}

/// The modification time `tar::HeaderMode::Deterministic` uses.
const DETERMINISTIC_MTIME: u64 = 1_153_704_088;

fn to_slash(path: &Path) -> String {
    let text = path.to_string_lossy().replace('\\', "/");
    text.trim_start_matches("./").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().trim_end_matches('/').to_owned())
            .collect()
    }

    #[test]
    fn packs_sorted_entries_and_honours_dockerignore() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("src/gen")).unwrap();
        fs::create_dir_all(root.join("target/debug")).unwrap();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        fs::write(root.join("src/gen/a.rs"), "x").unwrap();
        fs::write(root.join("src/gen/keep.rs"), "y").unwrap();
        fs::write(root.join("target/debug/app"), vec![1u8; 4096]).unwrap();
        fs::write(root.join("notes.log"), "z").unwrap();
        fs::write(root.join(".dockerignore"), "target\n*.log\nsrc/gen\n!src/gen/keep.rs\nDockerfile\n").unwrap();

        let mut tar = Vec::new();
        let stats = pack_context(root, Path::new("Dockerfile"), &mut tar).unwrap();
        assert_eq!(
            entries(&tar),
            [".dockerignore", "Dockerfile", "src", "src/gen/keep.rs", "src/main.rs"],
            "the Dockerfile is sent although ignored; excluded dirs vanish but exceptions below them stay"
        );
        assert_eq!(stats.files, 4);
        let sizes: u64 = [".dockerignore", "Dockerfile", "src/gen/keep.rs", "src/main.rs"]
            .iter()
            .map(|f| fs::metadata(root.join(f)).unwrap().len())
            .sum();
        assert_eq!(stats.content_bytes, sizes);
        assert_eq!(stats.excluded, 3, "target/, notes.log and src/gen/a.rs");
    }

    #[test]
    fn packing_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(dir.path().join("a"), "a").unwrap();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        pack_context(dir.path(), Path::new("Dockerfile"), &mut first).unwrap();
        filetime_touch(&dir.path().join("a"));
        pack_context(dir.path(), Path::new("Dockerfile"), &mut second).unwrap();
        assert_eq!(first, second);
    }

    fn filetime_touch(path: &Path) {
        let file = fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600)).unwrap();
    }

    #[test]
    fn missing_inputs_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = pack_context(&dir.path().join("nope"), Path::new("Dockerfile"), io::sink()).unwrap_err();
        assert!(matches!(err, ContextError::NotADirectory { .. }), "{err}");
        let err = pack_context(dir.path(), Path::new("Dockerfile"), io::sink()).unwrap_err();
        assert!(matches!(err, ContextError::DockerfileNotFound { .. }), "{err}");
    }

    #[test]
    fn symlinks_are_packed_as_links() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink("Dockerfile", dir.path().join("link")).unwrap();
        let mut tar = Vec::new();
        pack_context(dir.path(), Path::new("Dockerfile"), &mut tar).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let link =
            archive.entries().unwrap().map(|e| e.unwrap()).find(|e| e.path().unwrap().ends_with("link")).unwrap();
        assert_eq!(link.header().entry_type(), tar::EntryType::Symlink);
        assert_eq!(link.link_name().unwrap().unwrap(), Path::new("Dockerfile"));
    }
}
