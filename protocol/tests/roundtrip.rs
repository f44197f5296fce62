//! Property tests: random points of the kind DataKit's checker lets out (no trailing backslash
//! or newline in a key or tag value, positive timestamps, non-empty arrays), encoded as line
//! protocol, JSON and protobuf, are accepted and read back as exactly those points (JSON
//! numbers as floats, as Guance reads them); `prost` agrees on every protobuf batch we accept;
//! random mutations never panic.

#[path = "support/model.rs"]
#[expect(
    dead_code,
    unreachable_pub,
    reason = "a shared model; each test uses part of it"
)]
mod model;

use model::{Point, Value, batch_json, batch_lp, batch_pb};
use oneway_protocol::reading::{Point as Read, Time, Value as ReadValue};
use oneway_protocol::{BodyKind, Category, Precision, Rule, Validator};
use proptest::prelude::*;

fn text(first: &'static str, rest: &'static str) -> impl Strategy<Value = String> {
    // Characters that exercise escapes, quotes, UTF-8 and the JSON escapes.
    (
        proptest::string::string_regex(first).expect("valid regex"),
        proptest::string::string_regex(rest).expect("valid regex"),
    )
        .prop_map(|(a, b)| a + &b)
}

fn key() -> impl Strategy<Value = String> {
    text("[a-zA-Z_é日]", "[a-zA-Z0-9_ ,=.é日-]{0,12}")
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::Uint),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        text("", "[a-zA-Z0-9 ,=\\\\\"\n\t{}é日😀]{0,20}").prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 1..20).prop_map(Value::Bytes),
        proptest::collection::vec(any::<i64>(), 1..4).prop_map(Value::IntArray),
        (
            text("", "[a-z\"\\\\]{0,5}"),
            proptest::collection::vec(text("", "[a-z\"\\\\,]{0,5}"), 0..3)
        )
            .prop_map(|(first, rest)| Value::StrArray(
                std::iter::once(first).chain(rest).collect()
            )),
    ]
}

fn point() -> impl Strategy<Value = Point> {
    (
        text("[a-zA-Z_é]", "[a-zA-Z0-9_ ,=.é-]{0,12}"),
        proptest::collection::btree_map(key(), text("[a-z0-9é]", "[a-zA-Z0-9 ,=.é-]{0,12}"), 0..5),
        proptest::collection::btree_map(key(), value(), 1..6),
        proptest::option::of(1..i64::MAX - 1),
    )
        .prop_map(|(name, tags, fields, time)| {
            let fields = fields
                .into_iter()
                .filter(|(k, _)| !tags.contains_key(k))
                .collect::<Vec<_>>();
            Point {
                name,
                tags: tags.into_iter().collect(),
                fields,
                time,
            }
        })
        .prop_filter("a point needs a field", |p| !p.fields.is_empty())
}

fn read(kind: BodyKind, category: Category, body: &[u8]) -> Result<Vec<Read>, Rule> {
    Validator::default()
        .read(kind, category, Precision::Nanoseconds, body)
        .map(|(_, points)| points)
        .map_err(|r| r.rule)
}

/// How Guance reads a model point written in `kind`.
fn expected(p: &Point, kind: BodyKind) -> Read {
    let json = kind == BodyKind::Json;
    let value = |v: &Value| match v {
        Value::Int(x) if json => ReadValue::Float(*x as f64),
        Value::Uint(x) if json => ReadValue::Float(*x as f64),
        Value::Int(x) => ReadValue::Int(*x),
        Value::Uint(x) => ReadValue::Uint(*x),
        Value::Float(x) => ReadValue::Float(*x),
        Value::Bool(x) => ReadValue::Bool(*x),
        Value::Str(s) => ReadValue::Str(s.clone().into_bytes()),
        // JSON has no bytes: the model writes them as a base64 string.
        Value::Bytes(b) if json => ReadValue::Str(model::base64(b).into_bytes()),
        Value::Bytes(b) => ReadValue::Bytes(b.clone()),
        Value::IntArray(a) if json => {
            ReadValue::Array(a.iter().map(|x| ReadValue::Float(*x as f64)).collect())
        }
        Value::IntArray(a) => ReadValue::Array(a.iter().map(|x| ReadValue::Int(*x)).collect()),
        Value::StrArray(a) => ReadValue::Array(
            a.iter()
                .map(|x| ReadValue::Str(x.clone().into_bytes()))
                .collect(),
        ),
    };
    Read {
        name: p.name.clone().into_bytes(),
        tags: p
            .tags
            .iter()
            .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
            .collect(),
        fields: p
            .fields
            .iter()
            .map(|(k, v)| (k.clone().into_bytes(), value(v)))
            .collect(),
        time: p.time.map_or(Time::Unset, Time::At),
    }
}

