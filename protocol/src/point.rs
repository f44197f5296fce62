//! The per-point rules shared by every body format: counts and lengths of the point model,
//! duplicate keys, reserved and expected keys, and string fields in metrics.
//!
//! A format's parser calls [`PointChecker::begin`], then [`PointChecker::key`] for every tag and
//! field key (in the order they appear), [`PointChecker::string_field`] for every string-like
//! field value, and [`PointChecker::finish`]. Nothing allocates once the checker's scratch
//! buffers have grown to the largest point seen.
//!
//! Duplicate detection is O(1) per key: a 1,024-bit filter answers "certainly new" for the few
//! keys of an ordinary point, with a linear check on a filter hit; beyond
//! [`LINEAR_KEYS`] keys a generation-stamped hash table takes over, so a point with thousands of
//! keys costs linear time too.

use crate::verdict::{Action, Category, Limits, Rule, RuleActions, RuleCounts};

/// Below this many keys, a filter hit is resolved by a linear scan.
const LINEAR_KEYS: usize = 32;

/// How a key is spelled in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spelling {
    /// The bytes are the key.
    Plain,
    /// A line-protocol tag key: `\,`, `\=`, `\ ` may be present (Guance's `unescapeTag`).
    LpTag,
    /// A line-protocol field key: also `\"` (Guance's `escape.AppendUnescaped`).
    LpField,
    /// JSON string escapes may be present (the raw bytes between the quotes).
    Json,
}

/// A recorded key. Word-sized fields only: the struct is built in registers and stored whole
/// (narrower fields made the CPU stall forwarding the partial stores to the push).
#[derive(Debug, Clone, Copy)]
struct KeyRef {
    hash: u64,
    /// Start of the span in the input, or (with [`IN_SCRATCH`] set) in `unescaped`.
    start: usize,
    end: usize,
}

/// Marks a [`KeyRef`] whose span is in the unescaped scratch buffer. Offsets never reach it:
/// no slice is longer than `isize::MAX`.
const IN_SCRATCH: usize = 1 << (usize::BITS - 1);

/// Per-validator scratch state for checking one point at a time.
#[derive(Debug)]
pub(crate) struct PointChecker {
    limits: Limits,
    actions: RuleActions,
    category: Category,
    /// The category's reserved keys and expected key, looked up once per batch.
    reserved: &'static [&'static [u8]],
    expected: Option<&'static [u8]>,
    has_key_rules: bool,
    /// The first [`LINEAR_KEYS`] keys of the point (no capacity checks on the hot path).
    first_keys: [KeyRef; LINEAR_KEYS],
    /// Keys in this point so far.
    count: usize,
    /// Every key of a point with more than [`LINEAR_KEYS`] keys.
    keys: Vec<KeyRef>,
    unescaped: Vec<u8>,
    filter: [u64; 16],
    /// Open-addressing table of `(generation, key index)`, used past `LINEAR_KEYS` keys.
    table: Vec<(u32, u32)>,
    generation: u32,
    tags: u32,
    fields: u32,
    broke: u8,
    expected_seen: bool,
    /// Whether the last key recorded was a duplicate (counted, not refused).
    last_duplicate: bool,
}

const BROKE_STRING: u8 = 1;
const BROKE_RESERVED: u8 = 2;
const BROKE_DUP: u8 = 4;
const BROKE_UTF8: u8 = 8;

