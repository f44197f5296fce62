//! Property tests: random points, encoded as line protocol, JSON and protobuf, validate with
//! the same point count; `prost` is the oracle for protobuf; random mutations never panic, and
//! a mutated protobuf batch we accept is one `prost` decodes to the same number of points.

#[path = "support/model.rs"]
#[expect(
    dead_code,
    unreachable_pub,
    reason = "a shared model; each test uses part of it"
)]
mod model;

use model::{Point, Value, batch_json, batch_lp, batch_pb};
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
    text("[a-zA-Z_é日]", "[a-zA-Z0-9_ ,=\\\\.é日\"-]{0,12}")
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
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        proptest::collection::vec(any::<i64>(), 0..4).prop_map(Value::IntArray),
        proptest::collection::vec(text("", "[a-z\"\\\\,]{0,5}"), 0..4).prop_map(Value::StrArray),
    ]
}

fn point() -> impl Strategy<Value = Point> {
    (
        text("[a-zA-Z_é]", "[a-zA-Z0-9_ ,=\\\\.é-]{0,12}"),
        proptest::collection::btree_map(
            key(),
            text("[a-z0-9é]", "[a-zA-Z0-9 ,=\\\\.é-]{0,12}"),
            0..5,
        ),
        proptest::collection::btree_map(key(), value(), 1..6),
        proptest::option::of(any::<i64>()),
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

fn validate(kind: BodyKind, category: Category, body: &[u8]) -> Result<u64, Rule> {
    Validator::default()
        .validate(kind, category, Precision::Nanoseconds, body)
        .map(|v| v.points)
        .map_err(|r| r.rule)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn line_protocol_random_points_round_trip(points in proptest::collection::vec(point(), 0..20)) {
        let body = batch_lp(&points);
        prop_assert_eq!(validate(BodyKind::LineProtocol, Category::Rum, body.as_bytes()), Ok(points.len() as u64), "{}", body);
    }

    #[test]
    fn json_random_points_round_trip(points in proptest::collection::vec(point(), 0..20)) {
        let body = batch_json(&points);
        prop_assert_eq!(validate(BodyKind::Json, Category::Rum, body.as_bytes()), Ok(points.len() as u64), "{}", body);
    }

    #[test]
    fn protobuf_random_points_round_trip_and_prost_agrees(points in proptest::collection::vec(point(), 0..20)) {
        let body = batch_pb(&points);
        prop_assert_eq!(validate(BodyKind::Protobuf, Category::Rum, &body), Ok(points.len() as u64));
        let decoded = <model::PbPoints as prost::Message>::decode(&body[..]).unwrap();
        prop_assert_eq!(decoded.arr.len(), points.len());
    }

    #[test]
    fn metric_category_string_fields_rejected_in_every_format(points in proptest::collection::vec(point(), 1..8)) {
        let has_string = points.iter().any(|p| p.fields.iter().any(|(_, v)| {
            matches!(v, Value::Str(_) | Value::Bytes(_)) || matches!(v, Value::StrArray(a) if !a.is_empty())
        }));
        let lp = validate(BodyKind::LineProtocol, Category::Metric, batch_lp(&points).as_bytes());
        let pb = validate(BodyKind::Protobuf, Category::Metric, &batch_pb(&points));
        // JSON carries bytes as strings and cannot tell an empty string array's type: the
        // same rule holds for what JSON can express.
        prop_assert_eq!(lp.is_err(), has_string);
        prop_assert_eq!(pb.is_err(), has_string);
        if has_string {
            prop_assert_eq!(lp, Err(Rule::MetricStringField));
            prop_assert_eq!(pb, Err(Rule::MetricStringField));
        }
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
            let _ = validate(BodyKind::LineProtocol, category, &lp);
            let _ = validate(BodyKind::Json, category, &json);
            if let Ok(n) = validate(BodyKind::Protobuf, category, &pb) {
                let decoded = <model::PbPoints as prost::Message>::decode(&pb[..]);
                prop_assert!(decoded.is_ok(), "we accepted what prost rejects: {:?}", decoded);
                prop_assert_eq!(decoded.unwrap().arr.len() as u64, n);
            }
        }
    }
}

#[test]
fn protobuf_prost_decodable_point_with_unknown_field_rejected_by_design() {
    // prost skips unknown fields; the validator refuses what it cannot validate (pb.rs docs).
    let mut body = batch_pb(&[Point {
        name: "m".into(),
        tags: vec![],
        fields: vec![("f".into(), Value::Int(1))],
        time: None,
    }]);
    body.extend_from_slice(&[0x10, 0x01]); // field 2, varint: not in PBPoints
    assert!(<model::PbPoints as prost::Message>::decode(&body[..]).is_ok());
    assert_eq!(
        validate(BodyKind::Protobuf, Category::Rum, &body),
        Err(Rule::UnknownField)
    );
}
