//! `[rules]`: what each point-model rule does when a point breaks it (`reject` the batch or
//! only `count` it).

use oneway_protocol::{Action, RuleActions};
use serde::Deserialize;

use super::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    metric_string_field: Option<String>,
    reserved_key: Option<String>,
    duplicate_key: Option<String>,
    missing_expected_key: Option<String>,
    invalid_utf8: Option<String>,
}

fn action(p: &mut Problems, path: &str, value: &Option<String>, default: Action) -> Action {
    match value.as_deref() {
        None => default,
        Some("reject") => Action::Reject,
        Some("count") => Action::Count,
        Some(other) => {
            p.add(path, format!("{other:?} is not \"reject\" or \"count\""));
            default
        }
    }
}

impl RawRules {
    /// Checks `[rules]`.
    pub(super) fn check(&self, p: &mut Problems) -> RuleActions {
        let da = RuleActions::default();
        let r = self;
        RuleActions {
            metric_string_field: action(
                p,
                "rules.metric_string_field",
                &r.metric_string_field,
                da.metric_string_field,
            ),
            reserved_key: action(p, "rules.reserved_key", &r.reserved_key, da.reserved_key),
            duplicate_key: action(p, "rules.duplicate_key", &r.duplicate_key, da.duplicate_key),
            missing_expected_key: action(
                p,
                "rules.missing_expected_key",
                &r.missing_expected_key,
                da.missing_expected_key,
            ),
            invalid_utf8: action(p, "rules.invalid_utf8", &r.invalid_utf8, da.invalid_utf8),
        }
    }
}
