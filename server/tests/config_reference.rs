//! `docs/configuration.md` is generated from `config/parley.toml`, and both are checked against
//! the code, so the reference cannot drift:
//! - every key of the file is a setting the loader accepts, and every setting the code knows
//!   (the serialized `Settings`) has a key in the file;
//! - every key has a comment (its description);
//! - the generated part of `docs/configuration.md` is what the file renders to.
//!
//! Regenerate the document after changing the file:
//! `PARLEY_BLESS=1 cargo nextest run -p server --test config_reference`.

// `parley-server` is a binary crate: its settings module is compiled into this test directly.
#[allow(dead_code, unused_imports)]
#[path = "../src/config.rs"]
mod config;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use ingest::settings::ServiceSettings;

const BEGIN: &str =
    "<!-- BEGIN GENERATED from config/parley.toml by server/tests/config_reference.rs -->";
const END: &str = "<!-- END GENERATED -->";
const BLESS_HINT: &str = "run PARLEY_BLESS=1 cargo nextest run -p server --test config_reference";

/// Sections `parley-server` accepts (both binaries share one file) but does not use.
const SERVER_IGNORES: &[&str] = &["ingest"];
/// Keys of those sections `parley-server` reads all the same: its in-process ingest's linger.
const SERVER_READS_ANYWAY: &[&str] = &["ingest.linger_ms"];
/// Keys of shared sections that only `ingest` uses: `ingest setup` creates the topics; the
/// search role (`ingest search`) listens and keeps its index.
const INGEST_ONLY_KEYS: &[&str] = &[
    "kafka.partitions",
    "kafka.replication_factor",
    "kafka.log_retention_ms",
    "kafka.audit_retention_ms",
    "search.bind",
    "search.data_dir",
    "search.ready_lag_events",
];
/// Keys of sections `ingest` reads that only `parley-server` uses: a node's side of search.
const SERVER_ONLY_KEYS: &[&str] = &["search.enabled", "search.url", "search.timeout_ms"];

/// The sections the `ingest` binary reads: the fields of its `ServiceSettings`.
fn ingest_sections() -> BTreeSet<&'static str> {
    // Exhaustive on purpose: a new section of `ServiceSettings` fails to compile here.
    let _fields = |settings: ServiceSettings| {
        let ServiceSettings {
            kafka: _,
            mongo: _,
            ingest: _,
            search: _,
            log: _,
        } = settings;
    };
    BTreeSet::from(["kafka", "mongo", "ingest", "search", "log"])
}

fn repository_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn config_file() -> String {
    std::fs::read_to_string(repository_path("config/parley.toml")).expect("read config/parley.toml")
}

/// One `[section]` of the file, keys in file order.
#[derive(Debug)]
struct Section {
    name: String,
    /// A comment block right under the header and followed by a blank line.
    description: Vec<String>,
    keys: Vec<Key>,
}

#[derive(Debug)]
struct Key {
    name: String,
    /// The comment block above the key; keys on consecutive lines share the block above the
    /// first of them (e.g. `redis.pubsub_url` .. `redis.ratelimit_url` share `redis.url`'s).
    description: Vec<String>,
    /// The key whose comment this key shares, if any.
    shares_with: Option<String>,
}

#[derive(Debug)]
struct Outline {
    sections: Vec<Section>,
    /// Line numbers (1-based) of comment blocks that describe neither a section nor a key.
    dangling_comments: Vec<usize>,
}

impl Outline {
    /// Every key with its section, in file order.
    fn keys(&self) -> impl Iterator<Item = (&Section, &Key)> {
        self.sections
            .iter()
            .flat_map(|section| section.keys.iter().map(move |key| (section, key)))
    }
}

