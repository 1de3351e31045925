//! Pages of the Compliance service's lists (ListStatuses, GetHistory): page
//! sizes, page tokens, and which pairs one ListStatuses page holds.
//!
//! A page token is a position (the key of the last item a page covered)
//! bound to the request it continues. Its bytes, before unpadded base64url:
//!
//! ```text
//! version u8 (1) || call u8 (1 ListStatuses, 2 GetHistory) || binding [16]
//! || position
//!   ListStatuses: zone_id_len u16 || zone_id || commitment_id_len u16 || commitment_id
//!   GetHistory:   seq u64 || index u32
//! binding = SHA-256("ceasefire-ledger:page-token:v1\n" || call || request)[..16]
//!   ListStatuses request: the filter as sets (each list sorted, repeats
//!     dropped): for zone_ids, then commitment_ids, count u32 || each
//!     (len u32 || UTF-8); then statuses, count u32 || each i32
//!   GetHistory request: len u32 || zone_id || len u32 || commitment_id
//! ```
//!
//! Integers are big-endian. The binding is what refuses a token replayed
//! with another filter or for another pair; it is a digest, not a MAC: the
//! data is public and a forged position is only a place to start reading.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ceasefire_core::projection::{PairKey, PairSummary};
use ceasefire_grpc::proto::{ComplianceStatus, StatusFilter};
use sha2::{Digest, Sha256};

/// Items in a page when the request asks for 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The most items in a page; larger requests are taken as this.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The most pairs one ListStatuses page examines. A filter that matches few
/// pairs answers pages with fewer items (even none) and a next_page_token,
/// rather than reading the whole projection for one page.
pub const SCAN_BUDGET: usize = 10 * MAX_PAGE_SIZE;

const TOKEN_VERSION: u8 = 1;
const BINDING_LEN: usize = 16;
/// Longer than any token this server issues (about 200 characters).
const MAX_TOKEN_CHARS: usize = 512;
const DOMAIN: &[u8] = b"ceasefire-ledger:page-token:v1\n";

/// The page size a request's `page_size` means.
pub fn page_size(requested: u32) -> usize {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        requested => (requested as usize).min(MAX_PAGE_SIZE),
    }
}

/// Which call a token continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    ListStatuses = 1,
    GetHistory = 2,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::ListStatuses => "ListStatuses",
            Call::GetHistory => "GetHistory",
        }
    }
}

/// Why a page token is refused: the message of the INVALID_ARGUMENT.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenError(pub String);

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn binding(call: Call, request: &[u8]) -> [u8; BINDING_LEN] {
    let digest = Sha256::new()
        .chain_update(DOMAIN)
        .chain_update([call as u8])
        .chain_update(request)
        .finalize();
    let mut binding = [0u8; BINDING_LEN];
    binding.copy_from_slice(&digest[..BINDING_LEN]);
    binding
}

/// The filter as the binding sees it: sets, so order and repeats do not
/// make another request.
fn filter_binding(filter: &StatusFilter) -> [u8; BINDING_LEN] {
    let mut request = Vec::new();
    for list in [&filter.zone_ids, &filter.commitment_ids] {
        let set: BTreeSet<&str> = list.iter().map(String::as_str).collect();
        request.extend_from_slice(&(set.len() as u32).to_be_bytes());
        for item in set {
            put_text(&mut request, item);
        }
    }
    let statuses: BTreeSet<i32> = filter.statuses.iter().copied().collect();
    request.extend_from_slice(&(statuses.len() as u32).to_be_bytes());
    for status in statuses {
        request.extend_from_slice(&status.to_be_bytes());
    }
    binding(Call::ListStatuses, &request)
}

fn pair_binding((zone_id, commitment_id): &PairKey) -> [u8; BINDING_LEN] {
    let mut request = Vec::new();
    put_text(&mut request, zone_id);
    put_text(&mut request, commitment_id);
    binding(Call::GetHistory, &request)
}

