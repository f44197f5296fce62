//! Differential test against the `influxdb-line-protocol` crate (InfluxDB 3 / IOx) on standard
//! line protocol: the same accept/reject verdict on a generated corpus, on mutations of it,
//! and on hand-written edge cases.
//!
//! Where the verdicts differ, the difference must be one of those listed (and justified) in the
//! docs of `oneway_protocol`'s line-protocol module: Guance extensions we accept (binary and
//! arrays, CRLF, trailing spaces), or things we refuse that IOx lets through (point-model
//! rules, unescaped commas in keys, a backslash before a line end, control characters in
//! names). [`justified`] encodes that list; anything else fails the test.

#[path = "support/model.rs"]
#[expect(
    dead_code,
    unreachable_pub,
    reason = "a shared model; each test uses part of it"
)]
mod model;

use model::{Rng, Value, batch_lp};
use oneway_protocol::{BodyKind, Category, Precision, Rejection, Rule, Validator};

fn ours(body: &str) -> Result<u64, Rejection> {
    Validator::default()
        .validate(
            BodyKind::LineProtocol,
            Category::Rum,
            Precision::Nanoseconds,
            body.as_bytes(),
        )
        .map(|v| v.points)
}

fn iox(body: &str) -> Result<u64, String> {
    let mut n = 0;
    for line in influxdb_line_protocol::parse_lines(body) {
        line.map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

/// Why the two parsers may disagree on `body`, or `None` if they must not.
fn justified(body: &str, ours: &Result<u64, Rejection>) -> Option<&'static str> {
    match ours {
        // We accept, IOx rejects: our extensions.
        Ok(_) => {
            if body.contains('\r') {
                Some("CRLF line ends")
            } else if body.contains("\"b") || body.contains('[') {
                Some("Guance binary or array values")
            } else if body.lines().any(|l| l.ends_with(' ')) {
                Some("trailing spaces after the field set")
            } else {
                None
            }
        }
        // We reject, IOx accepts: rules IOx leaves to later layers, or stricter syntax.
        Err(r) => match r.rule {
            Rule::DuplicateKey
            | Rule::TooManyTags
            | Rule::TooManyFields
            | Rule::KeyTooLong
            | Rule::TagValueTooLong
            | Rule::FieldValueTooLong
            | Rule::MeasurementTooLong
            | Rule::LineTooLong
            | Rule::EmptyKey => Some("point-model rule"),
            Rule::UnexpectedCharacter => Some("tab, NUL or CR in a name, key or tag value"),
            Rule::TrailingBackslash => Some("backslash before a line end"),
            Rule::BadTag | Rule::BadField if iox_has_key_with_comma(body) => {
                Some("unescaped comma in a key (IOx makes it part of the key)")
            }
            Rule::BadField if body.trim_end().ends_with(',') => {
                Some("trailing comma after the field set")
            }
            Rule::InvalidUtf8 => Some("not UTF-8 (IOx takes &str)"),
            _ => None,
        },
    }
}

/// Whether IOx parsed a tag or field key containing a comma.
fn iox_has_key_with_comma(body: &str) -> bool {
    influxdb_line_protocol::parse_lines(body)
        .flatten()
        .any(|line| {
            let tags = line
                .series
                .tag_set
                .iter()
                .flatten()
                .map(|(k, _)| k.to_string());
            let fields = line.field_set.iter().map(|(k, _)| k.to_string());
            tags.chain(fields).any(|k| k.contains(','))
        })
}

fn compare(body: &str) -> Result<(), String> {
    let a = ours(body);
    let b = iox(body);
    if a.is_ok() == b.is_ok() {
        if let (Ok(x), Ok(y)) = (&a, &b)
            && x != y
        {
            return Err(format!("point counts differ ({x} vs {y}) on {body:?}"));
        }
        return Ok(());
    }
    match justified(body, &a) {
        Some(_) => Ok(()),
        None => Err(format!(
            "verdicts differ on {body:?}: oneway {a:?}, iox {b:?}"
        )),
    }
}

/// Standard line protocol only (no binary or arrays): what IOx understands.
fn standard_corpus(n: usize) -> Vec<String> {
    let mut rng = Rng::new(7);
    let mut out = Vec::new();
    for i in 0..n as u64 {
        let mut p = match i % 3 {
            0 => model::tsbs_cpu(&mut rng, i),
            1 => model::short(&mut rng, i),
            _ => model::escapes(&mut rng, i),
        };
        p.fields.retain(|(_, v)| {
            !matches!(v, Value::Bytes(_) | Value::IntArray(_) | Value::StrArray(_))
        });
        if i % 5 == 0 {
            p.time = None;
        }
        out.push(batch_lp(&[p]));
    }
    out
}

#[test]
fn generated_corpus_same_verdict_and_count() {
    let lines = standard_corpus(3000);
    let batch: String = lines.concat();
    assert_eq!(ours(&batch).map_err(|e| e.to_string()), Ok(3000));
    assert_eq!(iox(&batch), Ok(3000));
    for line in &lines {
        compare(line).unwrap();
    }
}

#[test]
fn mutated_corpus_differences_are_all_justified() {
    let lines = standard_corpus(300);
    let alphabet = b" ,=\\\"\n\r\t#-.0123456789eEiutfTFab\0x";
    let mut rng = Rng::new(99);
    let mut failures = Vec::new();
    let mut disagreements = 0;
    let mut reasons = std::collections::BTreeMap::new();
    let mut total = 0;
    for line in &lines {
        for _ in 0..40 {
            let mut bytes = line.clone().into_bytes();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(bytes.len() as u64) as usize;
                let c = alphabet[rng.below(alphabet.len() as u64) as usize];
                match rng.below(3) {
                    0 => bytes[at] = c,
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, c),
                }
            }
            let Ok(body) = String::from_utf8(bytes) else {
                continue;
            };
            total += 1;
            if ours(&body).is_ok() != iox(&body).is_ok() {
                disagreements += 1;
            }
            if let Err(e) = compare(&body) {
                failures.push(e);
            } else if ours(&body).is_ok() != iox(&body).is_ok() {
                let why = justified(&body, &ours(&body)).unwrap_or("?");
                let e = reasons.entry(why).or_insert((0, Vec::new()));
                e.0 += 1;
                if e.1.len() < 3 {
                    e.1.push(body.clone());
                }
            }
        }
    }
    assert!(total > 10_000, "{total}");
    println!("{total} mutated lines, {disagreements} disagreements: {reasons:?}");
    assert!(
        failures.is_empty(),
        "{} unjustified of {total} ({disagreements} disagreements):\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

#[test]
fn edge_cases_same_verdict_or_justified() {
    let cases = [
        "cpu f=1i",
        "cpu f=1",
        "cpu f=-1.5e-10",
        "cpu f=1.5E+10",
        "cpu f=1.",
        "cpu f=.5",
        "cpu f=+1",
        "cpu f=1e",
        "cpu f=9223372036854775807i",
        "cpu f=9223372036854775808i",
        "cpu f=-9223372036854775808i",
        "cpu f=18446744073709551615u",
        "cpu f=18446744073709551616u",
        "cpu f=-1u",
        "cpu f=t,g=T,h=true,i=True,j=TRUE,k=f,l=F,m=false,n=False,o=FALSE",
        "cpu f=tRUE",
        "cpu f=\"a\\\"b\\\\c\"",
        "cpu f=\"multi\nline\"",
        "cpu f=\"unterminated",
        "cpu f=\"\"",
        "cpu f=1i 1234",
        "cpu f=1i -1234",
        "cpu f=1i 1234 ",
        "cpu f=1i 12a",
        "cpu f=1i 9223372036854775808",
        "cpu,host=a f=1i",
        "cpu,host=a,host2=b f=1i",
        "cpu,host= f=1i",
        "cpu,=a f=1i",
        "cpu, f=1i",
        "cpu,host=a",
        "cpu",
        "cpu ",
        "cpu\\ x,a\\,b=c\\=d e\\ f=1i",
        "cpu\\x f=1i",
        "c\\,pu f=1i",
        "cpu\\",
        "# comment\ncpu f=1i",
        "  cpu f=1i",
        "\n\n\ncpu f=1i\n\n",
        "cpu f=1i\ncpu f=2i\n",
        "cpu f=1i\nbad\ncpu f=2i",
        "cpu f=1i,",
        "cpu f=1i,,g=1i",
        "cpu f=1i g=2i",
        "cpu  f=1i",
        "cpu,a=b=c f=1i",
        "cpu f==1i",
        "cpu =1i",
        "cpu f=1i\r\n",
        "cpu f=1i,f=2i",
        "cpu,f=a f=1i",
        "日本 f=1i",
        "cpu,tag=日本 f=\"日本\"",
    ];
    let failures: Vec<String> = cases.iter().filter_map(|c| compare(c).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
