//! The config tests: defaults and resolved paths, every problem with its key path, each
//! section's checks, the documented example, name resolution at start and not on reload.

use super::*;

const MINIMAL: &str = r#"
[listener]
address = "127.0.0.1:8443"
server_cert = "server.pem"
server_key = "server.key"
client_ca = "ca.pem"

[upstream]
addresses = ["127.0.0.1:9528"]

[[tokens]]
name = "agent-1.example"
token = "tkn_0123456789abcdef0123456789abcdef"
identities = ["dns:agent-1.example"]
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    RawConfig::parse(text, Path::new("t.toml"))?.validate(Path::new("/etc/oneway"))
}

#[test]
fn minimal_config_gets_defaults_and_resolved_paths() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(
        c.listener.server_cert,
        PathBuf::from("/etc/oneway/server.pem")
    );
    assert_eq!(c.listener.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.body.max_decoded_bytes, DEFAULT_MAX_DECODED_BYTES);
    assert_eq!(c.validation, ValidationConfig::default());
    assert_eq!(
        c.tokens[0].identities,
        vec![Identity::Dns("agent-1.example".into())]
    );
    // The default policy: leader election only.
    assert_eq!(
        c.tokens[0].allowed_apis.iter().collect::<Vec<_>>(),
        ["/v1/election", "/v1/election/heartbeat"]
    );
    assert_eq!(c.upstream.max_answer_bytes, 1 << 20);
    assert_eq!(c.listener.ipv6_prefix_len, 64);
    assert_eq!(
        c.overload.max_in_flight_per_identity,
        DEFAULT_MAX_IN_FLIGHT / 4
    );
    assert_eq!(
        c.overload.max_memory_per_identity_bytes,
        DEFAULT_MEMORY_BUDGET / 4
    );
}

#[test]
fn an_identitys_share_holds_one_body_and_fits_the_budget() {
    let with = |overload: &str| {
        load(&format!(
            "{MINIMAL}\n[limits]\nmax_body_bytes = 1048576\nmax_upload_bytes = 1048576\n\
                 [overload]\nmemory_budget_bytes = 2097152\nmax_in_flight_requests = 8\n{overload}"
        ))
    };
    // A quarter of a 2 MiB budget would not hold one 1 MiB body: the share is one body.
    let c = with("").unwrap();
    assert_eq!(c.overload.max_memory_per_identity_bytes, 1 << 20);
    assert_eq!(c.overload.max_in_flight_per_identity, 2);
    for (bad, key) in [
        (
            "max_memory_per_identity_bytes = 1000",
            "overload.max_memory_per_identity_bytes",
        ),
        (
            "max_memory_per_identity_bytes = 4194304",
            "overload.max_memory_per_identity_bytes",
        ),
        (
            "max_in_flight_per_identity = 0",
            "overload.max_in_flight_per_identity",
        ),
        (
            "max_in_flight_per_identity = 9",
            "overload.max_in_flight_per_identity",
        ),
    ] {
        let Err(ConfigError::Invalid(problems)) = with(bad) else {
            panic!("{bad} must be refused");
        };
        assert!(
            problems.iter().any(|p| p.path == key),
            "{bad}: {problems:?}"
        );
    }
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = MINIMAL
        .replace("127.0.0.1:9528", "upstream.example:9528")
        .replace("dns:agent-1.example", "ip:10.0.0.1")
        .replace("[listener]\n", "[listener]\nipv6_prefix_len = 129\n")
        + r#"
[[tokens]]
name = "agent-2"
token_sha256 = "zz"
identities = []
upstream_token = "bad token"
allow_apis = ["/v1/nope"]

[limits]
max_tags = 0

[rules]
duplicate_key = "ignore"
"#;
    let Err(ConfigError::Invalid(problems)) = load(&text) else {
        panic!("must be invalid");
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "upstream.addresses[0]",
        "tokens[0].identities[0]",
        "tokens[1].token_sha256",
        "tokens[1].identities",
        "tokens[1].upstream_token",
        "tokens[1].allow_apis[0]",
        "limits.max_tags",
        "rules.duplicate_key",
        "listener.ipv6_prefix_len",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
}

#[test]
fn datakit_token_check_follows_its_installer() {
    for good in [
        "tkn_0123456789abcdef0123456789abcdef",
        "token_0123456789abcdef0123456789abcdef",
        "tokn_0123456789abcdef01234567",
    ] {
        assert_eq!(datakit_accepts_token(good), Ok(()), "{good}");
    }
    for bad in [
        "tkn_agent1_0123456789abcdef01234567",
        "tkn_0123456789abcdef0123456789abcdefg",
        "tokn_0123456789abcdef0123456789abcdef",
        "abc_0123456789abcdef0123456789abcdef",
        "tkn0123456789abcdef0123456789abcdef",
    ] {
        assert!(datakit_accepts_token(bad).is_err(), "{bad}");
    }
    let text = MINIMAL.replace(
        "tkn_0123456789abcdef0123456789abcdef",
        "tkn_agent1_0123456789abcdef01234567",
    );
    let c = load(&text).expect("valid, with a warning");
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].path, "tokens[0].token");
    assert!(load(MINIMAL).expect("valid").warnings.is_empty());
}