fn encode(call: Call, binding: [u8; BINDING_LEN], position: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(2 + BINDING_LEN + position.len());
    bytes.push(TOKEN_VERSION);
    bytes.push(call as u8);
    bytes.extend_from_slice(&binding);
    bytes.extend_from_slice(position);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The position in `token`, once its form, version, call and binding are
/// checked; `mismatch` says what differs when only the binding does.
fn decode(
    token: &str,
    call: Call,
    binding: [u8; BINDING_LEN],
    mismatch: &str,
) -> Result<Vec<u8>, TokenError> {
    let malformed = || {
        TokenError(format!(
            "page_token is not a {} page token (pass back a next_page_token unchanged, \
             or an empty page_token for the first page)",
            call.name()
        ))
    };
    if token.len() > MAX_TOKEN_CHARS {
        return Err(malformed());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    if bytes.len() < 2 + BINDING_LEN {
        return Err(malformed());
    }
    if bytes[0] != TOKEN_VERSION {
        return Err(TokenError(format!(
            "page_token has format version {}, which this server does not read; \
             start again from the first page",
            bytes[0]
        )));
    }
    if bytes[1] != call as u8 {
        let issuer = [Call::ListStatuses, Call::GetHistory]
            .into_iter()
            .find(|other| *other as u8 == bytes[1]);
        return Err(match issuer {
            Some(issuer) => TokenError(format!(
                "page_token was issued by {}, not {}",
                issuer.name(),
                call.name()
            )),
            None => malformed(),
        });
    }
    if bytes[2..2 + BINDING_LEN] != binding {
        return Err(TokenError(format!(
            "page_token was issued for {mismatch}: every page must repeat the first page's request"
        )));
    }
    Ok(bytes[2 + BINDING_LEN..].to_vec())
}

/// The token of the ListStatuses page after `last`, for `filter`.
pub fn statuses_token(filter: &StatusFilter, (zone_id, commitment_id): &PairKey) -> String {
    let mut position = Vec::with_capacity(4 + zone_id.len() + commitment_id.len());
    for id in [zone_id, commitment_id] {
        position.extend_from_slice(&(id.len() as u16).to_be_bytes());
        position.extend_from_slice(id.as_bytes());
    }
    encode(Call::ListStatuses, filter_binding(filter), &position)
}

/// Where a ListStatuses page starts: after the returned key, or at the
/// beginning for an empty token.
pub fn statuses_position(
    token: &str,
    filter: &StatusFilter,
) -> Result<Option<PairKey>, TokenError> {
    if token.is_empty() {
        return Ok(None);
    }
    let position = decode(
        token,
        Call::ListStatuses,
        filter_binding(filter),
        "another filter",
    )?;
    let malformed = || TokenError("page_token holds no valid ListStatuses position".into());
    let mut rest = position.as_slice();
    let mut id = || -> Result<String, TokenError> {
        let (len, tail) = rest.split_first_chunk::<2>().ok_or_else(malformed)?;
        let len = u16::from_be_bytes(*len) as usize;
        if len == 0 || tail.len() < len {
            return Err(malformed());
        }
        let (text, tail) = tail.split_at(len);
        rest = tail;
        String::from_utf8(text.to_vec()).map_err(|_| malformed())
    };
    let key = (id()?, id()?);
    if !rest.is_empty() {
        return Err(malformed());
    }
    Ok(Some(key))
}

/// The token of the GetHistory page after change `(seq, index)` of `pair`.
pub fn history_token(pair: &PairKey, (seq, index): (u64, u32)) -> String {
    let mut position = [0u8; 12];
    position[..8].copy_from_slice(&seq.to_be_bytes());
    position[8..].copy_from_slice(&index.to_be_bytes());
    encode(Call::GetHistory, pair_binding(pair), &position)
}

/// Where a GetHistory page starts: after the returned change, or at the
/// beginning for an empty token.
pub fn history_position(token: &str, pair: &PairKey) -> Result<Option<(u64, u32)>, TokenError> {
    if token.is_empty() {
        return Ok(None);
    }
    let position = decode(token, Call::GetHistory, pair_binding(pair), "another pair")?;
    let position: [u8; 12] = position
        .try_into()
        .map_err(|_| TokenError("page_token holds no valid GetHistory position".into()))?;
    let seq = u64::from_be_bytes(position[..8].try_into().unwrap_or_default());
    let index = u32::from_be_bytes(position[8..].try_into().unwrap_or_default());
    Ok(Some((seq, index)))
}

/// A filter in the form matched against each pair or change: sets. The
/// one matcher of ListStatuses pages and Subscribe streams.
pub struct Matcher {
    zone_ids: Option<BTreeSet<String>>,
    commitment_ids: Option<BTreeSet<String>>,
    statuses: Option<BTreeSet<i32>>,
}

fn non_empty<T: Ord + Clone>(list: &[T]) -> Option<BTreeSet<T>> {
    (!list.is_empty()).then(|| list.iter().cloned().collect())
}

impl Matcher {
    pub fn new(filter: &StatusFilter) -> Matcher {
        Matcher {
            zone_ids: non_empty(&filter.zone_ids),
            commitment_ids: non_empty(&filter.commitment_ids),
            statuses: non_empty(&filter.statuses),
        }
    }

    pub fn matches(&self, zone_id: &str, commitment_id: &str, status: ComplianceStatus) -> bool {
        self.zone_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(zone_id))
            && self
                .commitment_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(commitment_id))
            && self
                .statuses
                .as_ref()
                .is_none_or(|statuses| statuses.contains(&(status as i32)))
    }
}

