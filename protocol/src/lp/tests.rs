//! The line-protocol parser's tests: what Guance's parser accepts and refuses, case by case.

use super::*;
use crate::reading::Points;
use crate::verdict::{Action, Category, Limits, RuleActions};

fn check_with(
    category: Category,
    precision: Precision,
    actions: RuleActions,
    body: &str,
) -> Result<Verdict, Rejection> {
    let mut c = PointChecker::new(Limits::default(), actions, category);
    validate(&mut c, body.as_bytes(), precision, &mut ())
}

fn read(body: &str) -> Vec<Point> {
    let mut c = PointChecker::new(Limits::default(), RuleActions::default(), Category::Rum);
    let mut points = Points::default();
    match validate(&mut c, body.as_bytes(), Precision::Nanoseconds, &mut points) {
        Ok(_) => points.0,
        Err(e) => panic!("{body:?} rejected: {e}"),
    }
}

fn ok(body: &str) -> u64 {
    match check_with(
        Category::Logging,
        Precision::Nanoseconds,
        RuleActions::default(),
        body,
    ) {
        Ok(v) => v.points,
        Err(e) => panic!("{body:?} rejected: {e}"),
    }
}

fn bad(body: &str) -> Rejection {
    match check_with(
        Category::Tracing,
        Precision::Nanoseconds,
        RuleActions::default(),
        body,
    ) {
        Ok(v) => panic!("{body:?} accepted: {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn accepted_table() {
    let cases: &[(&str, u64)] = &[
        ("\n\n", 0),
        ("# comment only\n", 0),
        ("  # indented comment\n\t\n", 0),
        ("cpu status=1i", 1),
        ("cpu,host=a status=1i 1700000000000000000\n", 1),
        ("cpu status=1i 0", 1),
        ("cpu status=1i 5   ", 1),
        ("cpu status=1i   ", 1),
        ("cpu    status=1i", 1),
        ("  cpu status=1i", 1),
        ("# a [[\ncpu f=1i\n", 1),
        (" m,a=b f=\"x\ny\"\n", 1),
        (
            "cpu\\ load,ho\\,st=a\\ b\\=c status=-9223372036854775808i",
            1,
        ),
        ("cpu status=9223372036854775807i", 1),
        ("cpu status=18446744073709551615u", 1),
        ("cpu status=0000000000000000000000001i", 1),
        (
            "cpu status=1.5,a=-2,b=3e10,c=4.5E-3,d=6e+2,e=-0.0,f=1e-400",
            1,
        ),
        (
            "cpu status=t,a=T,b=true,c=True,d=TRUE,e=f,f=F,g=false,h=False,i=FALSE",
            1,
        ),
        (
            "log status=\"a \\\"quoted\\\" \\\\ back\\slash, = spaces\"",
            1,
        ),
        ("log status=\"multi\nline\nstring\" 1\nnext status=1i\n", 2),
        ("log status=\"\"", 1),
        ("log status=\"aGVsbG8=\"b,f=\"aGk=\"b,g=\"YWJj\"b", 1),
        (
            "log status=[1i,2i],a=[1u],b=[1.5,2],c=[true,F],d=[\"a\",\"b,c\"],e=[\"\"b]",
            1,
        ),
        ("m\\ x\\y status=1i", 1),
        ("log status=\"ünïcödé 日本\"", 1),
        ("log,tag=日本 status=1i", 1),
        ("m,t=[x] a=1i", 1),
        ("m a\\[=1i", 1),
        ("m a=[],b=1i", 1),
        ("m\u{1} f=1i", 1),
        ("cpu\tx,t=a\tb,k\0=v\r f\tx=1i,g\r=2i", 1),
        ("m,t\\\\ab=a\\\\b f=1i", 1),
        ("m f=1i 9223372036854775806", 1),
    ];
    for (body, points) in cases {
        assert_eq!(ok(body), *points, "{body:?}");
    }
}

#[test]
fn rejected_table() {
    let cases: &[(&str, Rule, usize)] = &[
        ("", Rule::EmptyBody, 0),
        ("cpu", Rule::MissingFields, 3),
        ("cpu\n", Rule::MissingFields, 3),
        ("cpu ", Rule::MissingFields, 4),
        ("cpu,host=a", Rule::MissingFields, 10),
        (",host=a f=1i", Rule::MissingMeasurement, 0),
        ("cpu,host f=1i", Rule::BadTag, 8),
        ("cpu,=a f=1i", Rule::EmptyKey, 4),
        ("cpu,host= f=1i", Rule::BadTag, 9),
        ("cpu,a,b=c f=1i", Rule::BadTag, 5),
        ("cpu,t=v=w f=1i", Rule::BadTag, 7),
        ("cpu f", Rule::BadField, 5),
        ("cpu f=", Rule::BadFieldValue, 6),
        ("cpu =1", Rule::EmptyKey, 4),
        ("cpu f=1i,", Rule::BadField, 9),
        ("cpu f=1x", Rule::BadFieldValue, 7),
        ("cpu f=9223372036854775808i", Rule::IntegerOverflow, 6),
        ("cpu f=-9223372036854775809i", Rule::IntegerOverflow, 6),
        ("cpu f=18446744073709551616u", Rule::IntegerOverflow, 6),
        ("cpu f=-1u", Rule::BadFieldValue, 6),
        ("cpu f=1.", Rule::BadFieldValue, 6),
        ("cpu f=.5", Rule::BadFieldValue, 6),
        ("cpu f=+5", Rule::BadFieldValue, 6),
        ("cpu f=1e", Rule::BadFieldValue, 6),
        ("cpu f=1e400", Rule::BadFieldValue, 6),
        ("cpu f=-1.5e309", Rule::BadFieldValue, 6),
        ("cpu f=1.5i", Rule::BadFieldValue, 9),
        ("cpu f=tru", Rule::BadFieldValue, 6),
        ("cpu f=truE", Rule::BadFieldValue, 6),
        ("cpu f=NaN", Rule::BadFieldValue, 6),
        ("cpu f=\"open", Rule::UnterminatedString, 6),
        ("cpu f=\"esc\\\"", Rule::UnterminatedString, 6),
        ("cpu f=\"a\"x", Rule::BadFieldValue, 9),
        ("cpu f=\"a$b\"b", Rule::BadBase64, 6),
        ("cpu f=\"abc\"b", Rule::BadBase64, 6),
        ("cpu f=\"a=bc\"b", Rule::BadBase64, 6),
        ("cpu f=\"\"b", Rule::EmptyBinary, 6),
        ("cpu f=[1i,2u]", Rule::BadArray, 10),
        ("cpu f=[1i,]", Rule::BadArray, 10),
        ("cpu f=[1i", Rule::BadArray, 9),
        ("cpu f=[[1i]]", Rule::BadArray, 7),
        ("cpu f=[\"a,b\",\"c\"]", Rule::BadArray, 7),
        ("cpu f=[1i, 2i]", Rule::BadFieldValue, 10),
        ("cpu a[b=1i", Rule::BracketInKey, 5),
        ("cpu a]=1i", Rule::BracketInKey, 5),
        ("cpu a=1i,\\\\[b=1i", Rule::BracketInKey, 11),
        ("cpu f=1i 12a", Rule::TrailingContent, 11),
        ("cpu f=1i 1 2", Rule::TrailingContent, 11),
        ("cpu f=1i 9223372036854775807", Rule::BadTimestamp, 9),
        ("cpu f=1i -5", Rule::NegativeTimestamp, 9),
        ("cpu f=1i\r", Rule::TrailingContent, 8),
        ("cpu f=1i\r\n", Rule::TrailingContent, 8),
        ("cpu f=1i 1\r\n", Rule::TrailingContent, 10),
        ("cpu\\", Rule::TrailingBackslash, 3),
        ("cpu\\\n f=1", Rule::TrailingBackslash, 3),
        ("cpu,t=a\\ f=1i", Rule::BadTag, 10),
        ("cpu \tf=1i", Rule::UnexpectedCharacter, 4),
        ("cpu  \0f=1i", Rule::UnexpectedCharacter, 5),
        ("cpu a\\\\=1i", Rule::AmbiguousEscape, 5),
        ("cpu,f=a,f=b g=2i", Rule::DuplicateTag, 8),
        ("# k=\"x\ncpu f=1i\n", Rule::BadComment, 0),
        ("# a [[x\ncpu f=1i\n", Rule::BadComment, 0),
        ("# a ]pu f=1i\n", Rule::BadComment, 0),
        (" m,t=] f=1i\n", Rule::TrailingContent, 1),
    ];
    for (body, rule, offset) in cases {
        let e = bad(body);
        assert_eq!((e.rule, e.offset), (*rule, *offset), "{body:?}: {e}");
    }
}

#[test]
fn reading_unescapes_per_position_as_guance_does() {
    let p =
        &read("m\\,e\\ a\\=s\\\"u\\\\r\\q,t\\,k\\\"=v\\=a\\\"l f\\,k\\\"=\"s\\\\t\\\"r\\q\"\n")[0];
    assert_eq!(p.name, b"m,e a=s\"u\\\\r\\q");
    assert_eq!(p.tags, vec![(b"t,k\\\"".to_vec(), b"v=a\\\"l".to_vec())]);
    assert_eq!(
        p.fields,
        vec![(b"f,k\"".to_vec(), Value::Str(b"s\\t\"r\\q".to_vec()))]
    );
    // A run of backslashes escapes the separator after it, as Guance's scanners read it.
    let p = &read("m,t=a\\\\ b f=1i")[0];
    assert_eq!(p.tags, vec![(b"t".to_vec(), b"a\\ b".to_vec())]);
}

#[test]
fn reading_types_values_and_times() {
    let p = &read("m i=-5i,u=5u,f=2.5,g=3,b=T,s=\"x\",d=\"aGk=\"b,a=[1i,2i],e=[\"aGk=\"b] 17\n")[0];
    assert_eq!(p.time, Time::At(17));
    let v: Vec<&Value> = p.fields.iter().map(|(_, v)| v).collect();
    assert_eq!(
        v,
        [
            &Value::Int(-5),
            &Value::Uint(5),
            &Value::Float(2.5),
            &Value::Float(3.0),
            &Value::Bool(true),
            &Value::Str(b"x".to_vec()),
            &Value::Bytes(b"hi".to_vec()),
            &Value::Array(vec![Value::Int(1), Value::Int(2)]),
            &Value::Array(vec![Value::Bytes(b"hi".to_vec())]),
        ]
    );
    assert_eq!(read("m f=1i 0")[0].time, Time::Unset);
    // Guance drops a field holding an empty array, before it looks for duplicates.
    let p = &read("m a=1i,a=[],b=[],c=2i")[0];
    assert_eq!(
        p.fields,
        vec![
            (b"a".to_vec(), Value::Int(1)),
            (b"c".to_vec(), Value::Int(2))
        ]
    );
    assert_eq!(read("m f=1i")[0].time, Time::Unset);
}

#[test]
fn counted_duplicates_read_as_guance_keeps_them() {
    // Guance keeps the last of two fields with one key, and a tag over a field.
    let p = &read("m,a=t a=1i,b=1i,b=2i\n")[0];
    assert_eq!(p.tags, vec![(b"a".to_vec(), b"t".to_vec())]);
    assert_eq!(p.fields, vec![(b"b".to_vec(), Value::Int(2))]);
    let strict = RuleActions {
        duplicate_key: Action::Reject,
        ..RuleActions::default()
    };
    let e = check_with(Category::Rum, Precision::Nanoseconds, strict, "m a=1i,a=2i").unwrap_err();
    assert_eq!(e.rule, Rule::DuplicateKey);
}

#[test]
fn rejection_reports_line_number_offset_and_excerpt() {
    let body = "ok f=1i\n# comment\n\nok f=2i\nbad f=1x 123\nok f=3i\n";
    let e = bad(body);
    assert_eq!(e.position, Position::Line(5));
    assert_eq!(e.offset, body.find("1x").unwrap() + 1);
    assert_eq!(e.excerpt.as_bytes(), b"bad f=1x 123");
    assert!(e.excerpt.is_truncated());
    assert!(e.to_string().starts_with("line 5, byte"), "{e}");
}

#[test]
fn line_numbers_count_newlines_inside_strings() {
    let body = "a f=\"x\ny\nz\"\nbad\n";
    assert_eq!(bad(body).position, Position::Line(4));
}

#[test]
fn invalid_utf8_counted_by_default_and_rejected_on_request() {
    let mut body = b"ok f=1i\nok f=\"abc".to_vec();
    body.push(0xff);
    body.extend_from_slice(b"\"\n");
    let mut c = PointChecker::new(Limits::default(), RuleActions::default(), Category::Rum);
    let v = validate(&mut c, &body, Precision::Nanoseconds, &mut ()).unwrap();
    assert_eq!((v.points, v.counted.invalid_utf8), (2, 1));
    let strict = RuleActions {
        invalid_utf8: Action::Reject,
        ..RuleActions::default()
    };
    let mut c = PointChecker::new(Limits::default(), strict, Category::Rum);
    let e = validate(&mut c, &body, Precision::Nanoseconds, &mut ()).unwrap_err();
    assert_eq!(
        (e.rule, e.position, e.offset),
        (Rule::InvalidUtf8, Position::Line(2), 17)
    );
}

#[test]
fn precision_scales_overflows_and_needs_timestamps() {
    let cats = (Category::Network, RuleActions::default());
    let body = "m f=1i 9223372036\n";
    assert!(check_with(cats.0, Precision::Seconds, cats.1, body).is_ok());
    let body = "m f=1i 9223372037\n";
    let e = check_with(cats.0, Precision::Seconds, cats.1, body).unwrap_err();
    assert_eq!(e.rule, Rule::BadTimestamp);
    let body = "m f=1i 2562047\n";
    assert!(check_with(cats.0, Precision::Hours, cats.1, body).is_ok());
    let body = "m f=1i 2562048\n";
    assert!(check_with(cats.0, Precision::Hours, cats.1, body).is_err());
    let e = check_with(cats.0, Precision::Seconds, cats.1, "m f=1i\n").unwrap_err();
    assert_eq!(e.rule, Rule::TimestampRequired);
    assert!(check_with(cats.0, Precision::Seconds, cats.1, "m f=1i 0\n").is_ok());
}

#[test]
fn metric_string_field_counted_or_rejected() {
    let count = RuleActions::default();
    let body = "cpu f=\"s\",g=\"t\"\ncpu f=1i\ncpu f=\"x\"\n";
    let v = check_with(Category::Metric, Precision::Nanoseconds, count, body).unwrap();
    assert_eq!((v.points, v.counted.metric_string_field), (3, 2));
    let reject = RuleActions {
        metric_string_field: Action::Reject,
        ..count
    };
    for body in ["cpu f=\"s\"", "cpu f=\"aGk=\"b", "cpu f=[\"a\"]"] {
        let e = check_with(Category::Metric, Precision::Nanoseconds, reject, body).unwrap_err();
        assert_eq!(e.rule, Rule::MetricStringField, "{body}");
    }
    assert!(
        check_with(
            Category::Metric,
            Precision::Nanoseconds,
            reject,
            "cpu f=[1i]"
        )
        .is_ok()
    );
}

#[test]
fn logging_and_object_rules() {
    let a = RuleActions {
        reserved_key: Action::Reject,
        ..RuleActions::default()
    };
    let n = Precision::Nanoseconds;
    let e = check_with(Category::Logging, n, a, "nginx,source=x status=\"ok\"").unwrap_err();
    assert_eq!(e.rule, Rule::ReservedKey);
    let e = check_with(Category::Logging, n, a, "nginx status=\"ok\",date=1i").unwrap_err();
    assert_eq!((e.rule, e.offset), (Rule::ReservedKey, 18));
    let e = check_with(Category::Object, n, a, "host,class=x name=\"a\"").unwrap_err();
    assert_eq!(e.rule, Rule::ReservedKey);
    let e = check_with(Category::CustomObject, n, a, "h name=\"a\",date=1i").unwrap_err();
    assert_eq!(e.rule, Rule::ReservedKey);
    let v = check_with(
        Category::Logging,
        n,
        RuleActions::default(),
        "n,source=x a=1i",
    )
    .unwrap();
    assert_eq!(v.counted.reserved_key, 1);
    let v = check_with(Category::Logging, n, a, "nginx message=\"no status\"").unwrap();
    assert_eq!(v.counted.missing_expected_key, 1);
    let v = check_with(Category::Object, n, a, "host,name=a cpu=1i").unwrap();
    assert!(v.counted.is_empty());
    let strict = RuleActions {
        missing_expected_key: Action::Reject,
        ..a
    };
    let e = check_with(Category::Object, n, strict, "host cpu=1i").unwrap_err();
    assert_eq!(e.rule, Rule::MissingExpectedKey);
}

#[test]
fn limits_enforced() {
    let limits = Limits {
        max_tags: 2,
        max_fields: 2,
        max_key_bytes: 4,
        max_tag_value_bytes: 3,
        max_field_value_bytes: 5,
        max_measurement_bytes: 4,
        max_line_bytes: 40,
    };
    let check = |body: &str| {
        let mut c = PointChecker::new(limits, RuleActions::default(), Category::Rum);
        validate(&mut c, body.as_bytes(), Precision::Nanoseconds, &mut ()).map_err(|e| e.rule)
    };
    assert!(check("abcd,a=b,c=d e=1i,f=\"12345\"").is_ok());
    assert!(
        check("ab\\ d,a=b\\ c e=\"1\\\"345\"").is_ok(),
        "lengths are unescaped"
    );
    assert_eq!(check("abcde f=1i"), Err(Rule::MeasurementTooLong));
    assert_eq!(check("a,a=b,c=d,e=f g=1i"), Err(Rule::TooManyTags));
    assert_eq!(check("a e=1i,f=1i,g=1i"), Err(Rule::TooManyFields));
    assert_eq!(check("a abcde=1i"), Err(Rule::KeyTooLong));
    assert_eq!(check("a,t=abcd f=1i"), Err(Rule::TagValueTooLong));
    assert_eq!(check("a f=\"123456\""), Err(Rule::FieldValueTooLong));
    assert_eq!(check("a f=\"MTIzNDU2\"b"), Err(Rule::FieldValueTooLong));
    assert_eq!(check("a f=[\"123456\"]"), Err(Rule::FieldValueTooLong));
    assert_eq!(
        check("a f=1i 10000000000000000000000000"),
        Err(Rule::BadTimestamp)
    );
    assert_eq!(
        check("a f=1i,g=1.000000000000000000000000000000"),
        Err(Rule::LineTooLong)
    );
}

#[test]
fn series_key_over_65535_bytes_refused() {
    let limits = Limits {
        max_tag_value_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut c = PointChecker::new(limits, RuleActions::default(), Category::Rum);
    // "m,t=" + value, then 4 separator bytes and the key "f": at most 65,535.
    let long = "v".repeat(65_535 - 4 - 4 - 1);
    let ok = format!("m,t={long} f=1i");
    assert!(validate(&mut c, ok.as_bytes(), Precision::Nanoseconds, &mut ()).is_ok());
    let over = format!("m,t={long}v f=1i");
    let e = validate(&mut c, over.as_bytes(), Precision::Nanoseconds, &mut ()).unwrap_err();
    assert_eq!(e.rule, Rule::SeriesKeyTooLong);
}

#[test]
fn go_scan_line_follows_quotes_and_brackets() {
    assert_eq!(go_scan_line(b"m f=1i\nx", 0), 6);
    assert_eq!(go_scan_line(b"m f=\"a\nb\"\nx", 0), 9);
    assert_eq!(go_scan_line(b"# k=\"a\nb\"\nx", 0), 9);
    assert_eq!(go_scan_line(b"# [[x\n", 0), 4);
    assert_eq!(go_scan_line(b"# ]x\n", 0), 3);
    assert_eq!(go_scan_line(b"m\\\nf\n", 0), 4);
}

#[test]
fn base64_len_rules() {
    assert_eq!(base64_len(b""), Some(0));
    assert_eq!(base64_len(b"aGk="), Some(2));
    assert_eq!(base64_len(b"aA=="), Some(1));
    assert_eq!(base64_len(b"YWJj"), Some(3));
    assert_eq!(base64_len(b"YW=j"), None);
    assert_eq!(base64_len(b"Y==="), None);
    assert_eq!(base64_len(b"YWJ"), None);
    assert_eq!(base64_decode(b"YWJjZA=="), b"abcd");
}
