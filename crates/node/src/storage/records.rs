//! Compact stored forms: an [`ObservationRecord`], the small index entry
//! that lets amendments and disputes find their target without decoding its
//! leaf, and a [`CountedObservation`] in a projection window.
//!
//! A record:
//! `retracted u8 || leaf_hash 32 || observed_until i64 || (len u8 || utf8) for
//! author, commitment, zone`.
//! Identifiers are at most 64 bytes (see core::rules), so a u8 length suffices.

use ceasefire_core::proto::{Category, Finding};
use ceasefire_core::rules::ObservationRecord;
use ceasefire_core::windows::CountedObservation;

pub fn encode(record: &ObservationRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(41 + 3 * 65);
    out.push(u8::from(record.retracted));
    out.extend_from_slice(&record.leaf_hash);
    out.extend_from_slice(&record.observed_until_micros.to_be_bytes());
    for text in [&record.author, &record.commitment_id, &record.zone_id] {
        out.push(text.len() as u8);
        out.extend_from_slice(text.as_bytes());
    }
    out
}

pub fn decode(bytes: &[u8]) -> Option<ObservationRecord> {
    let retracted = match *bytes.first()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let leaf_hash = bytes.get(1..33)?.try_into().ok()?;
    let observed_until_micros = i64::from_be_bytes(bytes.get(33..41)?.try_into().ok()?);
    let mut rest = bytes.get(41..)?;
    let mut texts = Vec::with_capacity(3);
    for _ in 0..3 {
        let len = *rest.first()? as usize;
        texts.push(String::from_utf8(rest.get(1..1 + len)?.to_vec()).ok()?);
        rest = &rest[1 + len..];
    }
    if !rest.is_empty() {
        return None;
    }
    let zone_id = texts.pop()?;
    let commitment_id = texts.pop()?;
    let author = texts.pop()?;
    Some(ObservationRecord {
        author,
        leaf_hash,
        commitment_id,
        zone_id,
        observed_until_micros,
        retracted,
    })
}

/// `disputed u8 || finding i32 || category i32 || reporter (len u8 || utf8)`,
/// the enums as their numbers.
pub fn encode_counted(observation: &CountedObservation) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + observation.reporter.len());
    out.push(u8::from(observation.disputed));
    out.extend_from_slice(&(observation.finding as i32).to_be_bytes());
    out.extend_from_slice(&(observation.category as i32).to_be_bytes());
    out.push(observation.reporter.len() as u8);
    out.extend_from_slice(observation.reporter.as_bytes());
    out
}

pub fn decode_counted(bytes: &[u8]) -> Option<CountedObservation> {
    let disputed = match *bytes.first()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    // A number the enum does not know is damage, like any other.
    let finding = Finding::try_from(i32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?)).ok()?;
    let category =
        Category::try_from(i32::from_be_bytes(bytes.get(5..9)?.try_into().ok()?)).ok()?;
    let len = *bytes.get(9)? as usize;
    let reporter = bytes.get(10..)?;
    if reporter.len() != len {
        return None;
    }
    Some(CountedObservation {
        reporter: String::from_utf8(reporter.to_vec()).ok()?,
        finding,
        category,
        disputed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let record = ObservationRecord {
            author: "osce-smm".into(),
            leaf_hash: [9; 32],
            commitment_id: "ceasefire".into(),
            zone_id: "sector-north".into(),
            observed_until_micros: -1_700_000_000_000_000,
            retracted: true,
        };
        assert_eq!(decode(&encode(&record)), Some(record.clone()));
        let mut trailing = encode(&record);
        trailing.push(0);
        assert_eq!(decode(&trailing), None);
        assert_eq!(decode(&[2]), None);
    }

    #[test]
    fn counted_observations_round_trip_and_garbage_is_refused() {
        let counted = CountedObservation {
            reporter: "osce-smm".into(),
            finding: Finding::Violation,
            category: Category::Other,
            disputed: true,
        };
        let bytes = encode_counted(&counted);
        assert_eq!(decode_counted(&bytes), Some(counted));
        for cut in 0..bytes.len() {
            assert_eq!(decode_counted(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(b'x');
        assert_eq!(decode_counted(&trailing), None);
        // The numbers as ever (finding 1, category 12); unknown ones are damage.
        assert_eq!(bytes[1..9], [0, 0, 0, 1, 0, 0, 0, 12]);
        for (at, number) in [(1..5, 4i32), (5..9, -7)] {
            let mut unknown = bytes.clone();
            unknown[at].copy_from_slice(&number.to_be_bytes());
            assert_eq!(decode_counted(&unknown), None, "{number}");
        }
    }
}