#[test]
fn admin_on_the_public_address_refused_but_two_ephemeral_ports_allowed() {
    let text = format!("{MINIMAL}\n[admin]\naddress = \"127.0.0.1:8443\"\n");
    assert!(matches!(load(&text), Err(ConfigError::Invalid(_))));
    let text =
        MINIMAL.replace("127.0.0.1:8443", "127.0.0.1:0") + "\n[admin]\naddress = \"127.0.0.1:0\"\n";
    assert!(load(&text).is_ok());
}

#[test]
fn spool_settings_are_checked_with_their_key_paths() {
    let text = format!(
        "{MINIMAL}\n[spool]\nmode = \"later\"\nmax_bytes = 10\nsegment_bytes = 100\n\
             replay_share = 0.0\nmax_age_seconds = 0\nretry_max_backoff_ms = 0\n"
    );
    let Err(ConfigError::Invalid(problems)) = load(&text) else {
        panic!("invalid spool accepted");
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for key in [
        "spool.directory",
        "spool.mode",
        "spool.max_bytes",
        "spool.segment_bytes",
        "spool.replay_share",
        "spool.max_age_seconds",
        "spool.retry_max_backoff_ms",
    ] {
        assert!(paths.contains(&key), "{key} missing from {paths:?}");
    }
    let ok = format!("{MINIMAL}\n[spool]\ndirectory = \"spool\"\nmode = \"spool-first\"\n");
    let c = load(&ok).unwrap();
    let spool = c.spool.unwrap();
    assert_eq!(
        spool.directory,
        Path::new("/etc/oneway/spool"),
        "relative to the config"
    );
    assert_eq!(spool.mode, SpoolMode::SpoolFirst);
    assert!(
        load(MINIMAL).unwrap().spool.is_none(),
        "off unless configured"
    );
}

#[test]
fn the_documented_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/oneway.example.toml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.tokens.len(), 2);
    let spool = c.spool.as_ref().unwrap();
    assert_eq!(spool.mode, SpoolMode::ForwardFirst);
    assert_eq!(spool.max_age, Some(Duration::from_secs(43200)));
    assert_eq!(
        c.tokens[0].upstream_token.as_deref(),
        Some("tkn_workspace00000000000000000000000")
    );
}

#[test]
fn upstream_names_resolve_inside_allowed_cidrs_only() {
    let named = MINIMAL.replace("\"127.0.0.1:9528\"", "\"localhost:9528\"");
    assert!(
        matches!(load(&named), Err(ConfigError::Invalid(_))),
        "names need allowed_cidrs"
    );
    let allowed = named.replace(
        "[upstream]",
        "[upstream]\nallowed_cidrs = [\"127.0.0.0/8\", \"::1/128\"]",
    );
    let c = load(&allowed).unwrap();
    assert!(
        c.upstream
            .addresses
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 9528)
    );
    let elsewhere = named.replace("[upstream]", "[upstream]\nallowed_cidrs = [\"10.0.0.0/8\"]");
    let Err(ConfigError::Invalid(problems)) = load(&elsewhere) else {
        panic!("localhost is not in 10.0.0.0/8");
    };
    assert!(
        problems[0]
            .message
            .contains("outside upstream.allowed_cidrs"),
        "{problems:?}"
    );
}