/// Walks the file's lines: sections, keys and the comment block that describes each. The file
/// header (comments before the first section) is the file's own introduction and is skipped.
fn outline(text: &str) -> Outline {
    let mut sections: Vec<Section> = Vec::new();
    let mut dangling_comments = Vec::new();
    let mut block: Vec<String> = Vec::new();
    let mut block_start = 0;
    // The key that opened a run of consecutive keys, and its description, shared by the run.
    let mut run: Option<(String, Vec<String>)> = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            if block.is_empty() {
                block_start = index + 1;
            }
            block.push(comment.strip_prefix(' ').unwrap_or(comment).to_owned());
            run = None;
        } else if line.is_empty() {
            if !block.is_empty() {
                match sections.last_mut() {
                    Some(section) if section.keys.is_empty() && section.description.is_empty() => {
                        section.description = std::mem::take(&mut block);
                    }
                    Some(_) => dangling_comments.push(block_start),
                    None => {} // the file header
                }
                block.clear();
            }
            run = None;
        } else if let Some(header) = line.strip_prefix('[') {
            let name = header.trim_end_matches(']').trim().to_owned();
            if !block.is_empty() && !sections.is_empty() {
                dangling_comments.push(block_start);
            }
            block.clear();
            run = None;
            sections.push(Section {
                name,
                description: Vec::new(),
                keys: Vec::new(),
            });
        } else {
            let (name, _value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("config/parley.toml:{}: not `key = value`", index + 1));
            let section = sections.last_mut().unwrap_or_else(|| {
                panic!("config/parley.toml:{}: key outside a section", index + 1)
            });
            let name = name.trim().to_owned();
            let (description, shares_with) = match (&run, block.is_empty()) {
                (Some((first, description)), true) => (description.clone(), Some(first.clone())),
                (None, true) => (Vec::new(), None),
                (_, false) => (std::mem::take(&mut block), None),
            };
            if shares_with.is_none() {
                run = Some((name.clone(), description.clone()));
            }
            section.keys.push(Key {
                name,
                description,
                shares_with,
            });
        }
    }
    if !block.is_empty() {
        dangling_comments.push(block_start);
    }
    Outline {
        sections,
        dangling_comments,
    }
}

/// `section.key` → value, for every leaf of a TOML table (arrays are leaves).
fn flatten(table: &toml::Table) -> BTreeMap<String, toml::Value> {
    fn walk(prefix: &str, table: &toml::Table, into: &mut BTreeMap<String, toml::Value>) {
        for (name, value) in table {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                toml::Value::Table(inner) => walk(&key, inner, into),
                leaf => {
                    into.insert(key, leaf.clone());
                }
            }
        }
    }
    let mut keys = BTreeMap::new();
    walk("", table, &mut keys);
    keys
}

fn file_values(text: &str) -> BTreeMap<String, toml::Value> {
    flatten(
        &text
            .parse::<toml::Table>()
            .expect("config/parley.toml is valid TOML"),
    )
}

/// The settings as the code sees them, secrets redacted by their `Serialize`.
fn serialized(settings: &config::Settings) -> BTreeMap<String, toml::Value> {
    match toml::Value::try_from(settings).expect("settings serialize to TOML") {
        toml::Value::Table(table) => flatten(&table),
        other => panic!("settings serialized to {other:?}"),
    }
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env_name(key: &str) -> String {
    format!("PARLEY__{}", key.replace('.', "__").to_uppercase())
}

/// Keys whose setting is a `Secret`: a value given in the environment does not come back out
/// of `Serialize`. Probed one string key at a time (a non-string setting, e.g. an enum, may
/// refuse the probe value: it is no secret).
fn secret_keys(values: &BTreeMap<String, toml::Value>) -> BTreeSet<String> {
    const PROBE: &str = "config-reference-probe";
    let mut secrets = BTreeSet::new();
    for (key, value) in values {
        if !value.is_str() {
            continue;
        }
        let env = HashMap::from([(env_name(key), PROBE.to_owned())]);
        let Ok(settings) = bootstrap::load_layers::<config::Settings>(None, &env, &[]) else {
            continue;
        };
        let seen = serialized(&settings).remove(key).expect("a known key");
        if seen.as_str() != Some(PROBE) {
            secrets.insert(key.clone());
        }
    }
    secrets
}

fn readers(key: &str, ingest_sections: &BTreeSet<&str>) -> &'static str {
    let section = key.split('.').next().expect("section.key");
    let server = (!SERVER_IGNORES.contains(&section) || SERVER_READS_ANYWAY.contains(&key))
        && !INGEST_ONLY_KEYS.contains(&key);
    let ingest = ingest_sections.contains(section) && !SERVER_ONLY_KEYS.contains(&key);
    match (server, ingest) {
        (true, true) => "both",
        (true, false) => "parley-server",
        (false, true) => "ingest",
        (false, false) => panic!("{key} is read by neither binary"),
    }
}

