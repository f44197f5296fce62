# DataKit pipeline (pipeline/logging/aliyun_actiontrail.p): one ActionTrail event (JSON) per
# log, as deploy/cloud-audit/forwarder.py posts it from the trail's SLS logstore.
json(_, eventName)
json(_, serviceName)
json(_, acsRegion)
json(_, sourceIpAddress, source_ip)
json(_, userIdentity.type, user_type)
json(_, userIdentity.userName, user_name)
json(_, userIdentity.principalId, principal_id)
json(_, errorCode)
json(_, errorMessage)
json(_, eventTime, time)

set_tag(serviceName)
set_tag(eventName)
set_tag(acsRegion)
set_tag(user_type)

if errorCode != nil && errorCode != "" {
  add_key(status, "error")
} else {
  add_key(status, "info")
}
default_time(time)