impl PointChecker {
    pub(crate) fn new(limits: Limits, actions: RuleActions, category: Category) -> PointChecker {
        let max_keys = (limits.max_tags as usize).saturating_add(limits.max_fields as usize);
        let slots = max_keys
            .saturating_mul(2)
            .clamp(64, 1 << 16)
            .next_power_of_two();
        PointChecker {
            limits,
            actions,
            category,
            reserved: category.reserved_keys(),
            expected: category.expected_key(),
            has_key_rules: has_key_rules(category),
            first_keys: [KeyRef {
                hash: 0,
                start: 0,
                end: 0,
            }; LINEAR_KEYS],
            count: 0,
            keys: Vec::new(),
            unescaped: Vec::new(),
            filter: [0; 16],
            table: vec![(0, 0); slots],
            generation: 0,
            tags: 0,
            fields: 0,
            broke: 0,
            expected_seen: false,
            last_duplicate: false,
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn category(&self) -> Category {
        self.category
    }

    pub(crate) fn set_category(&mut self, category: Category) {
        self.category = category;
        self.reserved = category.reserved_keys();
        self.expected = category.expected_key();
        self.has_key_rules = has_key_rules(category);
    }

    pub(crate) fn set_config(&mut self, limits: Limits, actions: RuleActions) {
        if limits != self.limits {
            *self = PointChecker::new(limits, actions, self.category);
        } else {
            self.actions = actions;
        }
    }

    #[inline]
    pub(crate) fn begin(&mut self) {
        self.count = 0;
        self.keys.clear();
        self.unescaped.clear();
        self.filter = [0; 16];
        self.tags = 0;
        self.fields = 0;
        self.broke = 0;
        self.expected_seen = false;
        self.last_duplicate = false;
    }

    #[inline]
    pub(crate) fn fields(&self) -> u32 {
        self.fields
    }

    /// Whether the key just recorded repeats an earlier key of the point.
    #[inline]
    pub(crate) fn last_duplicate(&self) -> bool {
        self.last_duplicate
    }

    /// Whether any key of this point so far was a (counted) duplicate.
    #[inline]
    pub(crate) fn has_duplicates(&self) -> bool {
        self.broke & BROKE_DUP != 0
    }

    /// Records bytes that are not UTF-8 in this point.
    #[inline]
    pub(crate) fn invalid_utf8(&mut self) -> Result<(), Rule> {
        self.violate(Rule::InvalidUtf8, BROKE_UTF8, self.actions.invalid_utf8)
    }

    /// The action for a rule that a format checks itself.
    #[inline]
    pub(crate) fn actions(&self) -> &RuleActions {
        &self.actions
    }

    /// Checks the measurement's (unescaped) length.
    #[inline]
    pub(crate) fn measurement(&self, unescaped_len: usize) -> Result<(), Rule> {
        if unescaped_len == 0 {
            Err(Rule::MissingMeasurement)
        } else if unescaped_len > self.limits.max_measurement_bytes as usize {
            Err(Rule::MeasurementTooLong)
        } else {
            Ok(())
        }
    }

    /// Checks a tag value's (unescaped) length.
    #[inline]
    pub(crate) fn tag_value(&self, unescaped_len: usize) -> Result<(), Rule> {
        if unescaped_len > self.limits.max_tag_value_bytes as usize {
            Err(Rule::TagValueTooLong)
        } else {
            Ok(())
        }
    }

    /// Checks a string or bytes field value's length.
    #[inline]
    pub(crate) fn field_value(&self, len: usize) -> Result<(), Rule> {
        if len > self.limits.max_field_value_bytes as usize {
            Err(Rule::FieldValueTooLong)
        } else {
            Ok(())
        }
    }

    /// Checks a point's encoded length.
    #[inline]
    pub(crate) fn line(&self, len: usize) -> Result<(), Rule> {
        if len > self.limits.max_line_bytes as usize {
            Err(Rule::LineTooLong)
        } else {
            Ok(())
        }
    }

    /// Records a string-like field value (string, bytes, array of strings).
    #[inline]
    pub(crate) fn string_field(&mut self) -> Result<(), Rule> {
        if self.category.forbids_string_fields() {
            self.violate(
                Rule::MetricStringField,
                BROKE_STRING,
                self.actions.metric_string_field,
            )?;
        }
        Ok(())
    }

    #[inline]
    fn violate(&mut self, rule: Rule, bit: u8, action: Action) -> Result<(), Rule> {
        match action {
            Action::Reject => Err(rule),
            Action::Count => {
                self.broke |= bit;
                Ok(())
            }
        }
    }

    /// Records a tag or field key: `input[start..end]`, spelled as `spelling`.
    #[inline(always)]
    pub(crate) fn key(
        &mut self,
        input: &[u8],
        start: usize,
        end: usize,
        spelling: Spelling,
        is_tag: bool,
    ) -> Result<(), Rule> {
        if is_tag {
            self.tags += 1;
            if self.tags > self.limits.max_tags {
                return Err(Rule::TooManyTags);
            }
        } else {
            self.fields += 1;
            if self.fields > self.limits.max_fields {
                return Err(Rule::TooManyFields);
            }
        }
        let key = if spelling == Spelling::Plain {
            let bytes = &input[start..end];
            // One comparison for both "empty" and "too long".
            if bytes.len().wrapping_sub(1) >= self.limits.max_key_bytes as usize {
                return Err(if bytes.is_empty() {
                    Rule::EmptyKey
                } else {
                    Rule::KeyTooLong
                });
            }
            KeyRef {
                hash: quick_hash(bytes),
                start,
                end,
            }
        } else {
            self.unescaped_key(input, start, end, spelling)?
        };
        if self.has_key_rules {
            // Scalars, not the struct: a struct passed to a call goes through the stack, and
            // the whole-struct reload below then waits on partial stores.
            self.key_rules(input, key.start, key.end)?;
        }
        self.last_duplicate = self.is_duplicate(input, key);
        if self.last_duplicate {
            self.violate(Rule::DuplicateKey, BROKE_DUP, self.actions.duplicate_key)?;
        }
        Ok(())
    }

    /// The slow path of [`Self::key`]: a key that may contain escapes.
    #[cold]
    #[inline(never)]
    fn unescaped_key(
        &mut self,
        input: &[u8],
        start: usize,
        end: usize,
        spelling: Spelling,
    ) -> Result<KeyRef, Rule> {
        let raw = &input[start..end];
        let from = self.unescaped.len();
        match spelling {
            Spelling::Json => crate::json_string::unescape_into(raw, &mut self.unescaped)
                .map_err(|()| Rule::JsonSyntax)?,
            Spelling::LpTag => unescape_line_protocol(raw, false, &mut self.unescaped),
            Spelling::LpField | Spelling::Plain => {
                unescape_line_protocol(raw, true, &mut self.unescaped)
            }
        }
        let bytes = &self.unescaped[from..];
        if bytes.is_empty() {
            return Err(Rule::EmptyKey);
        }
        if bytes.len() > self.limits.max_key_bytes as usize {
            return Err(Rule::KeyTooLong);
        }
        Ok(KeyRef {
            hash: quick_hash(bytes),
            start: from | IN_SCRATCH,
            end: self.unescaped.len(),
        })
    }

    /// Reserved and expected keys of the category.
    #[inline(never)]
    fn key_rules(&mut self, input: &[u8], start: usize, end: usize) -> Result<(), Rule> {
        let bytes = self.bytes(
            input,
            KeyRef {
                hash: 0,
                start,
                end,
            },
        );
        let is_reserved = self.reserved.contains(&bytes);
        let is_expected = !self.expected_seen && self.expected == Some(bytes);
        if is_expected {
            self.expected_seen = true;
        }
        if is_reserved {
            self.violate(Rule::ReservedKey, BROKE_RESERVED, self.actions.reserved_key)?;
        }
        Ok(())
    }

    /// Ends the point, counting the rules it broke that are configured to count. A point
    /// without fields is the format's business (line protocol cannot spell one; Guance keeps
    /// protobuf and JSON points with tags only).
    #[inline]
    pub(crate) fn finish(&mut self, counts: &mut RuleCounts) -> Result<(), Rule> {
        if !self.expected_seen && self.expected.is_some() {
            self.violate(
                Rule::MissingExpectedKey,
                0,
                self.actions.missing_expected_key,
            )?;
            counts.add(Rule::MissingExpectedKey);
        }
        if self.broke != 0 {
            if self.broke & BROKE_STRING != 0 {
                counts.add(Rule::MetricStringField);
            }
            if self.broke & BROKE_RESERVED != 0 {
                counts.add(Rule::ReservedKey);
            }
            if self.broke & BROKE_DUP != 0 {
                counts.add(Rule::DuplicateKey);
            }
            if self.broke & BROKE_UTF8 != 0 {
                counts.add(Rule::InvalidUtf8);
            }
        }
        Ok(())
    }

    #[inline]
    fn bytes<'a>(&'a self, input: &'a [u8], key: KeyRef) -> &'a [u8] {
        if key.start & IN_SCRATCH != 0 {
            &self.unescaped[key.start & !IN_SCRATCH..key.end]
        } else {
            &input[key.start..key.end]
        }
    }

    /// Records `key` and says whether an equal key was recorded before in this point.
    #[inline(always)]
    fn is_duplicate(&mut self, input: &[u8], key: KeyRef) -> bool {
        let index = self.count;
        self.count += 1;
        if index < LINEAR_KEYS {
            let bit = (key.hash >> 54) as usize;
            let (word, mask) = (bit >> 6, 1u64 << (bit & 63));
            let maybe_seen = self.filter[word] & mask != 0;
            self.filter[word] |= mask;
            self.first_keys[index] = key;
            return maybe_seen && self.seen_before(input, index);
        }
        self.is_duplicate_many(input, key.start, key.end, index)
    }

    /// A filter hit: compare key `index` (just recorded) with the keys before it.
    #[cold]
    #[inline(never)]
    fn seen_before(&self, input: &[u8], index: usize) -> bool {
        let key = self.first_keys[index];
        self.first_keys[..index]
            .iter()
            .any(|&k| self.same(input, k, key))
    }

    /// Past [`LINEAR_KEYS`] keys: a hash table over a hash of every byte, so keys alike in
    /// their ends cannot make it quadratic.
    #[inline(never)]
    fn is_duplicate_many(&mut self, input: &[u8], start: usize, end: usize, index: usize) -> bool {
        if index == LINEAR_KEYS {
            // Switch to the table: a fresh generation, then every key so far (no duplicates
            // among them that matter any more: a duplicate was already reported).
            self.generation = self.generation.wrapping_add(1);
            if self.generation == 0 {
                self.table.fill((0, 0));
                self.generation = 1;
            }
            for i in 0..LINEAR_KEYS {
                let mut k = self.first_keys[i];
                k.hash = hash(self.bytes(input, k));
                self.keys.push(k);
                self.table_insert(input, k, i as u32);
            }
        }
        let key = KeyRef {
            hash: hash(self.bytes(
                input,
                KeyRef {
                    hash: 0,
                    start,
                    end,
                },
            )),
            start,
            end,
        };
        self.keys.push(key);
        self.table_insert(input, key, index as u32)
    }

    /// Inserts key `index` unless an equal key is present; returns whether one was.
    fn table_insert(&mut self, input: &[u8], key: KeyRef, index: u32) -> bool {
        let mask = self.table.len() - 1;
        let mut slot = (key.hash as usize) & mask;
        loop {
            let (generation, other) = self.table[slot];
            if generation != self.generation {
                self.table[slot] = (self.generation, index);
                return false;
            }
            let other = self.keys[other as usize];
            if self.same(input, other, key) {
                return true;
            }
            slot = (slot + 1) & mask;
        }
    }

    #[inline]
    fn same(&self, input: &[u8], a: KeyRef, b: KeyRef) -> bool {
        a.hash == b.hash && self.bytes(input, a) == self.bytes(input, b)
    }
}

/// Appends the unescaped form of a line-protocol name, key or tag value, as Guance reads it:
/// `\,`, `\=` and `\ ` stand for the byte, and so does `\"` where `quotes` (measurements and
/// field keys); every other backslash stays, `\\` included. (The validator refuses the
/// spellings where Guance's scanners and unescapers disagree: an escaped backslash before one of
/// those bytes.)
pub(crate) fn unescape_line_protocol(raw: &[u8], quotes: bool, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let escapes = match raw.get(i + 1) {
            Some(b',' | b'=' | b' ') => true,
            Some(b'"') => quotes,
            _ => false,
        };
        if b == b'\\' && escapes {
            out.push(raw[i + 1]);
            i += 2;
        } else {
            out.push(b);
            i += 1;
        }
    }
}

#[inline]
fn load8(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

fn has_key_rules(category: Category) -> bool {
    !category.reserved_keys().is_empty() || category.expected_key().is_some()
}

/// A hash of a key's length and its first and last (up to) eight bytes: enough to tell the
/// few keys of an ordinary point apart. Equal hashes are confirmed by comparing bytes.
#[inline(always)]
fn quick_hash(b: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let n = b.len();
    let w = if n >= 8 {
        load8(&b[..8]) ^ load8(&b[n - 8..]).rotate_left(23)
    } else if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
        u64::from(hi) << 32 | u64::from(lo)
    } else if n > 0 {
        u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16
    } else {
        0
    };
    let h = (w ^ (n as u64)).wrapping_mul(K);
    h ^ (h >> 29)
}

/// A hash of every byte of a key, for the table of points with many keys.
fn hash(b: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let n = b.len();
    let mut h = (n as u64).wrapping_mul(K);
    if n >= 8 {
        if n > 16 {
            for c in b[8..n - 8].chunks(8) {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
            }
        }
        h = (h ^ load8(&b[..8])).wrapping_mul(K).rotate_left(29);
        h = (h ^ load8(&b[n - 8..])).wrapping_mul(K);
    } else if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
        h = (h ^ (u64::from(hi) << 32 | u64::from(lo))).wrapping_mul(K);
    } else if n > 0 {
        let w = u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16;
        h = (h ^ w).wrapping_mul(K);
    }
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Action;

