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
