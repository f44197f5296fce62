//! The JSON validator's tests: what Guance accepts and what it refuses, case by case.

use super::*;
use crate::reading::Points;
use crate::verdict::{Action, Category, Limits, RuleActions};

fn run(category: Category, body: &str) -> Result<Verdict, Rejection> {
    let reject = RuleActions {
        metric_string_field: Action::Reject,
        duplicate_key: Action::Reject,
        ..RuleActions::default()
    };
    let mut c = PointChecker::new(Limits::default(), reject, category);
    validate(&mut c, body.as_bytes(), Precision::Nanoseconds, &mut ())
}

fn read(body: &str) -> Vec<Point> {
    let mut c = PointChecker::new(Limits::default(), RuleActions::default(), Category::Rum);
    let mut points = Points::default();
    validate(&mut c, body.as_bytes(), Precision::Nanoseconds, &mut points).expect("accepted");
    points.0
}

#[test]
fn accepted_table() {
    let cases: &[(&str, u64)] = &[
        ("[]", 0),
        (" [ ] \n", 0),
        (r#"[{"measurement":"cpu","fields":{"a":1}}]"#, 1),
        (
            r#"[{"measurement":"cpu","tags":{"host":"h1","t":"\u00e9\ud83d\ude00"},
                "fields":{"a":1,"b":-1.5e3,"c":true,"d":false,"e":[1,2.5],"g":null},
                "time":1700000000000000000},
               {"time":5,"fields":{"x":0},"measurement":"m\"q"}]"#,
            2,
        ),
        (r#"[{"measurement":"m"}]"#, 1),
        (r#"[{"measurement":"m","fields":{}}]"#, 1),
    ];
    for (body, n) in cases {
        match run(Category::Metric, body) {
            Ok(v) => assert_eq!(v.points, *n, "{body}"),
            Err(e) => panic!("{body} rejected: {e}"),
        }
    }
    let logging = r#"[{"measurement":"nginx","tags":{"status":"ok"},"fields":{"message":"a\nb"}}]"#;
    assert!(run(Category::Logging, logging).is_ok());
}

#[test]
fn rejected_table() {
    let cases: &[(&str, Rule)] = &[
        ("", Rule::BadPointShape),
        ("{}", Rule::BadPointShape),
        ("[", Rule::BadPointShape),
        ("[{}]", Rule::MissingMeasurement),
        (
            r#"[{"measurement":"","fields":{"a":1}}]"#,
            Rule::MissingMeasurement,
        ),
        (
            r#"[{"measurement":1,"fields":{"a":1}}]"#,
            Rule::BadPointShape,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":1},"extra":1}]"#,
            Rule::BadPointShape,
        ),
        (
            r#"[{"measurement":"m","measurement":"n","fields":{"a":1}}]"#,
            Rule::BadPointShape,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":1}},]"#,
            Rule::BadPointShape,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":1}}] x"#,
            Rule::JsonSyntax,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":[]}}]"#,
            Rule::EmptyArray,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":[null]}}]"#,
            Rule::BadArray,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":1e400}}]"#,
            Rule::BadFieldValue,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":1},"time":-5}]"#,
            Rule::NegativeTimestamp,
        ),
        (
            r#"[{"measurement":"m","tags":{"t":"a\n"},"fields":{"a":1}}]"#,
            Rule::NewlineOrTrailingBackslash,
        ),
        (
            r#"[{"measurement":"m","fields":{"a\\":1}}]"#,
            Rule::NewlineOrTrailingBackslash,
        ),
        (
            r#"[{"Measurement":"m","fields":{"a":1}}]"#,
            Rule::BadPointShape,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":{"b":1}}}]"#,
            Rule::BadFieldValue,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":[1,"x"]}}]"#,
            Rule::BadArray,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":[[1]]}}]"#,
            Rule::BadArray,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":01}}]"#,
            Rule::JsonSyntax,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":1.}}]"#,
            Rule::JsonSyntax,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":tru}}]"#,
            Rule::JsonSyntax,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":1,}}]"#,
            Rule::JsonSyntax,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":"\x"}}]"#,
            Rule::JsonSyntax,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":"\ud800"}}]"#,
            Rule::JsonSyntax,
        ),
        (
            "[{\"measurement\":\"m\",\"fields\":{\"a\":\"\t\"}}]",
            Rule::JsonSyntax,
        ),
        (
            r#"[{"measurement":"m","tags":{"t":1},"fields":{"a":1}}]"#,
            Rule::TagNotString,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":1,"a":2}}]"#,
            Rule::DuplicateKey,
        ),
        (
            r#"[{"measurement":"m","tags":{"a":"x"},"fields":{"\u0061":2}}]"#,
            Rule::DuplicateKey,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":1},"time":1.5}]"#,
            Rule::BadTimestamp,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":1},"time":"1"}]"#,
            Rule::BadTimestamp,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":1},"time":9223372036854775808}]"#,
            Rule::BadTimestamp,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":"s"}}]"#,
            Rule::MetricStringField,
        ),
        (
            r#"[{"measurement":"m","fields":{"a":["s"]}}]"#,
            Rule::MetricStringField,
        ),
    ];
    for (body, rule) in cases {
        match run(Category::Metric, body) {
            Ok(v) => panic!("{body} accepted: {v:?}"),
            Err(e) => assert_eq!(e.rule, *rule, "{body}: {e}"),
        }
    }
}

#[test]
fn rejection_names_point_index() {
    let body = r#"[{"measurement":"a","fields":{"x":1}},{"measurement":"b","fields":{"a":[]}}]"#;
    let e = run(Category::Metric, body).unwrap_err();
    assert_eq!(e.position, Position::Point(Some(1)));
    assert!(e.excerpt.as_bytes().starts_with(br#"{"measurement":"b""#));
}

#[test]
fn unescaped_lengths_are_checked() {
    let limits = Limits {
        max_tag_value_bytes: 2,
        ..Limits::default()
    };
    let mut c = PointChecker::new(limits, RuleActions::default(), Category::Rum);
    let n = Precision::Nanoseconds;
    let ok = br#"[{"measurement":"m","tags":{"t":"\u00e9"},"fields":{"a":1}}]"#;
    assert!(validate(&mut c, ok, n, &mut ()).is_ok());
    let bad = br#"[{"measurement":"m","tags":{"t":"\u00e9x"},"fields":{"a":1}}]"#;
    assert_eq!(
        validate(&mut c, bad, n, &mut ()).unwrap_err().rule,
        Rule::TagValueTooLong
    );
}

#[test]
fn unescape_into_decodes_every_escape() {
    let mut out = Vec::new();
    unescape_into(br#"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"#, &mut out).unwrap();
    assert_eq!(out, "a\"\\/\u{8}\u{c}\n\r\té😀".as_bytes());
    assert!(unescape_into(br"\q", &mut out).is_err());
}

#[test]
fn reading_follows_go_encoding_json() {
    let p = &read(
        r#"[{"measurement":"m\u00e9","tags":{"t":"a","t":"b"},
             "fields":{"i":1,"f":2.5,"s":"x\ny","b":true,"n":null,"a":[1,2],"f":3,"t":9},
             "time":7}]"#,
    )[0];
    assert_eq!(p.name, "mé".as_bytes());
    assert_eq!(p.time, Time::At(7));
    // A key twice keeps its last value; a tag replaces the field of its key.
    assert_eq!(p.tags, vec![(b"t".to_vec(), b"b".to_vec())]);
    let fields: Vec<(&[u8], &Value)> = p.fields.iter().map(|(k, v)| (k.as_slice(), v)).collect();
    assert_eq!(
        fields,
        [
            (&b"i"[..], &Value::Float(1.0)),
            (b"f", &Value::Float(3.0)),
            (b"s", &Value::Str(b"x\ny".to_vec())),
            (b"b", &Value::Bool(true)),
            (b"n", &Value::None),
            (
                b"a",
                &Value::Array(vec![Value::Float(1.0), Value::Float(2.0)])
            ),
        ]
    );
    assert_eq!(
        read(r#"[{"measurement":"m","time":0}]"#)[0].time,
        Time::Unset
    );
}
