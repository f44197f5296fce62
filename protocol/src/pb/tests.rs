//! The protobuf validator's tests: what Guance's decoder accepts and refuses, case by case.

use super::*;
use crate::reading::Points;
use crate::verdict::{Action, Category, Limits, RuleActions};

/// A tiny protobuf writer for hand-made cases.
#[derive(Default)]
struct W(Vec<u8>);
impl W {
    fn varint(mut self, mut v: u64) -> Self {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }
    fn tag(self, n: u32, wire: u8) -> Self {
        self.varint(u64::from(n) << 3 | u64::from(wire))
    }
    fn len(self, n: u32, bytes: &[u8]) -> Self {
        let mut w = self.tag(n, LEN).varint(bytes.len() as u64);
        w.0.extend_from_slice(bytes);
        w
    }
    fn int(self, n: u32, v: u64) -> Self {
        self.tag(n, VARINT).varint(v)
    }
    fn f64(self, n: u32, v: f64) -> Self {
        let mut w = self.tag(n, I64);
        w.0.extend_from_slice(&v.to_le_bytes());
        w
    }
}

fn f_int(key: &str, v: u64) -> Vec<u8> {
    W::default().len(1, key.as_bytes()).int(2, v).0
}
fn f_str(key: &str, v: &str, tag: bool) -> Vec<u8> {
    W::default()
        .len(1, key.as_bytes())
        .len(11, v.as_bytes())
        .int(8, u64::from(tag))
        .0
}
fn pt(name: &str, fields: &[Vec<u8>]) -> Vec<u8> {
    let mut w = W::default().len(1, name.as_bytes());
    for f in fields {
        w = w.len(2, f);
    }
    w.int(3, 1_700_000_000_000_000_000).0
}
fn batch(points: &[Vec<u8>]) -> Vec<u8> {
    let mut w = W::default();
    for p in points {
        w = w.len(1, p);
    }
    w.0
}
fn run(category: Category, body: &[u8]) -> Result<Verdict, Rejection> {
    let mut c = PointChecker::new(Limits::default(), RuleActions::default(), category);
    validate(&mut c, body, Precision::Nanoseconds, &mut ())
}
fn read(body: &[u8]) -> Vec<Point> {
    let mut c = PointChecker::new(Limits::default(), RuleActions::default(), Category::Rum);
    let mut points = Points::default();
    validate(&mut c, body, Precision::Nanoseconds, &mut points).expect("accepted");
    points.0
}
fn rule(category: Category, body: &[u8]) -> Rule {
    run(category, body).expect_err("must be rejected").rule
}

#[test]
fn valid_batch_counts_points() {
    let body = batch(&[
        pt("cpu", &[f_str("host", "a", true), f_int("usage", 5)]),
        pt("mem", &[W::default().len(1, b"free").f64(4, 1.5).0]),
    ]);
    assert_eq!(run(Category::Metric, &body).unwrap().points, 2);
    assert_eq!(run(Category::Metric, &[]).unwrap().points, 0);
}

#[test]
fn auxiliary_warns_and_debugs_tolerated() {
    let warn = W::default().len(1, b"type").len(2, b"msg").0;
    let debug = W::default().len(1, b"info").0;
    let mut p = pt("cpu", &[f_int("usage", 5)]);
    p.extend(W::default().len(4, &warn).len(5, &debug).0);
    assert_eq!(run(Category::Metric, &batch(&[p])).unwrap().points, 1);
    let bad_warn = W::default().len(3, b"x").0;
    let mut p = pt("cpu", &[f_int("usage", 5)]);
    p.extend(W::default().len(4, &bad_warn).0);
    assert_eq!(rule(Category::Metric, &batch(&[p])), Rule::UnknownField);
}