/// Markdown-safe text of one table cell: `|` escaped, and `<` too outside code spans (so
/// "<hostname>" is not taken for HTML).
fn cell(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(index, part)| {
            if index % 2 == 1 {
                part.to_owned()
            } else {
                part.replace('<', "&lt;")
            }
        })
        .collect::<Vec<_>>()
        .join("`")
        .replace('|', "\\|")
}

/// The generated part of docs/configuration.md (between the markers).
fn render(text: &str) -> String {
    let outline = outline(text);
    let values = file_values(text);
    let secrets = secret_keys(&values);
    let ingest_sections = ingest_sections();
    let mut out = String::new();
    for section in &outline.sections {
        out.push_str(&format!("\n### `[{}]`\n\n", section.name));
        if !section.description.is_empty() {
            out.push_str(&section.description.join(" "));
            out.push_str("\n\n");
        }
        out.push_str("| Key | Environment variable | Default | Read by | Secret | Description |\n");
        out.push_str("|-----|----------------------|---------|---------|--------|-------------|\n");
        for key in &section.keys {
            let dotted = format!("{}.{}", section.name, key.name);
            let value = values
                .get(&dotted)
                .unwrap_or_else(|| panic!("{dotted}: the line walk and the TOML parser disagree"));
            let mut env = format!("`{}`", env_name(&dotted));
            if value.is_array() {
                env.push_str(" (comma-separated)");
            }
            out.push_str(&format!(
                "| `{}` | {} | `{}` | {} | {} | {} |\n",
                key.name,
                env,
                cell(&value.to_string()),
                readers(&dotted, &ingest_sections),
                if secrets.contains(&dotted) {
                    "yes"
                } else {
                    "no"
                },
                match &key.shares_with {
                    Some(first) => format!("See `{first}`."),
                    None => cell(&key.description.join(" ")),
                },
            ));
        }
    }
    out
}

#[test]
fn every_key_of_the_file_is_a_setting_and_every_setting_has_a_key() {
    let text = config_file();
    // Loading the file itself: unknown keys are rejected, values validated.
    config::load_with_env(Some(&repository_path("config/parley.toml")), no_env())
        .expect("config/parley.toml loads");

    let in_file: BTreeSet<String> = file_values(&text).into_keys().collect();
    let defaults = config::load_with_env(None, no_env()).expect("the defaults load");
    let in_code: BTreeSet<String> = serialized(&defaults.settings).into_keys().collect();
    let missing_in_file: Vec<_> = in_code.difference(&in_file).collect();
    let unknown_to_code: Vec<_> = in_file.difference(&in_code).collect();
    assert!(
        missing_in_file.is_empty(),
        "settings the code knows but config/parley.toml does not list (add them, with a comment): \
         {missing_in_file:?}"
    );
    assert!(
        unknown_to_code.is_empty(),
        "keys of config/parley.toml the settings do not have: {unknown_to_code:?}"
    );

    let walked: BTreeSet<String> = outline(&text)
        .keys()
        .map(|(section, key)| format!("{}.{}", section.name, key.name))
        .collect();
    assert_eq!(
        walked, in_file,
        "the generator's line walk must see the keys the TOML parser sees (one `key = value` per line)"
    );
    for key in INGEST_ONLY_KEYS
        .iter()
        .chain(SERVER_ONLY_KEYS)
        .chain(SERVER_READS_ANYWAY)
    {
        assert!(
            in_file.contains(*key),
            "INGEST_ONLY_KEYS / SERVER_ONLY_KEYS / SERVER_READS_ANYWAY name {key}, not in the file"
        );
    }
    for section in ingest_sections()
        .into_iter()
        .chain(SERVER_IGNORES.iter().copied())
    {
        assert!(
            in_file
                .iter()
                .any(|key| key.starts_with(&format!("{section}."))),
            "no section [{section}] in the file"
        );
    }
}

