//! Container image references (`nginx`, `ghcr.io/org/app:1.2`,
//! `localhost:5000/a/b:tag@sha256:…`) and content digests.
//!
//! The grammar is the one of the OCI distribution `reference` package, and
//! names are normalised the way Docker does it, so two spellings of the same
//! image (`nginx`, `docker.io/library/nginx:latest`) compare equal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::validation::ValidationError;

/// The field name used in image errors.
const IMAGE_FIELD: &str = "image";
/// The field name used in digest errors.
const DIGEST_FIELD: &str = "digest";
/// The field name used in tag errors (from [`ImageRef::with_tag`]).
const TAG_FIELD: &str = "tag";

/// Registry assumed when a reference names none.
const DEFAULT_REGISTRY: &str = "docker.io";
/// Docker Hub's old name, normalised to [`DEFAULT_REGISTRY`].
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
/// Namespace of Docker Hub's official images (`nginx` is `library/nginx`).
const OFFICIAL_PREFIX: &str = "library/";
/// Tag assumed when a reference has neither tag nor digest.
const DEFAULT_TAG: &str = "latest";
/// Longest `registry/repository` the distribution spec allows.
const MAX_NAME_LEN: usize = 255;
/// Longest tag the distribution spec allows.
const MAX_TAG_LEN: usize = 128;
/// The only digest algorithm supported.
const SHA256: &str = "sha256";
/// Hex digits in a sha256 digest.
const SHA256_HEX_LEN: usize = 64;

/// A content digest such as `sha256:<64 lowercase hex digits>`, which pins
/// an image to exact bytes no matter what its tags later point to.
///
/// Only `sha256` is supported (it is what every registry uses); other
/// algorithms are rejected with a clear reason rather than passed through
/// unchecked. The hex must be lowercase, as the OCI spec requires.
///
/// ```
/// use deploy_core::model::Digest;
///
/// let hex = "a".repeat(64);
/// let d = Digest::parse(&format!("sha256:{hex}")).unwrap();
/// assert_eq!(d.algorithm(), "sha256");
/// assert_eq!(d.hex(), hex);
/// assert_eq!(d.to_string(), format!("sha256:{hex}"));
///
/// let err = Digest::parse("sha512:abc").unwrap_err();
/// assert_eq!(err.field, "digest");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    /// `sha256:<hex>`, validated.
    text: String,
}

impl Digest {
    /// Validates `input` as `sha256:<64 lowercase hex>`; the same as
    /// [`str::parse`]. Errors name the field `"digest"`.
    pub fn parse(input: &str) -> Result<Digest, ValidationError> {
        match check_digest(input) {
            Ok(()) => Ok(Digest { text: input.to_owned() }),
            Err(reason) => Err(ValidationError::new(DIGEST_FIELD, input, reason)),
        }
    }

    /// The hash algorithm, currently always `"sha256"`.
    pub fn algorithm(&self) -> &str {
        self.text.split_once(':').map_or(SHA256, |(alg, _)| alg)
    }

    /// The hash itself, as lowercase hex without the algorithm prefix.
    pub fn hex(&self) -> &str {
        self.text.split_once(':').map_or("", |(_, hex)| hex)
    }

    /// The whole digest, `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Why `input` is not a supported digest, if it is not one.
fn check_digest(input: &str) -> Result<(), String> {
    if input.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let Some((algorithm, hex)) = input.split_once(':') else {
        return Err("must look like sha256:<64 hex digits>".to_owned());
    };
    if algorithm != SHA256 {
        return Err(format!("uses unsupported algorithm {algorithm:?} (only sha256 is supported)"));
    }
    if let Some(c) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(format!("must use only lowercase hex digits 0-9 and a-f after \"sha256:\" (found {c:?})"));
    }
    if hex.len() != SHA256_HEX_LEN {
        return Err(format!("must have exactly {SHA256_HEX_LEN} hex digits after \"sha256:\" (got {})", hex.len()));
    }
    Ok(())
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Digest {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Digest::parse(&value)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> Self {
        d.text
    }
}

/// A validated, normalised container image reference:
/// `registry/repository[:tag][@digest]`.
///
/// Parsing follows the OCI distribution reference grammar and then
/// normalises the way Docker does, so every `ImageRef` names its registry
/// explicitly and two spellings of one image compare equal:
///
/// * no registry → `docker.io` (`index.docker.io` also becomes `docker.io`);
/// * a one-part Docker Hub repository → `library/<name>`;
/// * neither tag nor digest → tag `latest`.
///
/// A leading `host/` counts as the registry only if it contains `.` or `:`
/// or is `localhost`; otherwise it is the first part of the repository.
/// Repositories must be lowercase; tags are at most 128 characters; digests
/// must be `sha256:` with 64 lowercase hex digits; `registry/repository` is
/// at most 255 characters.
///
/// [`Display`](fmt::Display) prints the full normalised form and
/// [`familiar`](Self::familiar) the short form Docker shows; both parse back
/// to the same `ImageRef`.
///
/// ```
/// use deploy_core::model::ImageRef;
///
/// let nginx = ImageRef::parse("nginx").unwrap();
/// assert_eq!(nginx.registry(), "docker.io");
/// assert_eq!(nginx.repository(), "library/nginx");
/// assert_eq!(nginx.tag(), Some("latest"));
/// assert_eq!(nginx.to_string(), "docker.io/library/nginx:latest");
/// assert_eq!(nginx.familiar(), "nginx:latest");
/// assert_eq!("docker.io/library/nginx:latest".parse::<ImageRef>().unwrap(), nginx);
///
/// let hex = "0".repeat(64);
/// let local = ImageRef::parse(&format!("localhost:5000/a/b:tag@sha256:{hex}")).unwrap();
/// assert_eq!(local.registry(), "localhost:5000");
/// assert_eq!(local.repository(), "a/b");
/// assert_eq!(local.tag(), Some("tag"));
/// assert_eq!(local.digest().map(|d| d.hex()), Some(hex.as_str()));
///
/// let err = ImageRef::parse("Nginx").unwrap_err();
/// assert_eq!(err.field, "image");
/// assert!(err.reason.contains("lowercase"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    /// Registry host with optional port, e.g. `docker.io`, `localhost:5000`.
    registry: String,
    /// Repository path inside the registry, e.g. `library/nginx`.
    repository: String,
    /// Tag, if any; always present when `digest` is absent.
    tag: Option<String>,
    /// Digest, if pinned.
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and normalises a reference such as `nginx`, `nginx:1.25`,
    /// `ghcr.io/org/app@sha256:…` or `localhost:5000/a/b:tag@sha256:…`; the
    /// same as [`str::parse`]. Errors name the field `"image"` and carry the
    /// whole input.
    pub fn parse(input: &str) -> Result<ImageRef, ValidationError> {
        parse_image(input).map_err(|reason| ValidationError::new(IMAGE_FIELD, input, reason))
    }