#[test]
fn any_array_and_map_accepted_and_checked() {
    let elems = W::default()
        .len(1, &W::default().int(1, 5).0)
        .len(1, &W::default().int(1, 6).0);
    let any = W::default().len(1, ARRAY_TYPE_URL).len(2, &elems.0);
    let f = W::default().len(1, b"arr").len(7, &any.0).0;
    assert!(run(Category::Metric, &batch(&[pt("m", &[f])])).is_ok());

    let entry = W::default()
        .len(1, b"k")
        .len(2, &W::default().len(6, b"v").0);
    let map = W::default().len(1, &entry.0);
    let any = W::default().len(2, &map.0).len(1, MAP_TYPE_URL);
    let f = W::default().len(1, b"map").len(7, &any.0).0;
    let body = batch(&[pt("m", std::slice::from_ref(&f))]);
    assert!(run(Category::Logging, &body).is_ok());
    assert_eq!(
        run(Category::Metric, &body)
            .unwrap()
            .counted
            .metric_string_field,
        1
    );
    assert_eq!(
        read(&body)[0].fields[0].1,
        Reading::Map(vec![(b"k".to_vec(), Reading::Str(b"v".to_vec()))])
    );

    let any = W::default()
        .len(1, b"type.googleapis.com/point.Other")
        .len(2, &map.0);
    let f = W::default().len(1, b"x").len(7, &any.0).0;
    assert_eq!(
        rule(Category::Logging, &batch(&[pt("m", &[f])])),
        Rule::BadAnyType
    );

    let bad_utf8 = W::default().len(1, &W::default().len(6, &[0xff]).0);
    let any = W::default().len(1, ARRAY_TYPE_URL).len(2, &bad_utf8.0);
    let f = W::default().len(1, b"x").len(7, &any.0).0;
    let v = run(Category::Logging, &batch(&[pt("m", &[f])])).unwrap();
    assert_eq!(v.counted.invalid_utf8, 1);
}

#[test]
fn schema_violations_rejected() {
    let c = Category::Logging;
    // top level: unknown field, wrong wire type
    assert_eq!(rule(c, &W::default().len(2, b"").0), Rule::UnknownField);
    assert_eq!(rule(c, &W::default().int(1, 3).0), Rule::WrongWireType);
    // truncated length and truncated varint
    assert_eq!(rule(c, &[0x0a, 0x05, 0x01]), Rule::Truncated);
    assert_eq!(rule(c, &[0x0a, 0x80]), Rule::Truncated);
    // eleven-byte varint, and a tenth byte > 1
    let mut long = vec![0x0a];
    long.extend([0xff; 10]);
    long.push(0x00);
    assert_eq!(rule(c, &long), Rule::BadVarint);
    let mut ten = vec![0x0a];
    ten.extend([0xff; 9]);
    ten.push(0x02);
    assert_eq!(rule(c, &ten), Rule::BadVarint);
    // field number 0, group wire type
    assert_eq!(rule(c, &[0x02, 0x00]), Rule::UnknownField);
    assert_eq!(rule(c, &[0x0b]), Rule::WrongWireType);
    // point: name as varint
    let p = W::default().int(1, 5).0;
    assert_eq!(rule(c, &batch(&[p])), Rule::WrongWireType);
    // field: i as a string
    let f = W::default().len(1, b"k").len(2, b"x").0;
    assert_eq!(rule(c, &batch(&[pt("m", &[f])])), Rule::WrongWireType);
    // field: unknown number 13
    let f = W::default().len(1, b"k").int(2, 1).int(13, 1).0;
    assert_eq!(rule(c, &batch(&[pt("m", &[f])])), Rule::UnknownField);
}

#[test]
fn point_model_violations_rejected() {
    let c = Category::Logging;
    assert_eq!(
        rule(c, &batch(&[pt("", &[f_int("a", 1)])])),
        Rule::MissingMeasurement
    );
    let f = W::default().len(1, b"k").int(2, 1).int(8, 1).0;
    assert_eq!(rule(c, &batch(&[pt("m", &[f])])), Rule::TagNotString);
    let f = W::default().len(1, b"k").int(8, 1).0;
    assert_eq!(rule(c, &batch(&[pt("m", &[f])])), Rule::TagNotString);
    let f = W::default().int(2, 1).0;
    assert_eq!(rule(c, &batch(&[pt("m", &[f])])), Rule::EmptyKey);
    for (key, value) in [("a\\", "x"), ("a\nb", "x"), ("t", "v\\"), ("t", "v\nw")] {
        let f = f_str(key, value, true);
        assert_eq!(
            rule(c, &batch(&[pt("m", &[f])])),
            Rule::NewlineOrTrailingBackslash,
            "{key:?}={value:?}"
        );
    }
    let e = run(c, &batch(&[pt("ok", &[f_int("a", 1)]), pt("", &[])])).unwrap_err();
    assert_eq!(e.position, Position::Point(Some(1)));
}