    fn checker(category: Category) -> PointChecker {
        PointChecker::new(Limits::default(), RuleActions::default(), category)
    }

    fn keys(
        c: &mut PointChecker,
        input: &[u8],
        spans: &[(usize, usize, bool)],
    ) -> Result<(), Rule> {
        c.begin();
        for &(s, e, tag) in spans {
            c.key(input, s, e, Spelling::LpField, tag)?;
        }
        c.finish(&mut RuleCounts::default())
    }

    fn strict(category: Category) -> PointChecker {
        let actions = RuleActions {
            duplicate_key: Action::Reject,
            reserved_key: Action::Reject,
            ..RuleActions::default()
        };
        PointChecker::new(Limits::default(), actions, category)
    }

    #[test]
    fn key_duplicate_tag_and_field_rejected() {
        let input = b"host host";
        let mut c = strict(Category::Metric);
        assert_eq!(
            keys(&mut c, input, &[(0, 4, true), (5, 9, false)]),
            Err(Rule::DuplicateKey)
        );
    }

    #[test]
    fn key_escaped_spelling_of_same_key_is_duplicate() {
        let input = b"a\\ b a b";
        let mut c = strict(Category::Metric);
        // "a\ b" unescapes to "a b"
        assert_eq!(
            keys(&mut c, input, &[(0, 4, false), (5, 8, false)]),
            Err(Rule::DuplicateKey)
        );
    }

