# DataKit pipeline (pipeline/logging/aws_cloudtrail.p): one CloudTrail record (JSON) per log,
# as deploy/cloud-audit/forwarder.py posts it. Who did what, from where, and whether it failed.
json(_, eventName)
json(_, eventSource)
json(_, awsRegion)
json(_, recipientAccountId)
json(_, sourceIPAddress, source_ip)
json(_, userIdentity.arn, user_arn)
json(_, userIdentity.type, user_type)
json(_, errorCode)
json(_, errorMessage)
json(_, eventTime, time)

set_tag(eventSource)
set_tag(eventName)
set_tag(awsRegion)
set_tag(user_type)

if errorCode != nil && errorCode != "" {
  add_key(status, "error")
} else {
  add_key(status, "info")
}
default_time(time)