#[test]
fn a_reload_reads_names_without_resolving_them() {
    let named = MINIMAL.replace(
            "[upstream]\naddresses = [\"127.0.0.1:9528\"]",
            "[upstream]\naddresses = [\"no-such-host.invalid:9528\", \"127.0.0.1:9528\"]\nallowed_cidrs = [\"127.0.0.0/8\"]",
        );
    assert_ne!(named, MINIMAL);
    let raw = || RawConfig::parse(&named, Path::new("t.toml")).unwrap();
    // At start the name must resolve.
    let Err(ConfigError::Invalid(problems)) = raw().validate(Path::new("/etc/oneway")) else {
        panic!("an unresolvable name at start");
    };
    assert!(
        problems[0].message.contains("cannot resolve"),
        "{problems:?}"
    );
    // On reload it is not resolved: only its form is checked, the literal kept.
    let c = raw()
        .validate_with(Path::new("/etc/oneway"), Names::Unresolved)
        .unwrap();
    assert_eq!(
        c.upstream.addresses,
        vec!["127.0.0.1:9528".parse().unwrap()]
    );
    assert_eq!(
        c.upstream.configured,
        ["no-such-host.invalid:9528", "127.0.0.1:9528"]
    );
    let no_port = named.replace("no-such-host.invalid:9528", "no-such-host.invalid");
    let Err(ConfigError::Invalid(problems)) = RawConfig::parse(&no_port, Path::new("t.toml"))
        .unwrap()
        .validate_with(Path::new("/etc/oneway"), Names::Unresolved)
    else {
        panic!("a name without a port");
    };
    assert_eq!(problems[0].path, "upstream.addresses[0]");
}

#[test]
fn listed_tokens_are_read_from_a_file_whose_settings_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oneway.toml");
    let hash = hex::encode(sha256(b"tkn_b0000000000000000000000000000000"));
    std::fs::write(
            &path,
            format!(
                "sandbox = \"sometimes\"\n{MINIMAL}\n[[tokens]]\ntoken_sha256 = \"{hash}\"\nidentities = [\"dns:b\", \"cn:nope\"]\n\n[[tokens]]\ntoken = \"x\"\ntoken_sha256 = \"{hash}\"\nidentities = [\"dns:c\"]\n"
            ),
        )
        .unwrap();
    assert!(Config::load(&path).is_err());
    let listed = listed_tokens(&path).unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed[0].secret.is_some());
    assert_eq!(
        listed[1].secret,
        Some(TokenSecret::Sha256(
            hex::decode(&hash).unwrap().try_into().unwrap()
        ))
    );
    // An identity that does not parse grants nothing; an entry with both secrets is no
    // entry's secret.
    assert_eq!(listed[1].identities, vec![Identity::Dns("b".into())]);
    assert_eq!(listed[2].secret, None);
    // Not TOML, or tokens that are not tables: nothing is known.
    std::fs::write(&path, format!("{MINIMAL}\n[[[broken")).unwrap();
    assert!(listed_tokens(&path).is_none());
    std::fs::write(&path, "tokens = [\"a\"]\n").unwrap();
    assert!(listed_tokens(&path).is_none());
    std::fs::write(&path, "sandbox = 1\n").unwrap();
    assert_eq!(listed_tokens(&path).map(|l| l.len()), Some(0));
}

#[test]
fn cidr_contains() {
    let c = Cidr::parse("10.1.0.0/16").unwrap();
    assert!(c.contains("10.1.255.3".parse().unwrap()));
    assert!(!c.contains("10.2.0.1".parse().unwrap()));
    assert!(!c.contains("::1".parse().unwrap()));
    assert!(
        Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap())
    );
    assert!(Cidr::parse("10.0.0.0/33").is_err());
    assert!(Cidr::parse("10.0.0.0").is_err());
}

#[test]
fn upstream_tls_needs_ca_and_name_together() {
    let half = MINIMAL.replace("[upstream]", "[upstream]\ntls_ca = \"up.pem\"");
    assert!(matches!(load(&half), Err(ConfigError::Invalid(_))));
    let both = MINIMAL.replace(
        "[upstream]",
        "[upstream]\ntls_ca = \"up.pem\"\ntls_server_name = \"kodo\"",
    );
    let c = load(&both).unwrap();
    assert_eq!(
        c.upstream.tls.unwrap().ca,
        PathBuf::from("/etc/oneway/up.pem")
    );
}