#[test]
fn every_key_has_a_comment() {
    let outline = outline(&config_file());
    let uncommented: Vec<String> = outline
        .keys()
        .filter(|(_, key)| key.description.iter().all(|line| line.trim().is_empty()))
        .map(|(section, key)| format!("{}.{}", section.name, key.name))
        .collect();
    assert!(
        uncommented.is_empty(),
        "keys of config/parley.toml without a comment above them (or above the key right before \
         them): {uncommented:?}"
    );
    assert!(
        outline.dangling_comments.is_empty(),
        "comment blocks of config/parley.toml that describe no key (a comment goes right above \
         its key; a block under a section header followed by a blank line describes the \
         section), at lines {:?}",
        outline.dangling_comments
    );
}

#[test]
fn secrets_are_never_serialized() {
    let env = vec![
        (
            "PARLEY__AUTH__API_KEY".to_owned(),
            "an-api-key-of-enough-length".to_owned(),
        ),
        (
            "PARLEY__MONGO__URI".to_owned(),
            "mongodb://user:pw@127.0.0.1:27017/".to_owned(),
        ),
        (
            "PARLEY__KAFKA__BROKERS".to_owned(),
            "127.0.0.1:9092".to_owned(),
        ),
        (
            "PARLEY__REDIS__URL".to_owned(),
            "redis://:pw@127.0.0.1:6379/0".to_owned(),
        ),
    ];
    let loaded = config::load_with_env(None, env).expect("valid");
    let text = toml::to_string(&loaded.settings).expect("serialize");
    assert!(!text.contains("pw"), "{text}");
    assert!(!text.contains("an-api-key"), "{text}");
    assert!(!text.contains(config::DEV_JWT_SECRET), "{text}");
    let secrets = secret_keys(&file_values(&config_file()));
    for key in [
        "auth.api_key",
        "auth.jwt_secret",
        "mongo.uri",
        "redis.url",
        "redis.cache_url",
    ] {
        assert!(
            secrets.contains(key),
            "{key} is not detected as a secret: {secrets:?}"
        );
    }
    assert!(!secrets.contains("kafka.brokers"), "{secrets:?}");
}

#[test]
fn docs_configuration_md_is_generated_from_the_file() {
    let path = repository_path("docs/configuration.md");
    let document = std::fs::read_to_string(&path).expect("read docs/configuration.md");
    let (before, rest) = document
        .split_once(BEGIN)
        .unwrap_or_else(|| panic!("docs/configuration.md has no line {BEGIN}"));
    let (current, after) = rest.split_once(END).unwrap_or_else(|| {
        panic!("docs/configuration.md has no line {END} after the begin marker")
    });
    let generated = render(&config_file());
    if current == generated {
        return;
    }
    if std::env::var_os("PARLEY_BLESS").is_some_and(|value| value == "1") {
        std::fs::write(&path, format!("{before}{BEGIN}{generated}{END}{after}"))
            .expect("write docs/configuration.md");
        return;
    }
    let first_difference = current
        .lines()
        .zip(generated.lines())
        .find(|(old, new)| old != new)
        .map(|(old, new)| format!("\n  in the document: {old}\n  generated:       {new}"))
        .unwrap_or_else(|| "\n  (one is a prefix of the other)".to_owned());
    panic!("docs/configuration.md is out of date: {BLESS_HINT}{first_difference}");
}
