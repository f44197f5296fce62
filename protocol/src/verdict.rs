//! What a validator says about a batch: the rules, their configuration, and the verdict.
//!
//! A batch is all-or-nothing: either every point passes (a [`Verdict`] with the point count and
//! the count of each rule configured to [`Action::Count`]), or the first bad point is reported
//! as a [`Rejection`]: where it is (line number or point index, byte offset), which [`Rule`] it
//! broke, and a short excerpt. Nothing here allocates; the excerpt is a fixed-size inline copy
//! made only when a batch is rejected.

use core::fmt;

/// The write category of a batch: the `<category>` of `POST /v1/write/<category>`.
///
/// Each category may carry its own rules (reference: `datakit-protocol.md` §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Category {
    /// `metric` and its deprecated alias `metrics`: no string fields.
    Metric,
    /// `network`.
    Network,
    /// `keyevent`.
    KeyEvent,
    /// `object`: keys `class` and `date` are reserved, `name` is expected.
    Object,
    /// `object_change` (deprecated).
    ObjectChange,
    /// `custom_object`: same rules as `object`.
    CustomObject,
    /// `logging`: keys `source` and `date` are reserved, `status` is expected.
    Logging,
    /// `tracing`.
    Tracing,
    /// `rum`.
    Rum,
    /// `security`.
    Security,
    /// `profiling` (profile metadata points).
    Profiling,
    /// `siem_logging`.
    SiemLogging,
    /// `langfuse-v2`.
    LangfuseV2,
    /// `agent_llm`.
    AgentLlm,
}

impl Category {
    /// Every category, for tables and tests.
    pub const ALL: [Category; 14] = [
        Category::Metric,
        Category::Network,
        Category::KeyEvent,
        Category::Object,
        Category::ObjectChange,
        Category::CustomObject,
        Category::Logging,
        Category::Tracing,
        Category::Rum,
        Category::Security,
        Category::Profiling,
        Category::SiemLogging,
        Category::LangfuseV2,
        Category::AgentLlm,
    ];

    /// The category named by a `/v1/write/<segment>` path segment, aliases included.
    pub fn from_path_segment(segment: &str) -> Option<Category> {
        Some(match segment {
            "metric" | "metrics" => Category::Metric,
            "network" => Category::Network,
            "keyevent" => Category::KeyEvent,
            "object" => Category::Object,
            "object_change" => Category::ObjectChange,
            "custom_object" => Category::CustomObject,
            "logging" => Category::Logging,
            "tracing" => Category::Tracing,
            "rum" => Category::Rum,
            "security" => Category::Security,
            "profiling" => Category::Profiling,
            "siem_logging" => Category::SiemLogging,
            "langfuse-v2" => Category::LangfuseV2,
            "agent_llm" => Category::AgentLlm,
            _ => return None,
        })
    }

    /// The canonical name, a stable metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Metric => "metric",
            Category::Network => "network",
            Category::KeyEvent => "keyevent",
            Category::Object => "object",
            Category::ObjectChange => "object_change",
            Category::CustomObject => "custom_object",
            Category::Logging => "logging",
            Category::Tracing => "tracing",
            Category::Rum => "rum",
            Category::Security => "security",
            Category::Profiling => "profiling",
            Category::SiemLogging => "siem_logging",
            Category::LangfuseV2 => "langfuse-v2",
            Category::AgentLlm => "agent_llm",
        }
    }

    /// Keys a point of this category must not have.
    pub(crate) fn reserved_keys(self) -> &'static [&'static [u8]] {
        match self {
            Category::Logging => &[b"source", b"date"],
            Category::Object | Category::CustomObject => &[b"class", b"date"],
            _ => &[],
        }
    }

    /// The key a point of this category is expected to have, if any.
    pub(crate) fn expected_key(self) -> Option<&'static [u8]> {
        match self {
            Category::Logging => Some(b"status"),
            Category::Object | Category::CustomObject => Some(b"name"),
            _ => None,
        }
    }

    /// Whether string (and binary) field values are forbidden.
    pub(crate) fn forbids_string_fields(self) -> bool {
        matches!(self, Category::Metric)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do when a point breaks a configurable rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    /// Reject the whole batch.
    #[default]
    Reject,
    /// Accept, and count the violation in the [`Verdict`].
    Count,
}