    /// The registry host (with port, if any), e.g. `"docker.io"` or
    /// `"localhost:5000"`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `"library/nginx"`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, e.g. `Some("latest")`; `None` only for references pinned by
    /// digest alone.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference is pinned to exact content.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same image with tag `tag` (any digest is kept, as Docker does).
    /// Errors name the field `"tag"` if `tag` is not a valid tag.
    ///
    /// ```
    /// use deploy_core::model::ImageRef;
    ///
    /// let img = ImageRef::parse("nginx").unwrap().with_tag("1.25").unwrap();
    /// assert_eq!(img.to_string(), "docker.io/library/nginx:1.25");
    /// assert_eq!(img.with_tag("bad tag").unwrap_err().field, "tag");
    /// ```
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef, ValidationError> {
        check_tag(tag).map_err(|reason| ValidationError::new(TAG_FIELD, tag, reason))?;
        Ok(ImageRef { tag: Some(tag.to_owned()), ..self.clone() })
    }

    /// The same image pinned to `digest` (any tag is kept, as Docker does;
    /// the digest is what a runtime pulls).
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef { digest: Some(digest), ..self.clone() }
    }

    /// `registry/repository`, without tag or digest, e.g.
    /// `"docker.io/library/nginx"`: what identifies the image's repository,
    /// e.g. for registry credentials or policy lookups.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker shows users: `docker.io/` and `library/` are
    /// left out where that is unambiguous (`"nginx:latest"`,
    /// `"org/app:1.0"`); other registries are kept
    /// (`"localhost:5000/a/b:tag"`). Parses back to the same `ImageRef`.
    pub fn familiar(&self) -> String {
        let mut out = if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix(OFFICIAL_PREFIX) {
                Some(official) if !official.contains('/') => official.to_owned(),
                _ => {
                    // Keep the registry if the first path component would
                    // otherwise be read back as a registry.
                    let first = self.repository.split('/').next().unwrap_or_default();
                    if looks_like_registry(first) { self.name() } else { self.repository.clone() }
                }
            }
        } else {
            self.name()
        };
        self.push_suffix(&mut out);
        out
    }

    /// Appends `:tag` and `@digest` where present.
    fn push_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_str());
        }
    }
}

