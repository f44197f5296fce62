"""Cloud operation audit -> a DataKit inside the isolated network -> the Guance audit workspace.

DataKit has no input that reads CloudWatch Logs or SLS, so this function, run by the cloud next
to the DataKit (in the same VPC, with a security group that lets it reach only the DataKit's
port), posts each audit record as one line to DataKit's `logstreaming` input
(`POST /v1/write/logstreaming?source=<source>&pipeline=<source>.p`: with no `type`, DataKit makes
one log per line, its `message` the line; the pipeline script parses it). The DataKit's own
dataway token is the audit workspace's.

- AWS Lambda, `forwarder.aws_handler`: invoked by CloudWatch Logs subscription filters (the
  CloudTrail log group, the Session Manager log group). `LOG_GROUP_SOURCES` maps each log group
  to its DataKit source.
- Alibaba Cloud Function Compute, `forwarder.aliyun_handler`: invoked by an SLS trigger on the
  ActionTrail logstore; reads the shard's new logs with the function role's STS credentials
  (the `aliyun-log-python-sdk` the Python runtime ships) and posts the `event` of each.

Nothing is dropped silently: a DataKit that does not answer 2xx raises, so the invocation fails
and the cloud retries it (CloudWatch Logs and the SLS trigger both retry failed invocations).
Records are posted in chunks of at most `MAX_BODY_BYTES`; a record is never split. Only the
standard library is used.
"""

import base64
import gzip
import json
import os
import urllib.parse
import urllib.request

MAX_BODY_BYTES = 1 << 20
TIMEOUT_SECONDS = 10


def _endpoint(source):
    base = os.environ["DATAKIT_URL"]
    query = urllib.parse.urlencode({"source": source, "pipeline": f"{source}.p"})
    return f"{base}{'&' if '?' in base else '?'}{query}"


def _post(url, body):
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    # No proxy from the environment, no redirect: the DataKit is a fixed address in the VPC.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    with opener.open(request, timeout=TIMEOUT_SECONDS) as answer:
        if not 200 <= answer.status < 300:
            raise RuntimeError(f"DataKit answered {answer.status}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise RuntimeError(f"DataKit answered a redirect ({code}); not followed")


def _one_line(record):
    """A record as one line of text: JSON objects compact, text with its newlines escaped."""
    if isinstance(record, (dict, list)):
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    return str(record).replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def forward(source, records, post=_post):
    """Posts `records` (JSON objects or text) to the DataKit under `source`; returns the count."""
    url = _endpoint(source)
    chunk, size, sent = [], 0, 0
    for record in records:
        line = _one_line(record).encode("utf-8") + b"\n"
        if chunk and size + len(line) > MAX_BODY_BYTES:
            post(url, b"".join(chunk))
            sent += len(chunk)
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        post(url, b"".join(chunk))
        sent += len(chunk)
    return sent


def aws_records(event):
    """The log group and messages of a CloudWatch Logs subscription event."""
    data = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    if data.get("messageType") != "DATA_MESSAGE":
        return data.get("logGroup", ""), []  # CONTROL_MESSAGE: the subscription's own check
    records = []
    for e in data.get("logEvents", []):
        message = e.get("message", "")
        try:
            records.append(json.loads(message))
        except ValueError:
            records.append(message)
    return data["logGroup"], records


def aws_handler(event, context, post=_post):
    """AWS Lambda entry point."""
    group, records = aws_records(event)
    if not records:
        return {"forwarded": 0}
    sources = json.loads(os.environ.get("LOG_GROUP_SOURCES", "{}"))
    if group not in sources:
        raise RuntimeError(f"log group {group!r} is not in LOG_GROUP_SOURCES")
    return {"forwarded": forward(sources[group], records, post)}


def aliyun_records(logs):
    """ActionTrail records from SLS logs (each a list of (key, value)): the `event` field's
    JSON when there is one, else the log's fields as an object."""
    records = []
    for fields in logs:
        fields = dict(fields)
        event = fields.get("event")
        if event is not None:
            try:
                records.append(json.loads(event))
                continue
            except ValueError:
                pass
        records.append({k: v for k, v in fields.items() if not k.startswith("__")} or fields)
    return records


def _sls_logs(source, credentials):
    """Every log of the shard between the trigger's cursors, as lists of (key, value)."""
    from aliyun.log import LogClient  # shipped with Function Compute's Python runtimes

    client = LogClient(
        source["endpoint"],
        credentials.access_key_id,
        credentials.access_key_secret,
        credentials.security_token,
    )
    cursor, end = source["beginCursor"], source["endCursor"]
    while cursor != end:
        answer = client.pull_logs(
            source["projectName"], source["logstoreName"], source["shardId"], cursor,
            count=100, end_cursor=end,
        )
        if answer.get_loggroup_count() == 0:
            break
        for group in answer.get_loggroup_list().LogGroups:
            for log in group.Logs:
                yield [(c.Key, c.Value) for c in log.Contents]
        cursor = answer.get_next_cursor()


def aliyun_handler(event, context, pull=_sls_logs, post=_post):
    """Function Compute entry point (SLS trigger)."""
    trigger = json.loads(event)
    logs = pull(trigger["source"], context.credentials)
    return json.dumps({"forwarded": forward(os.environ["SOURCE"], aliyun_records(logs), post)})