/// The hard limits of the Guance point model; each is configurable, with the defaults of
/// `datakit-protocol.md` §3. Lengths are in bytes of the unescaped value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Tags per point (256).
    pub max_tags: u32,
    /// Fields per point (1,024).
    pub max_fields: u32,
    /// Tag or field key length (256).
    pub max_key_bytes: u32,
    /// Tag value length (1,024).
    pub max_tag_value_bytes: u32,
    /// String or bytes field value length, also bounding each array element (32 MiB).
    pub max_field_value_bytes: u32,
    /// Measurement name length (1,024).
    pub max_measurement_bytes: u32,
    /// One point's encoded length: a line of line protocol, a `PBPoint` message, a JSON object
    /// (33 MiB: room for one maximal string field and the rest of its point).
    pub max_line_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tags: 256,
            max_fields: 1024,
            max_key_bytes: 256,
            max_tag_value_bytes: 1024,
            max_field_value_bytes: 32 << 20,
            max_measurement_bytes: 1024,
            max_line_bytes: 33 << 20,
        }
    }
}

/// Which configurable rules reject and which only count.
///
/// Every default is [`Action::Count`]: real DataKit sends each of these (a metric input that
/// does not use the metric options keeps its string fields; a point built with the checker
/// off keeps a reserved or duplicate key; log lines carry whatever bytes the file held), and
/// Guance accepts them, so refusing them by default would drop DataKit's data. An operator may
/// make any of them reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleActions {
    /// A string or binary field (or an array of strings) in a `metric` point. Guance's metric
    /// options drop such fields on its side.
    pub metric_string_field: Action,
    /// A reserved key (`source`/`date` in logging, `class`/`date` in objects). Guance's
    /// category options drop the key on its side.
    pub reserved_key: Action,
    /// The same key twice in a point (tag and field, or twice as either). Guance keeps one of
    /// them or none (see `docs/protocol.md`). Two tags with one key in line protocol are always
    /// refused: Guance's parser refuses them ([`Rule::DuplicateTag`]).
    pub duplicate_key: Action,
    /// A point without its category's expected key (`status` in logging, `name` in objects).
    /// Guance adds it with a default value.
    pub missing_expected_key: Action,
    /// Bytes that are not UTF-8 in a protobuf or line-protocol name, key or value. Guance stores
    /// the bytes as they are. (JSON must always be UTF-8: Go's decoder would replace them.)
    pub invalid_utf8: Action,
}

impl Default for RuleActions {
    fn default() -> Self {
        RuleActions {
            metric_string_field: Action::Count,
            reserved_key: Action::Count,
            duplicate_key: Action::Count,
            missing_expected_key: Action::Count,
            invalid_utf8: Action::Count,
        }
    }
}

/// Everything a validator is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ValidationConfig {
    /// Hard limits.
    pub limits: Limits,
    /// Per-rule actions for the category rules.
    pub actions: RuleActions,
}

/// Timestamp precision of line protocol (`?precision=`); DataKit always sends nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// `n`, nanoseconds (the default).
    #[default]
    Nanoseconds,
    /// `u`, microseconds.
    Microseconds,
    /// `ms`, milliseconds.
    Milliseconds,
    /// `s`, seconds.
    Seconds,
    /// `m`, minutes.
    Minutes,
    /// `h`, hours.
    Hours,
}

impl Precision {
    /// Parses the value of a `precision` query parameter: `n` (or `ns`, or empty), `u`, `ms`,
    /// `s`, `m`, `h`, the units Guance knows (cliutils `PrecStr`). Anything else is `None`:
    /// Guance would silently read it as nanoseconds (even `us`), so it is refused instead.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "" | "n" | "ns" => Precision::Nanoseconds,
            "u" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    /// The canonical spelling, as forwarded (`n u ms s m h`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "n",
            Precision::Microseconds => "u",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
        }
    }

    /// Nanoseconds per unit.
    pub fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }
}