/// One ListStatuses page: its pairs, and the position of the next page
/// (`None`: nothing matching follows).
pub struct StatusesPage<'a> {
    pub pairs: Vec<(&'a PairKey, &'a PairSummary)>,
    pub next: Option<PairKey>,
}

/// The pairs after `after` that match `filter`, at most `size` of them,
/// examining at most `budget` pairs: O(log pairs + budget), never a walk
/// from the first pair. A filter naming zones reads only those zones' pairs.
///
/// The next position is the last pair returned when another matching pair
/// follows it, or the last pair examined when the budget ran out first.
pub fn statuses_page<'a>(
    pairs: &'a BTreeMap<PairKey, PairSummary>,
    filter: &StatusFilter,
    after: Option<&PairKey>,
    size: usize,
    budget: usize,
) -> StatusesPage<'a> {
    let budget = budget.max(1);
    let matcher = Matcher::new(filter);
    let start = |zone: Option<&str>| -> Bound<PairKey> {
        match (after, zone) {
            (Some(after), None) => Bound::Excluded(after.clone()),
            (Some(after), Some(zone)) if after.0 == zone => Bound::Excluded(after.clone()),
            (_, zone) => Bound::Included((zone.unwrap_or_default().to_string(), String::new())),
        }
    };
    let candidates: Box<dyn Iterator<Item = (&'a PairKey, &'a PairSummary)> + 'a> = match &matcher
        .zone_ids
    {
        None => Box::new(pairs.range((start(None), Bound::Unbounded))),
        Some(zones) => {
            let zones: Vec<String> = zones
                .iter()
                .filter(|zone| after.is_none_or(|after| **zone >= after.0))
                .cloned()
                .collect();
            let starts: Vec<Bound<PairKey>> = zones.iter().map(|zone| start(Some(zone))).collect();
            Box::new(
                zones
                    .into_iter()
                    .zip(starts)
                    .flat_map(move |(zone, start)| {
                        pairs
                            .range((start, Bound::Unbounded))
                            .take_while(move |((pair_zone, _), _)| *pair_zone == zone)
                    }),
            )
        }
    };
    let mut page = Vec::new();
    let mut last_examined: Option<&PairKey> = None;
    for (examined, (key, summary)) in candidates.enumerate() {
        if examined == budget {
            // Out of budget: resume after the last pair examined.
            return StatusesPage {
                pairs: page,
                next: last_examined.cloned(),
            };
        }
        last_examined = Some(key);
        if !matcher.matches(&key.0, &key.1, summary.status) {
            continue;
        }
        if page.len() == size {
            // Another matching pair follows the page: it starts the next one.
            let next = page.last().map(|(key, _)| (*key).clone());
            return StatusesPage { pairs: page, next };
        }
        page.push((key, summary));
    }
    StatusesPage {
        pairs: page,
        next: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(status: ComplianceStatus) -> PairSummary {
        PairSummary {
            status,
            ..PairSummary::unobserved(0)
        }
    }

    /// 20 zones by 5 commitments; status 1 where (zone + commitment) is
    /// even, else 2.
    fn pairs() -> BTreeMap<PairKey, PairSummary> {
        let mut pairs = BTreeMap::new();
        for zone in 0..20 {
            for commitment in 0..5 {
                pairs.insert(
                    (format!("zone-{zone:02}"), format!("c-{commitment}")),
                    summary(if (zone + commitment) % 2 == 0 {
                        ComplianceStatus::Compliant
                    } else {
                        ComplianceStatus::Unobserved
                    }),
                );
            }
        }
        pairs
    }

    fn filter(zones: &[&str], commitments: &[&str], statuses: &[i32]) -> StatusFilter {
        StatusFilter {
            zone_ids: zones.iter().map(|id| id.to_string()).collect(),
            commitment_ids: commitments.iter().map(|id| id.to_string()).collect(),
            statuses: statuses.to_vec(),
        }
    }

    /// Walks every page, through tokens; returns the keys and the pages.
    fn walk(
        pairs: &BTreeMap<PairKey, PairSummary>,
        filter: &StatusFilter,
        size: usize,
        budget: usize,
    ) -> (Vec<PairKey>, usize) {
        let mut token = String::new();
        let mut keys = Vec::new();
        let mut pages = 0;
        loop {
            let after = statuses_position(&token, filter).unwrap();
            let page = statuses_page(pairs, filter, after.as_ref(), size, budget);
            pages += 1;
            assert!(page.pairs.len() <= size);
            keys.extend(page.pairs.iter().map(|(key, _)| (*key).clone()));
            match page.next {
                Some(next) => token = statuses_token(filter, &next),
                None => return (keys, pages),
            }
            assert!(pages < 1000, "the walk does not end");
        }
    }

    fn unpaged(pairs: &BTreeMap<PairKey, PairSummary>, filter: &StatusFilter) -> Vec<PairKey> {
        let matcher = Matcher::new(filter);
        pairs
            .iter()
            .filter(|(key, summary)| matcher.matches(&key.0, &key.1, summary.status))
            .map(|(key, _)| key.clone())
            .collect()
    }

    #[test]
    fn page_sizes_default_and_clamp() {
        assert_eq!(page_size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(1), 1);
        assert_eq!(page_size(1000), 1000);
        assert_eq!(page_size(1001), MAX_PAGE_SIZE);
        assert_eq!(page_size(u32::MAX), MAX_PAGE_SIZE);
    }

    #[test]
    fn every_walk_is_the_unpaged_list() {
        let pairs = pairs();
        let filters = [
            filter(&[], &[], &[]),
            filter(&[], &[], &[1]),
            filter(
                &["zone-03", "zone-17", "zone-05", "zone-99", "zone-03"],
                &[],
                &[],
            ),
            filter(&["zone-03", "zone-17"], &["c-1", "c-4"], &[2]),
            filter(&[], &["c-2"], &[]),
            filter(&["nowhere"], &[], &[]),
        ];
        for filter in &filters {
            let expected = unpaged(&pairs, filter);
            for size in [1, 2, 3, 7, 100, 1000] {
                for budget in [1, 2, 5, SCAN_BUDGET] {
                    let (keys, _) = walk(&pairs, filter, size, budget);
                    assert_eq!(
                        keys, expected,
                        "filter {filter:?} size {size} budget {budget}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_page_examines_at_most_its_budget_and_starts_at_its_position() {
        let pairs = pairs();
        // Few pairs match (c-0 of the even zones): with a budget of 10, a
        // page examines 10 pairs and ends there, whatever it found.
        let late = filter(&[], &["c-0"], &[1]);
        let page = statuses_page(&pairs, &late, None, 5, 10);
        assert!(page.pairs.len() <= 5);
        assert_eq!(
            page.next,
            Some(("zone-01".to_string(), "c-4".to_string())),
            "the tenth pair examined"
        );
        let (_, pages) = walk(&pairs, &late, 100, 10);
        assert_eq!(pages, 10, "100 pairs, 10 examined per page");
        // A full page stops at the last pair returned when more match.
        let all = filter(&[], &[], &[]);
        let page = statuses_page(&pairs, &all, None, 3, SCAN_BUDGET);
        assert_eq!(page.pairs.len(), 3);
        assert_eq!(page.next, Some(("zone-00".into(), "c-2".into())));
        // The last full page has no token: nothing follows it.
        let after = ("zone-19".to_string(), "c-1".to_string());
        let page = statuses_page(&pairs, &all, Some(&after), 3, SCAN_BUDGET);
        assert_eq!(page.pairs.len(), 3);
        assert_eq!(page.next, None);
    }

    #[test]
    fn tokens_round_trip_and_bind_their_request() {
        let zones = filter(&["b", "a", "a"], &[], &[3, 1]);
        let same = filter(&["a", "b"], &[], &[1, 3, 1]);
        let key = ("zone-1".to_string(), "c".to_string());
        let token = statuses_token(&zones, &key);
        assert_eq!(statuses_position(&token, &same), Ok(Some(key.clone())));
        assert_eq!(statuses_position("", &same), Ok(None));
        let other = filter(&["a"], &[], &[1, 3]);
        let refused = statuses_position(&token, &other).unwrap_err();
        assert!(refused.0.contains("another filter"), "{refused}");
        // A ListStatuses token is not a GetHistory one.
        let refused = history_position(&token, &key).unwrap_err();
        assert!(refused.0.contains("issued by ListStatuses"), "{refused}");

        let pair = ("zone-1".to_string(), "c".to_string());
        let token = history_token(&pair, (42, 7));
        assert_eq!(history_position(&token, &pair), Ok(Some((42, 7))));
        let refused = history_position(&token, &("zone-1".into(), "d".into())).unwrap_err();
        assert!(refused.0.contains("another pair"), "{refused}");
    }

    #[test]
    fn damaged_tokens_are_refused() {
        let all = filter(&[], &[], &[]);
        let key = ("zone".to_string(), "c".to_string());
        let token = statuses_token(&all, &key);
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for garbage in [
            "!!!".to_string(),
            "AAAA".to_string(),
            "x".repeat(MAX_TOKEN_CHARS + 1),
            token[..token.len() - 2].to_string(),
            format!("{token}AA"),
        ] {
            assert!(statuses_position(&garbage, &all).is_err(), "{garbage:?}");
        }
        bytes[0] = 2;
        let refused = statuses_position(&URL_SAFE_NO_PAD.encode(&bytes), &all).unwrap_err();
        assert!(refused.0.contains("format version 2"), "{refused}");
        bytes[0] = TOKEN_VERSION;
        bytes[1] = 9;
        assert!(statuses_position(&URL_SAFE_NO_PAD.encode(&bytes), &all).is_err());
        let history = history_token(&key, (1, 0));
        assert!(history_position(&history[..history.len() - 1], &key).is_err());
    }
}
