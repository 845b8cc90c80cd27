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
mod tests {
    use super::super::validation::assert_names_field_and_value;
    use super::*;
    use proptest::prelude::*;

    fn hex64() -> String {
        "0123456789abcdef".repeat(4)
    }

    fn img(s: &str) -> ImageRef {
        match ImageRef::parse(s) {
            Ok(i) => i,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn rejected(s: &str, reason: &str) {
        let err = ImageRef::parse(s).unwrap_err();
        assert_names_field_and_value(&err, "image", s);
        assert!(err.reason.contains(reason), "{s:?}: {err}");
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
            ("nginx:1.25", "docker.io/library/nginx:1.25", "nginx:1.25"),
            ("library/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
            ("docker.io/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
            ("index.docker.io/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
            ("org/app", "docker.io/org/app:latest", "org/app:latest"),
            ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
            ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1", "ghcr.io/org/app:v1"),
            ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
            ("localhost", "docker.io/library/localhost:latest", "localhost:latest"),
            ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
            ("localhost:5000/a/b:tag", "localhost:5000/a/b:tag", "localhost:5000/a/b:tag"),
            ("Registry.Example.COM/app", "Registry.Example.COM/app:latest", "Registry.Example.COM/app:latest"),
            ("[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app:latest"),
            ("[fe80::1]/app", "[fe80::1]/app:latest", "[fe80::1]/app:latest"),
            ("docker.io/foo.bar/baz", "docker.io/foo.bar/baz:latest", "docker.io/foo.bar/baz:latest"),
            ("docker.io/localhost/baz", "docker.io/localhost/baz:latest", "docker.io/localhost/baz:latest"),
            ("a--b/c__d/e.f_g", "docker.io/a--b/c__d/e.f_g:latest", "a--b/c__d/e.f_g:latest"),
            ("app:_V1.2-rc", "docker.io/library/app:_V1.2-rc", "app:_V1.2-rc"),
            ("foo.bar/baz", "foo.bar/baz:latest", "foo.bar/baz:latest"),
            ("foo.bar", "docker.io/library/foo.bar:latest", "foo.bar:latest"),
        ];
        for (input, full, familiar) in cases {
            let i = img(input);
            assert_eq!(i.to_string(), full, "{input}");
            assert_eq!(i.familiar(), familiar, "{input}");
            assert_eq!(img(full), i, "{input}");
            assert_eq!(img(familiar), i, "{input}");
        }
    }

    #[test]
    fn accessors() {
        let i = img("nginx");
        assert_eq!(i.registry(), "docker.io");
        assert_eq!(i.repository(), "library/nginx");
        assert_eq!(i.tag(), Some("latest"));
        assert_eq!(i.digest(), None);
        assert_eq!(i.name(), "docker.io/library/nginx");
    }

    #[test]
    fn tag_and_digest_together() {
        let input = format!("localhost:5000/a/b:tag@sha256:{}", hex64());
        let i = img(&input);
        assert_eq!(i.registry(), "localhost:5000");
        assert_eq!(i.repository(), "a/b");
        assert_eq!(i.tag(), Some("tag"));
        let d = i.digest().unwrap();
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.hex(), hex64());
        assert_eq!(i.to_string(), input);
        assert_eq!(i.familiar(), input);
        assert_eq!(i.name(), "localhost:5000/a/b");
    }

    #[test]
    fn digest_only_has_no_tag() {
        let i = img(&format!("nginx@sha256:{}", hex64()));
        assert_eq!(i.tag(), None);
        assert_eq!(i.to_string(), format!("docker.io/library/nginx@sha256:{}", hex64()));
        assert_eq!(i.familiar(), format!("nginx@sha256:{}", hex64()));
    }

    #[test]
    fn with_tag_and_digest() {
        let d = Digest::parse(&format!("sha256:{}", hex64())).unwrap();
        let i = img("nginx").with_digest(d.clone());
        assert_eq!(i.tag(), Some("latest"));
        assert_eq!(i.digest(), Some(&d));
        let t = i.with_tag("1.25").unwrap();
        assert_eq!(t.tag(), Some("1.25"));
        assert_eq!(t.digest(), Some(&d));
        assert_eq!(img(&t.to_string()), t);

        let err = i.with_tag(&"a".repeat(129)).unwrap_err();
        assert_names_field_and_value(&err, "tag", &"a".repeat(129));
        assert!(err.reason.contains("at most 128"), "{err}");
        assert!(i.with_tag("").is_err());
        assert!(i.with_tag("-x").is_err());
        assert!(i.with_tag("a:b").is_err());
        assert_eq!(i.with_tag(&"a".repeat(128)).unwrap().tag().map(str::len), Some(128));
    }

    #[test]
    fn tag_length_limit() {
        let ok = format!("nginx:{}", "a".repeat(128));
        assert_eq!(img(&ok).tag().map(str::len), Some(128));
        rejected(&format!("nginx:{}", "a".repeat(129)), "at most 128");
    }

    #[test]
    fn uppercase_repository_is_invalid() {
        rejected("Nginx", "must be lowercase");
        rejected("ghcr.io/Org/app", "must be lowercase");
        rejected("MyRegistry/app", "must be lowercase");
        rejected("localhost:5000/a/B:tag", "must be lowercase");
        // Tags and registries may be upper-case.
        img("nginx:LATEST");
        img("GHCR.io/org/app");
    }

    #[test]
    fn invalid_references() {
        let hex = hex64();
        rejected("", "must not be empty");
        rejected(" nginx", "whitespace");
        rejected("nginx ", "whitespace");
        rejected(&hex, "image ID");
        rejected("nginx:", "tag must not be empty");
        rejected("nginx:-x", "tag must start with");
        rejected("nginx:a/b", "invalid port"); // "nginx:a" is read as a registry
        rejected("nginx:a+b", "tag may contain only");
        rejected(":tag", "repository name before");
        rejected("@sha256:abc", "digest must have exactly 64");
        rejected(&format!("@sha256:{hex}"), "repository name before");
        rejected("nginx@", "digest must not be empty");
        rejected("nginx@sha256:abc", "digest must have exactly 64");
        rejected(&format!("nginx@sha256:{}", hex.to_uppercase()), "lowercase hex");
        rejected(&format!("nginx@sha512:{hex}{hex}"), "unsupported algorithm \"sha512\"");
        rejected(&format!("nginx@sha256:{hex}@sha256:{hex}"), "lowercase hex digits");
        rejected("nginx@latest", "sha256:<64 hex digits>");
        rejected("a//b", "empty path component");
        rejected("a/", "empty path component");
        rejected("/a", "empty path component");
        rejected("localhost/", "repository path after the registry");
        rejected("-a", "must start with");
        rejected("a-", "must end with");
        rejected("a___b", "separator \"___\"");
        rejected("a..b", "separator \"..\"");
        rejected("a._b", "separator \"._\"");
        rejected("a/.b", "must start with");
        rejected("a$b", "contains '$'");
        rejected("ngïnx", "contains 'ï'");
        rejected("foo_bar.com/app", "not a valid host name");
        rejected("-foo.com/app", "not a valid host name");
        rejected("foo-.com/app", "not a valid host name");
        rejected("foo..com/app", "not a valid host name");
        rejected(".foo/app", "not a valid host name");
        rejected("foo.com:/app", "invalid port");
        rejected("foo.com:80a/app", "invalid port");
        rejected("foo.com:80:90/app", "invalid port");
        rejected("[::1/app", "closing ']'");
        rejected("[]:5000/app", "invalid IPv6");
        rejected("[::g]/app", "invalid IPv6");
        rejected("[::1]x/app", "after the IPv6");
    }

    #[test]
    fn name_length_limit() {
        // docker.io/library/ is 18 characters of the 255.
        let ok = "a".repeat(255 - 18);
        assert_eq!(img(&ok).name().len(), 255);
        rejected(&"a".repeat(255 - 17), "too long");
        let long = format!("registry.example.com/{}", "b".repeat(235));
        rejected(&long, "too long (256 characters");
    }

    #[test]
    fn long_values_are_truncated_in_messages() {
        let input = format!("{}:{}", "Aa".repeat(200), "t".repeat(300));
        let err = ImageRef::parse(&input).unwrap_err();
        assert_eq!(err.value, input);
        assert!(err.to_string().len() < 400, "{err}");
    }

    #[test]
    fn digest_type() {
        let text = format!("sha256:{}", hex64());
        let d: Digest = text.parse().unwrap();
        assert_eq!(d.as_str(), text);
        assert_eq!(d.to_string(), text);
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.hex(), hex64());
        for (bad, reason) in [
            ("", "must not be empty"),
            ("sha256", "must look like"),
            ("sha256:", "exactly 64"),
            ("SHA256:abc", "unsupported algorithm"),
            ("md5:abc", "unsupported algorithm"),
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert_names_field_and_value(&err, "digest", bad);
            assert!(err.reason.contains(reason), "{bad:?}: {err}");
        }
        let err = Digest::parse(&format!("sha256:{}0", hex64())).unwrap_err();
        assert!(err.reason.contains("got 65"), "{err}");
    }

    #[test]
    fn serde() {
        let i = img("nginx");
        let json = serde_json::to_string(&i).unwrap();
        assert_eq!(json, "\"docker.io/library/nginx:latest\"");
        assert_eq!(serde_json::from_str::<ImageRef>(&json).unwrap(), i);
        assert_eq!(serde_json::from_str::<ImageRef>("\"nginx\"").unwrap(), i);
        let err = serde_json::from_str::<ImageRef>("\"Nginx\"").unwrap_err();
        assert!(err.to_string().contains("invalid image \"Nginx\""), "{err}");

        let d = Digest::parse(&format!("sha256:{}", hex64())).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"sha256:{}\"", hex64()));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:x\"").is_err());
    }

    /// Registry hosts (with optional port) from the grammar.
    fn registry_strategy() -> impl Strategy<Value = String> {
        let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?";
        prop_oneof![
            Just("localhost".to_owned()),
            Just("docker.io".to_owned()),
            Just("index.docker.io".to_owned()),
            "localhost:[0-9]{1,5}",
            "\\[[0-9a-fA-F]{0,4}:[0-9a-fA-F:]{1,10}\\](:[0-9]{1,5})?",
            (proptest::collection::vec(label, 2..4), proptest::option::of("[0-9]{1,5}")).prop_map(|(labels, port)| {
                match port {
                    Some(p) => format!("{}:{p}", labels.join(".")),
                    None => labels.join("."),
                }
            }),
            (label, "[0-9]{1,5}").prop_map(|(host, port)| format!("{host}:{port}")),
        ]
    }

    /// Repository paths from the grammar.
    fn path_strategy() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-z0-9]{1,5}(([._]|__|-{1,3})[a-z0-9]{1,5}){0,2}", 1..4)
    }

    prop_compose! {
        fn reference()(
            registry in proptest::option::of(registry_strategy()),
            path in path_strategy(),
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            digest in proptest::option::of("[0-9a-f]{64}"),
        ) -> (Option<String>, Vec<String>, Option<String>, Option<String>) {
            (registry, path, tag, digest)
        }
    }

    proptest! {
        #[test]
        fn grammar_round_trips((registry, path, tag, digest) in reference()) {
            let mut input = String::new();
            if let Some(r) = &registry {
                input.push_str(r);
                input.push('/');
            }
            input.push_str(&path.join("/"));
            if let Some(t) = &tag {
                input.push(':');
                input.push_str(t);
            }
            if let Some(d) = &digest {
                input.push_str("@sha256:");
                input.push_str(d);
            }
            // Without a registry, a dotted first component is read as one.
            let ambiguous = registry.is_none() && path.len() > 1 && looks_like_registry(&path[0]);
            let parsed = ImageRef::parse(&input);
            if ambiguous {
                return Ok(());
            }
            prop_assert!(parsed.is_ok(), "{input}: {parsed:?}");
            let parsed = parsed.unwrap();

            let expected_registry = match registry.as_deref() {
                None | Some("index.docker.io") => "docker.io",
                Some(r) => r,
            };
            prop_assert_eq!(parsed.registry(), expected_registry);
            let joined = path.join("/");
            if expected_registry == "docker.io" && path.len() == 1 {
                prop_assert_eq!(parsed.repository(), format!("library/{joined}"));
            } else {
                prop_assert_eq!(parsed.repository(), joined);
            }
            match (&tag, &digest) {
                (None, None) => prop_assert_eq!(parsed.tag(), Some("latest")),
                (t, _) => prop_assert_eq!(parsed.tag(), t.as_deref()),
            }
            prop_assert_eq!(parsed.digest().map(Digest::hex), digest.as_deref());

            prop_assert_eq!(&parsed.to_string().parse::<ImageRef>().unwrap(), &parsed);
            prop_assert_eq!(&parsed.familiar().parse::<ImageRef>().unwrap(), &parsed);
            let json = serde_json::to_string(&parsed).unwrap();
            prop_assert_eq!(&serde_json::from_str::<ImageRef>(&json).unwrap(), &parsed);
            if let Some(d) = parsed.digest() {
                let json = serde_json::to_string(d).unwrap();
                prop_assert_eq!(&serde_json::from_str::<Digest>(&json).unwrap(), d);
                prop_assert_eq!(&d.to_string().parse::<Digest>().unwrap(), d);
            }
        }

        #[test]
        fn tags_follow_the_grammar(tag in "[A-Za-z0-9_.-]{0,135}") {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && !tag.starts_with(['.', '-']);
            let result = ImageRef::parse(&format!("nginx:{tag}"));
            prop_assert_eq!(result.is_ok(), valid, "{:?}", result);
        }

        #[test]
        fn path_components_follow_the_grammar(c in "[a-z0-9._-]{1,12}") {
            // Reference check: alnum runs separated by ".", "_", "__" or "-"+.
            let bytes = c.as_bytes();
            let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            let mut valid = alnum(bytes[0]) && alnum(bytes[bytes.len() - 1]);
            let mut i = 0;
            while valid && i < bytes.len() {
                if alnum(bytes[i]) { i += 1; continue; }
                let start = i;
                while i < bytes.len() && !alnum(bytes[i]) { i += 1; }
                let sep = &c[start..i];
                valid = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
            }
            let result = ImageRef::parse(&format!("org/{c}"));
            prop_assert_eq!(result.is_ok(), valid, "{:?}", result);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".*") {
            match ImageRef::parse(&s) {
                Ok(i) => prop_assert_eq!(i.to_string().parse::<ImageRef>().unwrap(), i),
                Err(e) => assert_names_field_and_value(&e, "image", &s),
            }
            if let Err(e) = Digest::parse(&s) {
                assert_names_field_and_value(&e, "digest", &s);
            }
        }

        #[test]
        fn arbitrary_printable_strings_never_panic(s in "\\PC*") {
            match ImageRef::parse(&s) {
                Ok(i) => prop_assert_eq!(i.to_string().parse::<ImageRef>().unwrap(), i),
                Err(e) => assert_names_field_and_value(&e, "image", &s),
            }
            if let Err(e) = Digest::parse(&s) {
                assert_names_field_and_value(&e, "digest", &s);
            }
        }

        #[test]
        fn arbitrary_reference_like_strings_never_panic(s in "[a-zA-Z0-9:/@._\\[\\]-]{0,40}") {
            match ImageRef::parse(&s) {
                Ok(i) => {
                    prop_assert_eq!(&i.to_string().parse::<ImageRef>().unwrap(), &i);
                    prop_assert_eq!(&i.familiar().parse::<ImageRef>().unwrap(), &i);
                }
                Err(e) => assert_names_field_and_value(&e, "image", &s),
            }
        }
    }
}
