# DataKit pipeline (pipeline/logging/aws_ssm_session.p): Session Manager's streamed session log
# (one JSON chunk per log): which engineer, on which instance, in which session, typed and saw what.
json(_, sessionId, session_id)
json(_, target.id, instance_id)
json(_, userIdentity.arn, user_arn)
json(_, runAsUser, run_as)
json(_, eventTime, time)

set_tag(instance_id)
set_tag(session_id)
add_key(status, "info")
default_time(time)
