//! The gateway reads a push as Guance will: the parser is the one Guance maps the
//! `Content-Type` to, and the forwarded `Content-Type` and `Content-Encoding` are the canonical
//! ones of what checked the body; the query is read as Go reads it and rebuilt; what DataKit
//! really sends passes, with the rules it breaks counted. Every refusal forwards nothing.

#[path = "../../protocol/tests/support/model.rs"]
#[expect(
    dead_code,
    unreachable_pub,
    reason = "a shared model; this test uses part of it"
)]
mod model;

use model::{PbField, PbPoint, PbPoints, pb_field};
use oneway_tests::{FakeUpstream, TOKEN_1, TestGateway, WORKSPACE_TOKEN, gzip};

const PB: &str = "application/protobuf; proto=com.guance.Point";

/// A `PBPoints` batch of one point with `fields`, encoded by `prost` from the model.
fn pb_point(name: &str, fields: Vec<PbField>, time: i64) -> Vec<u8> {
    let batch = PbPoints {
        arr: vec![PbPoint {
            name: name.into(),
            fields,
            time,
            ..PbPoint::default()
        }],
    };
    prost::Message::encode_to_vec(&batch)
}

fn pb_tag(key: &str, value: &str) -> PbField {
    PbField {
        is_tag: true,
        ..pb_string(key, value)
    }
}

fn pb_string(key: &str, value: &str) -> PbField {
    PbField {
        key: key.into(),
        val: Some(pb_field::Val::S(value.into())),
        ..PbField::default()
    }
}

/// A field with a key and no value, as DataKit's Pipeline makes it.
fn pb_no_value(key: &str) -> PbField {
    PbField {
        key: key.into(),
        ..PbField::default()
    }
}

async fn setup() -> (FakeUpstream, TestGateway) {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    (up, gw)
}

#[tokio::test]
async fn content_type_picks_the_parser_guance_picks_and_is_forwarded_canonical() {
    let (up, gw) = setup().await;
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let pb = pb_point("cpu", vec![pb_tag("host", "a"), pb_string("v", "x")], 1);
    // Guance reads every spelling but DataKit's exact one as line protocol: so does oneway,
    // and protobuf bytes are not line protocol.
    for spelling in [
        "application/x-protobuf",
        "application/protobuf",
        "application/protobuf;proto=com.guance.Point",
        "Application/Protobuf; proto=com.guance.Point",
    ] {
        let r = gw
            .post("agent-1", &uri, &[("content-type", spelling)], pb.clone())
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{spelling}: {}", r.body);
    }
    assert!(up.received().is_empty(), "nothing forwarded");
    // Line protocol under another spelling is forwarded as line protocol.
    let lp = b"cpu,host=a v=1i 1\n".to_vec();
    for spelling in ["text/plain", "application/json; charset=utf-8"] {
        let r = gw
            .post("agent-1", &uri, &[("content-type", spelling)], lp.clone())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{spelling}: {}", r.body);
    }
    let r = gw.post("agent-1", &uri, &[], lp.clone()).await.unwrap();
    assert_eq!(r.status, 200, "no Content-Type: {}", r.body);
    for got in up.received() {
        assert_eq!(got.headers["content-type"], "application/line-protocol");
        assert_eq!(got.body, lp);
    }
    // DataKit's own spelling, as it is.
    let r = gw
        .post("agent-1", &uri, &[("content-type", PB)], pb.clone())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.received().last().unwrap().headers["content-type"], PB);
    let r = gw
        .post(
            "agent-1",
            &uri,
            &[("content-type", "application/pbjson; proto=com.guance.Point")],
            b"[]".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 415, "{}", r.body);
}