/// Every rule a point can break. [`Rule::as_str`] is a stable label for metrics and error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    // --- encoding and syntax, shared ---
    /// Bytes that are not UTF-8 where text is required.
    InvalidUtf8,
    /// A measurement name that is empty or missing.
    MissingMeasurement,
    /// A tag or field key that is empty.
    EmptyKey,
    /// A point without fields.
    MissingFields,
    /// A field value that cannot be parsed as any type.
    BadFieldValue,
    /// An integer (`i`, `u`, timestamp) outside its type's range.
    IntegerOverflow,
    /// A timestamp that is not an integer, or does not fit in nanoseconds.
    BadTimestamp,
    /// An array with mixed element types, or a malformed array.
    BadArray,
    /// A binary value that is not valid base64.
    BadBase64,
    // --- line protocol ---
    /// A backslash at the end of a name, key or value.
    TrailingBackslash,
    /// A tag that is not `key=value` with both parts present.
    BadTag,
    /// A field that is not `key=value`.
    BadField,
    /// A quoted string without its closing quote.
    UnterminatedString,
    /// Content after the timestamp, or a stray carriage return.
    TrailingContent,
    /// A byte where none can be: after the tags, or a tab or NUL that Guance would skip
    /// before the first field key.
    UnexpectedCharacter,
    /// An escaped backslash right before `,`, space, `=` or `"` in a name, key or tag value:
    /// Guance's parser takes the separator as escaped, so it reads another point.
    AmbiguousEscape,
    /// An empty line-protocol body (Guance refuses it).
    EmptyBody,
    /// A comment line that Guance's line splitter does not end at its line end (a quote or
    /// bracket in it makes Guance skip the lines that follow, or read a point out of it).
    BadComment,
    /// The same tag key twice in a line-protocol point (Guance's parser refuses it).
    DuplicateTag,
    /// `[ ]` in a field key (Guance's line splitter counts them and can cut the line).
    BracketInKey,
    /// Measurement and tags together longer than 65,535 bytes, with a field key (Guance's
    /// parser's series-key limit).
    SeriesKeyTooLong,
    /// A timestamp before 1970 in line protocol or JSON: Guance replaces it with the time it
    /// receives the point.
    NegativeTimestamp,
    /// A line without a timestamp under a `precision` other than nanoseconds: Guance would
    /// multiply its receive time by the precision and overflow.
    TimestampRequired,
    /// An empty array (Guance drops the field).
    EmptyArray,
    /// An empty binary value `""b` (Guance drops the point).
    EmptyBinary,
    /// A protobuf or JSON key or tag value with a newline or a trailing backslash: Guance's
    /// checker rewrites it (a space for the newline, the backslashes dropped).
    NewlineOrTrailingBackslash,
    // --- protobuf ---
    /// A message that ends inside a field.
    Truncated,
    /// A varint longer than ten bytes.
    BadVarint,
    /// A field number the schema does not have.
    UnknownField,
    /// A known field number with the wrong wire type.
    WrongWireType,
    /// A `google.protobuf.Any` whose type is not `point.Array` or `point.Map`.
    BadAnyType,
    /// A tag whose value is not a string.
    TagNotString,
    /// A field without a value.
    MissingValue,
    // --- JSON ---
    /// Malformed JSON.
    JsonSyntax,
    /// JSON that is well-formed but not an array of points.
    BadPointShape,
    // --- limits of the point model ---
    /// More tags than `max_tags`.
    TooManyTags,
    /// More fields than `max_fields`.
    TooManyFields,
    /// A key longer than `max_key_bytes`.
    KeyTooLong,
    /// A tag value longer than `max_tag_value_bytes`.
    TagValueTooLong,
    /// A string or bytes value longer than `max_field_value_bytes`.
    FieldValueTooLong,
    /// A measurement longer than `max_measurement_bytes`.
    MeasurementTooLong,
    /// A point longer than `max_line_bytes`.
    LineTooLong,
    // --- category rules (configurable: reject or count) ---
    /// A string field in a `metric` point.
    MetricStringField,
    /// A key reserved by the category.
    ReservedKey,
    /// A key present twice in a point.
    DuplicateKey,
    /// The category's expected key is absent.
    MissingExpectedKey,
}