#[test]
fn what_datakit_sends_is_accepted() {
    let c = Category::Logging;
    // A field with no value (DataKit's Pipeline: add_key(x, nil)) and a point with tags only
    // (DataKit's metric checker strips a metric's only string field).
    let nil = W::default().len(1, b"k").0;
    let body = batch(&[
        pt("m", &[f_int("a", 1), nil]),
        pt("t", &[f_str("host", "h", true)]),
    ]);
    assert_eq!(run(c, &body).unwrap().points, 2);
    let points = read(&body);
    assert_eq!(points[0].fields[1], (b"k".to_vec(), Reading::None));
    assert!(points[1].fields.is_empty());
    // A string field in a metric, bytes that are not UTF-8: counted.
    let f = f_str("k", "\u{ff}", false);
    let mut bad = f.clone();
    let pos = bad.iter().rposition(|&x| x == 0xbf).unwrap();
    bad[pos] = 0xff;
    let v = run(c, &batch(&[pt("m", &[bad])])).unwrap();
    assert_eq!(v.counted.invalid_utf8, 1);
    let v = run(Category::Metric, &batch(&[pt("m", &[f])])).unwrap();
    assert_eq!(v.counted.metric_string_field, 1);
    let reject = RuleActions {
        metric_string_field: Action::Reject,
        ..RuleActions::default()
    };
    let bytes = W::default().len(1, b"k").len(6, &[0xff]).0;
    let mut checker = PointChecker::new(Limits::default(), reject, Category::Metric);
    let e = validate(
        &mut checker,
        &batch(&[pt("m", &[bytes])]),
        Precision::Nanoseconds,
        &mut (),
    )
    .unwrap_err();
    assert_eq!(e.rule, Rule::MetricStringField);
}

#[test]
fn reading_follows_guance() {
    let inf = W::default().len(1, b"inf").f64(4, f64::INFINITY).0;
    let nan = W::default().len(1, b"nan").f64(4, f64::NAN).0;
    let p = &read(&batch(&[pt(
        "m",
        &[f_str("host", "h", true), f_int("a", 7), inf, nan],
    )]))[0];
    assert_eq!(p.name, b"m");
    assert_eq!(p.time, Time::At(1_700_000_000_000_000_000));
    assert_eq!(p.tags, vec![(b"host".to_vec(), b"h".to_vec())]);
    assert_eq!(p.fields[0], (b"a".to_vec(), Reading::Int(7)));
    assert_eq!(
        p.fields[1],
        (b"inf".to_vec(), Reading::Float(u64::MAX as f64))
    );
    assert!(matches!(p.fields[2].1, Reading::Float(f) if f.is_nan()));
    // Time 0 is "no timestamp"; a precision multiplies the others.
    let zero = W::default().len(1, b"m").len(2, &f_int("a", 1)).0;
    assert_eq!(read(&batch(&[zero]))[0].time, Time::Unset);
    let mut c = PointChecker::new(Limits::default(), RuleActions::default(), Category::Rum);
    let mut points = Points::default();
    let secs = W::default().len(1, b"m").len(2, &f_int("a", 1)).int(3, 5).0;
    validate(&mut c, &batch(&[secs]), Precision::Seconds, &mut points).unwrap();
    assert_eq!(points.0[0].time, Time::At(5_000_000_000));
    let big = W::default()
        .len(1, b"m")
        .len(2, &f_int("a", 1))
        .int(3, 1 << 62)
        .0;
    let e = validate(&mut c, &batch(&[big]), Precision::Seconds, &mut ()).unwrap_err();
    assert_eq!(e.rule, Rule::BadTimestamp);
}