    #[test]
    fn key_many_distinct_keys_accepted_and_dup_after_switch_found() {
        let mut input = Vec::new();
        let mut spans = Vec::new();
        for i in 0..1000 {
            let s = input.len();
            input.extend_from_slice(format!("key_{i}").as_bytes());
            spans.push((s, input.len(), false));
        }
        let mut c = strict(Category::Metric);
        assert_eq!(keys(&mut c, &input, &spans), Ok(()));
        spans.push(spans[500]);
        assert_eq!(keys(&mut c, &input, &spans), Err(Rule::DuplicateKey));
        // and the next point starts clean
        spans.pop();
        assert_eq!(keys(&mut c, &input, &spans), Ok(()));
        spans.truncate(3);
        assert_eq!(keys(&mut c, &input, &spans), Ok(()));
    }

    #[test]
    fn key_too_many_fields_and_tags_rejected() {
        let input = b"k";
        let limits = Limits {
            max_fields: 2,
            max_tags: 1,
            ..Limits::default()
        };
        let mut c = PointChecker::new(limits, RuleActions::default(), Category::Metric);
        c.begin();
        assert_eq!(c.key(input, 0, 1, Spelling::Plain, true), Ok(()));
        assert_eq!(
            c.key(input, 0, 1, Spelling::Plain, true),
            Err(Rule::TooManyTags)
        );
        c.begin();
        let _ = c.key(input, 0, 1, Spelling::Plain, false);
        let _ = c.key(input, 0, 1, Spelling::Plain, false);
        assert_eq!(
            c.key(input, 0, 1, Spelling::Plain, false),
            Err(Rule::TooManyFields)
        );
    }