impl Rule {
    /// A stable `snake_case` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::InvalidUtf8 => "invalid_utf8",
            Rule::MissingMeasurement => "missing_measurement",
            Rule::EmptyKey => "empty_key",
            Rule::MissingFields => "missing_fields",
            Rule::BadFieldValue => "bad_field_value",
            Rule::IntegerOverflow => "integer_overflow",
            Rule::BadTimestamp => "bad_timestamp",
            Rule::BadArray => "bad_array",
            Rule::BadBase64 => "bad_base64",
            Rule::TrailingBackslash => "trailing_backslash",
            Rule::BadTag => "bad_tag",
            Rule::BadField => "bad_field",
            Rule::UnterminatedString => "unterminated_string",
            Rule::TrailingContent => "trailing_content",
            Rule::UnexpectedCharacter => "unexpected_character",
            Rule::AmbiguousEscape => "ambiguous_escape",
            Rule::EmptyBody => "empty_body",
            Rule::BadComment => "bad_comment",
            Rule::DuplicateTag => "duplicate_tag",
            Rule::BracketInKey => "bracket_in_key",
            Rule::SeriesKeyTooLong => "series_key_too_long",
            Rule::NegativeTimestamp => "negative_timestamp",
            Rule::TimestampRequired => "timestamp_required",
            Rule::EmptyArray => "empty_array",
            Rule::EmptyBinary => "empty_binary",
            Rule::NewlineOrTrailingBackslash => "newline_or_trailing_backslash",
            Rule::Truncated => "truncated",
            Rule::BadVarint => "bad_varint",
            Rule::UnknownField => "unknown_field",
            Rule::WrongWireType => "wrong_wire_type",
            Rule::BadAnyType => "bad_any_type",
            Rule::TagNotString => "tag_not_string",
            Rule::MissingValue => "missing_value",
            Rule::JsonSyntax => "json_syntax",
            Rule::BadPointShape => "bad_point_shape",
            Rule::TooManyTags => "too_many_tags",
            Rule::TooManyFields => "too_many_fields",
            Rule::KeyTooLong => "key_too_long",
            Rule::TagValueTooLong => "tag_value_too_long",
            Rule::FieldValueTooLong => "field_value_too_long",
            Rule::MeasurementTooLong => "measurement_too_long",
            Rule::LineTooLong => "line_too_long",
            Rule::MetricStringField => "metric_string_field",
            Rule::ReservedKey => "reserved_key",
            Rule::DuplicateKey => "duplicate_key",
            Rule::MissingExpectedKey => "missing_expected_key",
        }
    }

    /// A sentence for humans.
    pub fn describe(self) -> &'static str {
        match self {
            Rule::InvalidUtf8 => "text is not valid UTF-8",
            Rule::MissingMeasurement => "the measurement name is missing",
            Rule::EmptyKey => "a key is empty",
            Rule::MissingFields => "the point has no fields",
            Rule::BadFieldValue => "a field value is not a valid integer, float, boolean or string",
            Rule::IntegerOverflow => "an integer is out of range",
            Rule::BadTimestamp => "the timestamp is not an integer that fits in nanoseconds",
            Rule::BadArray => "an array is malformed or mixes element types",
            Rule::BadBase64 => "a binary value is not valid base64",
            Rule::TrailingBackslash => "a name, key or value ends with a backslash",
            Rule::BadTag => "a tag is not key=value",
            Rule::BadField => "a field is not key=value",
            Rule::UnterminatedString => "a quoted string is not terminated",
            Rule::TrailingContent => "unexpected content at the end of the line",
            Rule::UnexpectedCharacter => {
                "an unexpected byte after the tags, or a tab or NUL before the first field key"
            }
            Rule::AmbiguousEscape => {
                "an escaped backslash before a separator: Guance would read the separator as escaped"
            }
            Rule::EmptyBody => "the body is empty",
            Rule::BadComment => {
                "a quote, bracket or backslash in a comment would make Guance skip or misread lines"
            }
            Rule::DuplicateTag => "a tag key appears twice in the point",
            Rule::BracketInKey => "a field key contains [ or ]",
            Rule::SeriesKeyTooLong => "measurement, tags and a field key exceed 65535 bytes",
            Rule::NegativeTimestamp => {
                "the timestamp is before 1970: Guance would replace it with the receive time"
            }
            Rule::TimestampRequired => {
                "with a precision other than ns every line needs a timestamp"
            }
            Rule::EmptyArray => "an empty array: Guance would drop the field",
            Rule::EmptyBinary => "an empty binary value: Guance would drop the point",
            Rule::NewlineOrTrailingBackslash => {
                "a key or tag value holds a newline or ends with a backslash: Guance would rewrite it"
            }
            Rule::Truncated => "the protobuf message is truncated",
            Rule::BadVarint => "a protobuf varint is malformed",
            Rule::UnknownField => "a protobuf field number is not in the point schema",
            Rule::WrongWireType => "a protobuf field has the wrong wire type",
            Rule::BadAnyType => "an Any value is neither point.Array nor point.Map",
            Rule::TagNotString => "a tag value is not a string",
            Rule::MissingValue => "a field has no value",
            Rule::JsonSyntax => "the JSON is malformed",
            Rule::BadPointShape => "the JSON is not an array of points",
            Rule::TooManyTags => "too many tags",
            Rule::TooManyFields => "too many fields",
            Rule::KeyTooLong => "a key is too long",
            Rule::TagValueTooLong => "a tag value is too long",
            Rule::FieldValueTooLong => "a field value is too long",
            Rule::MeasurementTooLong => "the measurement name is too long",
            Rule::LineTooLong => "the point is too long",
            Rule::MetricStringField => "metric points cannot have string fields",
            Rule::ReservedKey => "the key is reserved in this category",
            Rule::DuplicateKey => "a key appears twice in the point",
            Rule::MissingExpectedKey => "the category's expected key is missing",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// How many points broke each rule configured to [`Action::Count`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleCounts {
    /// Points with a string field in `metric`.
    pub metric_string_field: u64,
    /// Points with a reserved key.
    pub reserved_key: u64,
    /// Points with a duplicate key.
    pub duplicate_key: u64,
    /// Points missing the expected key.
    pub missing_expected_key: u64,
    /// Points with bytes that are not UTF-8.
    pub invalid_utf8: u64,
}