/// A string array whose first element holds a comma is one Guance cannot type (dropped).
fn lp_expressible(points: &[Point]) -> bool {
    points.iter().all(|p| {
        p.fields.iter().all(|(_, v)| match v {
            Value::StrArray(a) => !a[0].contains(','),
            _ => true,
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn line_protocol_random_points_read_back(points in proptest::collection::vec(point(), 1..20)) {
        prop_assume!(lp_expressible(&points));
        let body = batch_lp(&points);
        let want: Vec<Read> = points.iter().map(|p| expected(p, BodyKind::LineProtocol)).collect();
        prop_assert_eq!(read(BodyKind::LineProtocol, Category::Rum, body.as_bytes()), Ok(want), "{}", body);
    }

    #[test]
    fn json_random_points_read_back(points in proptest::collection::vec(point(), 0..20)) {
        let body = batch_json(&points);
        let want: Vec<Read> = points.iter().map(|p| expected(p, BodyKind::Json)).collect();
        prop_assert_eq!(read(BodyKind::Json, Category::Rum, body.as_bytes()), Ok(want), "{}", body);
    }

    #[test]
    fn protobuf_random_points_read_back_and_prost_agrees(points in proptest::collection::vec(point(), 0..20)) {
        let body = batch_pb(&points);
        let want: Vec<Read> = points.iter().map(|p| expected(p, BodyKind::Protobuf)).collect();
        prop_assert_eq!(read(BodyKind::Protobuf, Category::Rum, &body), Ok(want));
        let decoded = <model::PbPoints as prost::Message>::decode(&body[..]).unwrap();
        prop_assert_eq!(decoded.arr.len(), points.len());
    }

    #[test]
    fn metric_category_string_fields_counted_in_every_format(points in proptest::collection::vec(point(), 1..8)) {
        prop_assume!(lp_expressible(&points));
        let with_string = points.iter().filter(|p| p.fields.iter().any(|(_, v)| {
            matches!(v, Value::Str(_) | Value::Bytes(_) | Value::StrArray(_))
        })).count() as u64;
        let counted = |kind, body: &[u8]| {
            Validator::default()
                .validate(kind, Category::Metric, Precision::Nanoseconds, body)
                .map(|v| v.counted.metric_string_field)
        };
        prop_assert_eq!(counted(BodyKind::LineProtocol, batch_lp(&points).as_bytes()), Ok(with_string));
        prop_assert_eq!(counted(BodyKind::Protobuf, &batch_pb(&points)), Ok(with_string));
    }

    #[test]
    fn mutated_bodies_never_panic_and_accepted_protobuf_decodes_in_prost(
        points in proptest::collection::vec(point(), 1..6),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mutate = |mut body: Vec<u8>| {
            for (at, byte, op) in &edits {
                if body.is_empty() { break; }
                let i = at.index(body.len());
                match op {
                    0 => body[i] = *byte,
                    1 => { body.remove(i); }
                    _ => body.insert(i, *byte),
                }
            }
            body
        };
        let lp = mutate(batch_lp(&points).into_bytes());
        let json = mutate(batch_json(&points).into_bytes());
        let pb = mutate(batch_pb(&points));
        for category in [Category::Metric, Category::Logging, Category::Object] {
            let _ = read(BodyKind::LineProtocol, category, &lp);
            let _ = read(BodyKind::Json, category, &json);
            if let Ok(points) = read(BodyKind::Protobuf, category, &pb) {
                let decoded = <model::PbPoints as prost::Message>::decode(&pb[..]);
                // prost refuses invalid UTF-8 in strings; Guance (and we) keep the bytes.
                if let Ok(decoded) = decoded {
                    prop_assert_eq!(decoded.arr.len(), points.len());
                }
            }
        }
    }
}

#[test]
fn protobuf_prost_decodable_point_with_unknown_field_rejected_by_design() {
    // prost and Guance skip unknown fields; the validator refuses what it cannot validate.
    let mut body = batch_pb(&[Point {
        name: "m".into(),
        tags: vec![],
        fields: vec![("f".into(), Value::Int(1))],
        time: None,
    }]);
    body.extend_from_slice(&[0x10, 0x01]); // field 2, varint: not in PBPoints
    assert!(<model::PbPoints as prost::Message>::decode(&body[..]).is_ok());
    assert_eq!(
        read(BodyKind::Protobuf, Category::Rum, &body),
        Err(Rule::UnknownField)
    );
}
