"""Tests of forwarder.py (run by deploy/check): real HTTP to a local stand-in for DataKit's
logstreaming input, CloudWatch Logs subscription payloads built as AWS builds them, and SLS
logs as the Function Compute trigger hands them over."""

import base64
import gzip
import http.server
import json
import os
import threading
import types
import unittest
import urllib.parse

import forwarder


class DataKit(http.server.BaseHTTPRequestHandler):
    """Records each POST; answers `status`."""

    posts = []
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        DataKit.posts.append((self.path, body))
        self.send_response(DataKit.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def subscription(group, messages, kind="DATA_MESSAGE"):
    data = {
        "messageType": kind,
        "owner": "123456789012",
        "logGroup": group,
        "logStream": "123456789012_CloudTrail_eu-west-1",
        "subscriptionFilters": ["oneway-audit"],
        "logEvents": [{"id": str(i), "timestamp": 0, "message": m} for i, m in enumerate(messages)],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(data).encode())).decode()}}


RECORD = {
    "eventVersion": "1.09",
    "eventTime": "2026-12-06T10:00:00Z",
    "eventSource": "ssm.amazonaws.com",
    "eventName": "StartSession",
    "awsRegion": "eu-west-1",
    "sourceIPAddress": "198.51.100.7",
    "userIdentity": {"arn": "arn:aws:sts::123456789012:assumed-role/oneway-maintenance/eng-1"},
}


class Forwarder(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.HTTPServer(("127.0.0.1", 0), DataKit)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        os.environ["DATAKIT_URL"] = f"http://127.0.0.1:{cls.server.server_port}/v1/write/logstreaming"

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def setUp(self):
        DataKit.posts.clear()
        DataKit.status = 200
        os.environ["LOG_GROUP_SOURCES"] = json.dumps(
            {"/oneway/cloudtrail": "aws_cloudtrail", "/oneway/ssm-sessions": "aws_ssm_session"}
        )

    def test_cloudtrail_records_become_one_line_each_under_their_source(self):
        other = dict(RECORD, eventName="ConsoleLogin")
        out = forwarder.aws_handler(
            subscription("/oneway/cloudtrail", [json.dumps(RECORD), json.dumps(other)]), None
        )
        self.assertEqual(out, {"forwarded": 2})
        self.assertEqual(len(DataKit.posts), 1)
        path, body = DataKit.posts[0]
        url = urllib.parse.urlsplit(path)
        self.assertEqual(url.path, "/v1/write/logstreaming")
        self.assertEqual(
            urllib.parse.parse_qs(url.query),
            {"source": ["aws_cloudtrail"], "pipeline": ["aws_cloudtrail.p"]},
        )
        lines = body.decode().splitlines()
        self.assertEqual([json.loads(l) for l in lines], [RECORD, other])

    def test_session_text_with_newlines_stays_one_line(self):
        forwarder.aws_handler(subscription("/oneway/ssm-sessions", ["$ ls\nfile\r\n"]), None)
        path, body = DataKit.posts[0]
        self.assertIn("source=aws_ssm_session", path)
        self.assertEqual(body, b"$ ls\\nfile\\r\\n\n")

    def test_a_control_message_posts_nothing(self):
        out = forwarder.aws_handler(subscription("/oneway/cloudtrail", [], "CONTROL_MESSAGE"), None)
        self.assertEqual(out, {"forwarded": 0})
        self.assertEqual(DataKit.posts, [])

    def test_an_unknown_log_group_fails_the_invocation(self):
        with self.assertRaisesRegex(RuntimeError, "not in LOG_GROUP_SOURCES"):
            forwarder.aws_handler(subscription("/elsewhere", ["x"]), None)
        self.assertEqual(DataKit.posts, [])

    def test_a_refusing_datakit_fails_the_invocation_so_the_cloud_retries(self):
        DataKit.status = 503
        with self.assertRaises(Exception):
            forwarder.aws_handler(subscription("/oneway/cloudtrail", [json.dumps(RECORD)]), None)
        self.assertEqual(len(DataKit.posts), 1)

    def test_large_batches_are_split_between_records(self):
        big = dict(RECORD, requestParameters={"pad": "x" * 300_000})
        forwarder.aws_handler(subscription("/oneway/cloudtrail", [json.dumps(big)] * 7), None)
        self.assertGreater(len(DataKit.posts), 1)
        lines = [l for _, body in DataKit.posts for l in body.decode().splitlines()]
        self.assertEqual(len(lines), 7)
        for _, body in DataKit.posts:
            self.assertLessEqual(len(body), forwarder.MAX_BODY_BYTES)
            self.assertTrue(body.endswith(b"\n"))

    def test_actiontrail_events_from_sls_are_forwarded_as_their_json(self):
        os.environ["SOURCE"] = "aliyun_actiontrail"
        event = {"eventName": "AssumeRole", "eventTime": "2026-12-06T10:00:00Z",
                 "userIdentity": {"type": "ram-user", "userName": "eng-1"}}
        logs = [
            [("__topic__", "actiontrail_audit_event"), ("event", json.dumps(event))],
            [("__topic__", "actiontrail_audit_event"), ("eventName", "ConsoleSignin")],
        ]
        seen = {}

        def pull(source, credentials):
            seen["source"], seen["token"] = source, credentials.security_token
            return iter(logs)

        trigger = {"source": {"endpoint": "cn-hangzhou-intranet.log.aliyuncs.com",
                              "projectName": "p", "logstoreName": "actiontrail", "shardId": 0,
                              "beginCursor": "a", "endCursor": "b"}}
        context = types.SimpleNamespace(credentials=types.SimpleNamespace(
            access_key_id="id", access_key_secret="secret", security_token="sts"))
        out = forwarder.aliyun_handler(json.dumps(trigger).encode(), context, pull=pull)
        self.assertEqual(json.loads(out), {"forwarded": 2})
        self.assertEqual((seen["source"]["logstoreName"], seen["token"]), ("actiontrail", "sts"))
        path, body = DataKit.posts[0]
        self.assertIn("source=aliyun_actiontrail", path)
        self.assertEqual([json.loads(l) for l in body.decode().splitlines()],
                         [event, {"eventName": "ConsoleSignin"}])

    def test_a_redirect_is_not_followed(self):
        class Redirect(DataKit):
            def do_POST(self):
                self.send_response(307)
                self.send_header("Location", "http://127.0.0.2:1/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_port}/v1/write/logstreaming"
            with self.assertRaisesRegex(Exception, "redirect"):
                forwarder._post(url, b"x\n")
        finally:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    unittest.main()