#[test]
fn counted_duplicates_read_as_guance_compacts_them() {
    let key = |k: &str| k.as_bytes().to_vec();
    let names = |body: &[u8]| -> Vec<Vec<u8>> {
        let p = &read(body)[0];
        p.tags
            .iter()
            .map(|(k, _)| k.clone())
            .chain(p.fields.iter().map(|(k, _)| k.clone()))
            .collect()
    };
    // [a, a]: both dropped; [a, b, a]: the second a survives.
    assert!(names(&batch(&[pt("m", &[f_int("a", 1), f_int("a", 2)])])).is_empty());
    let p = &read(&batch(&[pt(
        "m",
        &[f_int("a", 1), f_int("b", 2), f_int("a", 3)],
    )]))[0];
    assert_eq!(
        p.fields,
        vec![(key("b"), Reading::Int(2)), (key("a"), Reading::Int(3))]
    );
    assert_eq!(
        names(&batch(&[pt(
            "m",
            &[f_int("a", 1), f_int("b", 2), f_int("a", 3), f_int("a", 4)]
        )])),
        vec![key("b")]
    );
}

#[test]
fn last_value_of_oneof_wins() {
    // s then i: the value is an integer, allowed in metric
    let f = W::default().len(1, b"k").len(11, b"x").int(2, 1).0;
    assert!(run(Category::Metric, &batch(&[pt("m", &[f])])).is_ok());
    // i then s: a string
    let f = W::default().len(1, b"k").int(2, 1).len(11, b"x").0;
    let body = batch(&[pt("m", &[f])]);
    assert_eq!(
        run(Category::Metric, &body)
            .unwrap()
            .counted
            .metric_string_field,
        1
    );
    assert_eq!(read(&body)[0].fields[0].1, Reading::Str(b"x".to_vec()));
}

#[test]
fn limits_apply() {
    let limits = Limits {
        max_tag_value_bytes: 2,
        max_field_value_bytes: 3,
        ..Limits::default()
    };
    let mut c = PointChecker::new(limits, RuleActions::default(), Category::Logging);
    let n = Precision::Nanoseconds;
    let body = batch(&[pt("m", &[f_str("t", "abc", true), f_int("x", 1)])]);
    assert_eq!(
        validate(&mut c, &body, n, &mut ()).unwrap_err().rule,
        Rule::TagValueTooLong
    );
    let body = batch(&[pt("m", &[f_str("t", "abcd", false)])]);
    assert_eq!(
        validate(&mut c, &body, n, &mut ()).unwrap_err().rule,
        Rule::FieldValueTooLong
    );
}

/// The shortcuts for the fields DataKit writes read every input as the general path does:
/// DataKit-shaped batches, and every truncation and one-byte change of them (each byte set to
/// a few values that matter to the wire format).
#[test]
fn shortcuts_read_every_input_as_the_general_path() {
    let any = W::default()
        .len(1, ARRAY_TYPE_URL)
        .len(2, &W::default().len(1, &W::default().int(1, 7).0).0)
        .0;
    let fields = [
        f_int("usage", 42),
        f_str("host", "a", true),
        f_str("msg", "hello", false),
        W::default().len(1, b"f").f64(4, 1.5).int(9, 1).0,
        W::default().len(1, b"u").int(3, 7).int(5, 1).0,
        W::default().len(1, b"arr").len(7, &any).0,
        W::default()
            .len(1, b"d")
            .len(6, b"\x00\xff")
            .len(10, b"unit")
            .0,
    ];
    let batches = [
        batch(&[pt("cpu", &fields), pt("mem", &fields[..2])]),
        batch(&[W::default()
            .len(1, b"x")
            .len(2, &fields[0])
            .len(4, &W::default().len(1, b"w").len(2, b"m").0)
            .0]),
    ];
    let mut cases = 0;
    for body in &batches {
        for category in crate::Category::ALL {
            assert!(shortcuts_agree(category, body));
        }
        for cut in 0..body.len() {
            assert!(
                shortcuts_agree(crate::Category::Metric, &body[..cut]),
                "cut at {cut}"
            );
            cases += 1;
        }
        for at in 0..body.len() {
            for byte in [
                0x00, 0x01, 0x08, 0x0a, 0x10, 0x12, 0x18, 0x40, 0x48, 0x5a, 0x7f, 0x80, 0xff,
            ] {
                let mut mutant = body.clone();
                mutant[at] = byte;
                assert!(
                    shortcuts_agree(crate::Category::Metric, &mutant),
                    "byte {at} set to {byte:#04x}"
                );
                cases += 1;
            }
        }
    }
    assert!(cases > 1000, "{cases}");
}