/// Whether a first path component is read as a registry host.
fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// Parses and normalises `input`, or says why it is invalid.
fn parse_image(input: &str) -> Result<ImageRef, String> {
    if input.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if input.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".to_owned());
    }
    if input.len() == SHA256_HEX_LEN && input.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(
            "looks like an image ID (64 hex digits), not a repository name; pin by digest with name@sha256:<id>"
                .to_owned(),
        );
    }

    let (rest, digest) = match input.split_once('@') {
        Some((rest, digest)) => {
            check_digest(digest).map_err(|reason| format!("digest {reason}"))?;
            (rest, Some(Digest { text: digest.to_owned() }))
        }
        None => (input, None),
    };

    // A ':' after the last '/' starts the tag; one before it belongs to a
    // registry port.
    let (name, tag) = match rest.rfind(':') {
        Some(colon) if rest.rfind('/').is_none_or(|slash| colon > slash) => {
            let tag = &rest[colon + 1..];
            check_tag(tag).map_err(|reason| format!("tag {reason}"))?;
            (&rest[..colon], Some(tag))
        }
        _ => (rest, None),
    };
    if name.is_empty() {
        return Err("must have a repository name before ':' or '@'".to_owned());
    }

    let (registry, path) = match name.split_once('/') {
        Some((first, path)) if looks_like_registry(first) => (Some(first), path),
        _ => (None, name),
    };
    if let Some(registry) = registry {
        check_registry(registry)?;
    }
    if path.is_empty() {
        return Err("must have a repository path after the registry".to_owned());
    }
    check_repository(path)?;

    let registry = match registry {
        None | Some(LEGACY_DEFAULT_REGISTRY) => DEFAULT_REGISTRY,
        Some(r) => r,
    };
    let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
        format!("{OFFICIAL_PREFIX}{path}")
    } else {
        path.to_owned()
    };
    let name_len = registry.len() + 1 + repository.len();
    if name_len > MAX_NAME_LEN {
        return Err(format!(
            "name {registry}/{} is too long ({name_len} characters; at most {MAX_NAME_LEN})",
            Short(&repository)
        ));
    }
    let tag = match (tag, &digest) {
        (None, None) => Some(DEFAULT_TAG.to_owned()),
        (tag, _) => tag.map(str::to_owned),
    };
    Ok(ImageRef { registry: registry.to_owned(), repository, tag, digest })
}

/// Shows at most the first 40 characters of a part inside a reason.
struct Short<'a>(&'a str);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(40) {
            Some((cut, _)) => write!(f, "{}…", &self.0[..cut]),
            None => f.write_str(self.0),
        }
    }
}

/// Why `tag` is not a valid tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
fn check_tag(tag: &str) -> Result<(), String> {
    let Some(first) = tag.chars().next() else {
        return Err("must not be empty".to_owned());
    };
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if let Some(c) = tag.chars().find(|&c| !(is_word(c) || c == '.' || c == '-')) {
        return Err(format!("may contain only letters, digits, '_', '.' and '-' (found {c:?})"));
    }
    if !is_word(first) {
        return Err(format!("must start with a letter, digit or '_' (found {first:?})"));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("must be at most {MAX_TAG_LEN} characters long (got {})", tag.len()));
    }
    Ok(())
}

/// Why `registry` is not `host[:port]`, if it is not.
fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = if let Some(ipv6) = registry.strip_prefix('[') {
        let Some((addr, after)) = ipv6.split_once(']') else {
            return Err(format!("registry {registry:?} is missing the closing ']'"));
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!(
                "registry {registry:?} has an invalid IPv6 address (hex digits and ':' inside brackets)"
            ));
        }
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None if after.is_empty() => (None, None),
            None => {
                return Err(format!("registry {registry:?} has unexpected text after the IPv6 address"));
            }
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        for label in host.split('.') {
            let bytes = label.as_bytes();
            let valid = match (bytes.first(), bytes.last()) {
                (Some(first), Some(last)) => {
                    first.is_ascii_alphanumeric()
                        && last.is_ascii_alphanumeric()
                        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                }
                _ => false,
            };
            if !valid {
                return Err(format!(
                    "registry host {:?} is not a valid host name (dot-separated labels of letters, digits and '-', each starting and ending with a letter or digit)",
                    Short(host).to_string()
                ));
            }
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("registry {:?} has an invalid port (must be digits)", Short(registry).to_string()));
    }
    Ok(())
}

/// Why `path` is not a valid repository path, if it is not: `/`-separated
/// components of lowercase alphanumerics joined by `.`, `_`, `__` or dashes.
fn check_repository(path: &str) -> Result<(), String> {
    let shown = || Short(path).to_string();
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository {:?} must be lowercase", shown()));
    }
    if let Some(c) = path.chars().find(|&c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '/')) {
        return Err(format!(
            "repository {:?} contains {c:?}; only a-z, 0-9, '.', '_', '-' and '/' are allowed",
            shown()
        ));
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(format!("repository {:?} has an empty path component", shown()));
        }
        check_component(component)
            .map_err(|why| format!("repository path component {:?} {why}", Short(component).to_string()))?;
    }
    Ok(())
}

/// Checks one non-empty component made only of `[a-z0-9._-]`: alphanumeric
/// runs separated by exactly `.`, `_`, `__` or one or more `-`.
fn check_component(component: &str) -> Result<(), String> {
    let is_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    if !bytes.first().is_some_and(is_alnum) {
        return Err("must start with a lowercase letter or digit".to_owned());
    }
    if !bytes.last().is_some_and(is_alnum) {
        return Err("must end with a lowercase letter or digit".to_owned());
    }
    for separator in component.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        let valid =
            separator.is_empty() || matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return Err(format!(
                "has separator {separator:?}; use '.', '_', '__' or dashes between letters and digits"
            ));
        }
    }
    Ok(())
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl TryFrom<String> for ImageRef {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        ImageRef::parse(&value)
    }
}

impl TryFrom<&str> for ImageRef {
    type Error = ValidationError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        ImageRef::parse(value)
    }
}

impl From<ImageRef> for String {
    fn from(image: ImageRef) -> Self {
        image.to_string()
    }
}

#[cfg(test)]
mod tests;