    #[test]
    fn key_empty_and_too_long_rejected() {
        let long = vec![b'k'; 257];
        let mut c = checker(Category::Metric);
        c.begin();
        assert_eq!(
            c.key(b"", 0, 0, Spelling::Plain, false),
            Err(Rule::EmptyKey)
        );
        assert_eq!(
            c.key(&long, 0, 257, Spelling::Plain, false),
            Err(Rule::KeyTooLong)
        );
        assert_eq!(c.key(&long, 0, 256, Spelling::Plain, false), Ok(()));
    }

    #[test]
    fn reserved_and_expected_keys_follow_actions() {
        let input = b"source status";
        let mut c = strict(Category::Logging);
        assert_eq!(
            keys(&mut c, input, &[(0, 6, true), (7, 13, false)]),
            Err(Rule::ReservedKey)
        );
        let actions = RuleActions {
            reserved_key: Action::Count,
            ..RuleActions::default()
        };
        let mut c = PointChecker::new(Limits::default(), actions, Category::Logging);
        let mut counts = RuleCounts::default();
        c.begin();
        c.key(input, 0, 6, Spelling::Plain, true).unwrap();
        c.key(input, 7, 13, Spelling::Plain, false).unwrap();
        c.finish(&mut counts).unwrap();
        assert_eq!(counts.reserved_key, 1);
        assert_eq!(counts.missing_expected_key, 0);
        c.begin();
        c.key(input, 0, 6, Spelling::Plain, false).unwrap();
        c.finish(&mut counts).unwrap();
        assert_eq!(counts.missing_expected_key, 1);
        // Reserved keys of one category are ordinary keys in another.
        let mut c = checker(Category::Metric);
        assert_eq!(keys(&mut c, input, &[(0, 6, true), (7, 13, false)]), Ok(()));
    }