#[tokio::test]
async fn two_content_types_or_encodings_are_refused_and_encodings_forwarded_canonical() {
    let (up, gw) = setup().await;
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let lp = b"cpu v=1i 1\n".to_vec();
    let r = gw
        .post(
            "agent-1",
            &uri,
            &[
                ("content-type", "application/line-protocol"),
                ("content-type", PB),
            ],
            lp.clone(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("oneway.duplicate_header"), "{}", r.body);
    let r = gw
        .post(
            "agent-1",
            &uri,
            &[("content-encoding", "gzip"), ("content-encoding", "gzip")],
            gzip(&lp),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(up.received().is_empty(), "nothing forwarded");
    // `x-gzip` is gzip, `identity` is none: forwarded as Guance spells them.
    let r = gw
        .post(
            "agent-1",
            &uri,
            &[("content-encoding", "x-gzip")],
            gzip(&lp),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = gw
        .post(
            "agent-1",
            &uri,
            &[("content-encoding", "identity")],
            lp.clone(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let got = up.received();
    assert_eq!(got[0].headers["content-encoding"], "gzip");
    assert_eq!(got[0].body, gzip(&lp));
    assert!(got[1].headers.get("content-encoding").is_none());
}

#[tokio::test]
async fn gzip_fields_nobody_decodes_are_refused() {
    let (up, gw) = setup().await;
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let mut named = gzip(b"cpu v=1i 1\n");
    named[3] |= 0x08;
    named.splice(10..10, b"hidden.lp\0".iter().copied());
    let r = gw
        .post("agent-1", &uri, &[("content-encoding", "gzip")], named)
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("oneway.undecoded_bytes"), "{}", r.body);
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn query_is_read_as_go_reads_it_and_rebuilt() {
    let (up, gw) = setup().await;
    let lp = [("content-type", "application/line-protocol")];
    // `%70recision=s` is `precision=s` to Go: validated and forwarded as seconds.
    let r = gw
        .post(
            "agent-1",
            &format!("/v1/write/metric?%74oken={TOKEN_1}&%70recision=s&x=a+b"),
            &lp,
            b"cpu v=1i 1700000000\n".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        up.received()[0].uri,
        format!("/v1/write/metric?precision=s&token={WORKSPACE_TOKEN}&x=a+b")
    );
    // In seconds, a nanosecond timestamp overflows: it was validated with the precision.
    let r = gw
        .post(
            "agent-1",
            &format!("/v1/write/metric?token={TOKEN_1}&%70recision=s"),
            &lp,
            b"cpu v=1i 1700000000000000000\n".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    // What Go would skip or read twice.
    for query in [
        format!("token={TOKEN_1}&%74oken=tkn_other0000000000000000000000000"),
        format!("token={TOKEN_1}&precision=s&precision=ms"),
        format!("token={TOKEN_1};precision=s"),
        format!("token={TOKEN_1}&x=%zz"),
    ] {
        let r = gw
            .post(
                "agent-1",
                &format!("/v1/write/metric?{query}"),
                &lp,
                b"cpu v=1i 1\n".to_vec(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{query}: {}", r.body);
    }
    let r = gw
        .post(
            "agent-1",
            &format!("/v1/write/metric?token={TOKEN_1}&precision=us"),
            &lp,
            b"cpu v=1i 1\n".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "us is nanoseconds to Guance: {}", r.body);
    assert_eq!(up.received().len(), 1, "only the first was forwarded");
}

#[tokio::test]
async fn what_datakit_sends_passes_and_the_rules_it_breaks_are_counted() {
    let (up, gw) = setup().await;
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let counted = |rule: &'static str| {
        let gw = &gw;
        async move {
            gw.metric("oneway_validation_counted_points_total", &[rule])
                .await
        }
    };
    let before = counted("metric_string_field").await;
    // A metric with a string field (an input not using the metric options), a field with no
    // value (Pipeline's add_key(x, nil)), a point with tags only (the metric checker took its
    // only field).
    let bodies = [
        pb_point(
            "custom",
            vec![pb_tag("host", "h"), pb_string("version", "1.2.3")],
            1,
        ),
        pb_point(
            "app",
            vec![pb_string("message", "m"), pb_no_value("extra")],
            1,
        ),
        pb_point("only_string", vec![pb_tag("host", "h")], 1),
    ];
    for body in &bodies {
        let r = gw
            .post(
                "agent-1",
                &uri,
                &[("content-type", PB), ("x-points", "7")],
                body.clone(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let got = up.received();
    for (sent, got) in bodies.iter().zip(&got) {
        assert_eq!(&got.body, sent);
        assert_eq!(got.headers["x-points"], "1", "the count oneway validated");
    }
    assert_eq!(counted("metric_string_field").await, before + 2.0);
}