#[test]
fn rate_limits_default_per_token_override_and_replica_share() {
    let text = format!(
        "{MINIMAL}\nrate = {{ requests_per_second = 10, over_limit_status = 429 }}\n\n[[tokens]]\nname = \"b\"\ntoken = \"tkn_b0000000000000000000000000000000\"\nidentities = [\"dns:b\"]\n\n[rate_limits]\nreplicas = 2\n[rate_limits.default]\npoints_per_second = 1000\npoints_burst = 4000\n"
    );
    let c = load(&text).unwrap();
    let a = &c.tokens[0];
    assert_eq!(a.limits.requests, Some(Rate::new(5.0, 5.0)));
    assert_eq!(
        a.limits.points, None,
        "a token's own rate replaces the default"
    );
    assert_eq!(a.over_limit_status, 429);
    let b = &c.tokens[1];
    assert_eq!(b.limits.points, Some(Rate::new(500.0, 2000.0)));
    assert_eq!(b.over_limit_status, 503);
    let bad = format!("{MINIMAL}\nrate = {{ requests_per_second = 0, over_limit_status = 418 }}\n");
    let Err(ConfigError::Invalid(problems)) = load(&bad) else {
        panic!("invalid")
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn unknown_keys_are_refused() {
    let text = MINIMAL.replace("[upstream]", "[upstream]\nretries = 3");
    assert!(matches!(load(&text), Err(ConfigError::Syntax { .. })));
}

#[test]
fn duplicate_tokens_refused() {
    let text = format!(
        "{MINIMAL}\n[[tokens]]\nname = \"b\"\ntoken = \"tkn_0123456789abcdef0123456789abcdef\"\nidentities = [\"dns:b\"]\n"
    );
    assert!(matches!(load(&text), Err(ConfigError::Invalid(_))));
}

#[test]
fn identity_parse_forms() {
    assert_eq!(
        Identity::parse("dns:A.Example"),
        Ok(Identity::Dns("a.example".into()))
    );
    assert_eq!(
        Identity::parse("uri:spiffe://x/y"),
        Ok(Identity::Uri("spiffe://x/y".into()))
    );
    let pin = format!("spki-sha256:{}", "ab".repeat(32));
    assert_eq!(Identity::parse(&pin), Ok(Identity::SpkiSha256([0xab; 32])));
    assert!(Identity::parse("spki-sha256:ab").is_err());
    assert!(Identity::parse("cn:agent").is_err());
}

#[test]
fn every_token_has_a_unique_name_that_is_a_label_and_never_a_secret() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(&*c.tokens[0].name, "agent-1.example");
    let second = |name: &str| {
        format!(
            "{MINIMAL}\n[[tokens]]\n{name}\ntoken = \"tkn_b0000000000000000000000000000000\"\nidentities = [\"dns:b\"]\n"
        )
    };
    let problem = |text: String| match load(&text) {
        Err(ConfigError::Invalid(p)) => p
            .into_iter()
            .find(|p| p.path == "tokens[1].name")
            .map(|p| p.message),
        other => panic!("must be invalid: {other:?}"),
    };
    assert!(load(&second("name = \"b\"")).is_ok());
    for (name, why) in [
        ("", "needs a name"),
        ("name = \"agent-1.example\"", "names another token too"),
        ("name = \"\"", "1-64 letters"),
        ("name = \"agent one\"", "1-64 letters"),
        ("name = \"a\\\"b\"", "1-64 letters"),
        (&format!("name = \"{}\"", "a".repeat(65)), "1-64 letters"),
        (
            "name = \"tkn_b0000000000000000000000000000000\"",
            "must not be (or look like) a token",
        ),
        (
            "name = \"tkn_c0000000000000000000000000000000\"",
            "must not be (or look like) a token",
        ),
    ] {
        let message = problem(second(name)).unwrap_or_else(|| panic!("{name:?} is refused"));
        assert!(message.contains(why), "{name:?}: {message}");
    }
}