    #[test]
    fn finish_without_fields_accepted_and_duplicates_counted_by_default() {
        let mut c = checker(Category::Metric);
        assert_eq!(keys(&mut c, b"t", &[(0, 1, true)]), Ok(()));
        let mut counts = RuleCounts::default();
        c.begin();
        c.key(b"aa", 0, 1, Spelling::Plain, false).unwrap();
        c.key(b"aa", 1, 2, Spelling::Plain, false).unwrap();
        assert!(c.last_duplicate() && c.has_duplicates());
        c.finish(&mut counts).unwrap();
        assert_eq!(counts.duplicate_key, 1);
    }

    #[test]
    fn unescape_line_protocol_follows_guance_per_position() {
        let mut out = Vec::new();
        unescape_line_protocol(br#"a\,b\ c\=d\"e\\f\qg"#, true, &mut out);
        assert_eq!(out, br#"a,b c=d"e\\f\qg"#);
        out.clear();
        unescape_line_protocol(br#"a\,b\ c\=d\"e\\,f"#, false, &mut out);
        assert_eq!(out, br#"a,b c=d\"e\,f"#);
    }

    #[test]
    fn hash_distinguishes_short_keys() {
        for h in [hash, quick_hash] {
            assert_ne!(h(b"ab"), h(b"ba"));
            assert_ne!(h(b"usage_user"), h(b"usage_usex"));
            assert_ne!(h(b"a"), h(b"a\0"));
        }
    }

    #[test]
    fn key_many_keys_alike_in_their_ends_still_found_distinct() {
        // Same first and last eight bytes: one quick hash for all, so the table (full hash)
        // must take over and keep this linear.
        let mut input = Vec::new();
        let mut spans = Vec::new();
        for i in 0..1000 {
            let s = input.len();
            input.extend_from_slice(format!("prefix__{i:05}__suffix").as_bytes());
            spans.push((s, input.len(), false));
        }
        let mut c = strict(Category::Metric);
        assert_eq!(keys(&mut c, &input, &spans), Ok(()));
        spans.push(spans[999]);
        assert_eq!(keys(&mut c, &input, &spans), Err(Rule::DuplicateKey));
    }
}