impl RuleCounts {
    /// Whether any counted rule was broken.
    pub fn is_empty(&self) -> bool {
        *self == RuleCounts::default()
    }

    /// Pairs of (rule, count) for the non-zero counts.
    pub fn iter(&self) -> impl Iterator<Item = (Rule, u64)> {
        [
            (Rule::MetricStringField, self.metric_string_field),
            (Rule::ReservedKey, self.reserved_key),
            (Rule::DuplicateKey, self.duplicate_key),
            (Rule::MissingExpectedKey, self.missing_expected_key),
            (Rule::InvalidUtf8, self.invalid_utf8),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
    }

    pub(crate) fn add(&mut self, rule: Rule) {
        match rule {
            Rule::MetricStringField => self.metric_string_field += 1,
            Rule::ReservedKey => self.reserved_key += 1,
            Rule::DuplicateKey => self.duplicate_key += 1,
            Rule::MissingExpectedKey => self.missing_expected_key += 1,
            Rule::InvalidUtf8 => self.invalid_utf8 += 1,
            _ => {}
        }
    }
}

/// The verdict for an accepted batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Points in the batch.
    pub points: u64,
    /// Violations of rules configured to count rather than reject.
    pub counted: RuleCounts,
}

/// Where a rejected point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Line protocol: the 1-based line on which the point starts.
    Line(u64),
    /// Protobuf and JSON: the 0-based index of the point in the batch (`None` when the batch's
    /// own framing is broken before any point).
    Point(Option<u64>),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Point(Some(i)) => write!(f, "point index {i}"),
            Position::Point(None) => f.write_str("batch"),
        }
    }
}

/// Bytes of the bad point quoted in a [`Rejection`].
pub const EXCERPT_BYTES: usize = 64;

/// A short, inline, truncated copy of the input at a rejected point.
///
/// Displayed with control bytes and non-ASCII escaped, so it is safe to put in a log line or a
/// JSON message, and marked with `…` when truncated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Excerpt {
    bytes: [u8; EXCERPT_BYTES],
    len: u8,
    truncated: bool,
}

impl Excerpt {
    /// Up to [`EXCERPT_BYTES`] bytes of `input` from `start`, stopping at a line end.
    pub fn new(input: &[u8], start: usize) -> Excerpt {
        let rest = input.get(start..).unwrap_or_default();
        let line = match memchr::memchr(b'\n', rest) {
            Some(end) => &rest[..end],
            None => rest,
        };
        let len = line.len().min(EXCERPT_BYTES);
        let mut bytes = [0u8; EXCERPT_BYTES];
        bytes[..len].copy_from_slice(&line[..len]);
        Excerpt {
            bytes,
            len: len as u8,
            truncated: line.len() > len || line.len() < rest.len(),
        }
    }

    /// The raw excerpt.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether the point goes on after the excerpt.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.as_bytes() {
            if b.is_ascii_graphic() || b == b' ' {
                if b == b'\\' || b == b'"' {
                    f.write_str("\\")?;
                }
                fmt::Write::write_char(f, char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.truncated {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Excerpt(\"{self}\")")
    }
}

/// The first bad point of a rejected batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{position}, byte {offset}: {rule} ({code}) near \"{excerpt}\"", code = rule.as_str())]
pub struct Rejection {
    /// Where the bad point is.
    pub position: Position,
    /// Byte offset in the (decoded) body where the problem was found.
    pub offset: usize,
    /// The rule broken.
    pub rule: Rule,
    /// The start of the bad point.
    pub excerpt: Excerpt,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_from_path_segment_accepts_aliases_and_new_categories() {
        assert_eq!(
            Category::from_path_segment("metrics"),
            Some(Category::Metric)
        );
        assert_eq!(
            Category::from_path_segment("langfuse-v2"),
            Some(Category::LangfuseV2)
        );
        assert_eq!(
            Category::from_path_segment("agent_llm"),
            Some(Category::AgentLlm)
        );
        assert_eq!(Category::from_path_segment("Metric"), None);
        for c in Category::ALL {
            assert_eq!(Category::from_path_segment(c.as_str()), Some(c));
        }
    }

    #[test]
    fn excerpt_long_line_is_truncated_and_escaped() {
        let input = b"m,t=\"a\\b f=1\x01 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nnext";
        let e = Excerpt::new(input, 0);
        assert_eq!(e.as_bytes().len(), EXCERPT_BYTES);
        assert!(e.is_truncated());
        let shown = e.to_string();
        assert!(shown.starts_with("m,t=\\\"a\\\\b f=1\\x01 a"), "{shown}");
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn excerpt_stops_at_line_end() {
        let e = Excerpt::new(b"a b\nc", 0);
        assert_eq!(e.as_bytes(), b"a b");
        assert!(e.is_truncated());
        let e = Excerpt::new(b"a b", 0);
        assert!(!e.is_truncated());
        let e = Excerpt::new(b"a b", 10);
        assert_eq!(e.as_bytes(), b"");
    }

    #[test]
    fn precision_parse_every_unit() {
        for (s, n) in [
            ("n", 1),
            ("u", 1_000),
            ("ms", 1_000_000),
            ("s", 1_000_000_000),
        ] {
            assert_eq!(Precision::parse(s).map(Precision::nanos_per_unit), Some(n));
        }
        assert_eq!(Precision::parse("m"), Some(Precision::Minutes));
        assert_eq!(Precision::parse("h"), Some(Precision::Hours));
        assert_eq!(Precision::parse("d"), None);
        // Guance reads `us` as nanoseconds: refused rather than read two ways.
        assert_eq!(Precision::parse("us"), None);
        assert_eq!(Precision::parse(""), Some(Precision::Nanoseconds));
    }
}
