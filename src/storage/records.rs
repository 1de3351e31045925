//! The stored form of an [`ObservationRecord`]: a small index entry that
//! lets amendments and disputes find their target without decoding its leaf.
//!
//! `retracted u8 || leaf_hash 32 || (len u8 || utf8) for author, commitment, zone`.
//! Identifiers are at most 64 bytes (see core::rules), so a u8 length suffices.

use crate::core::rules::ObservationRecord;

pub fn encode(record: &ObservationRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(33 + 3 * 65);
    out.push(u8::from(record.retracted));
    out.extend_from_slice(&record.leaf_hash);
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
    let mut rest = bytes.get(33..)?;
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
        retracted,
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
            retracted: true,
        };
        assert_eq!(decode(&encode(&record)), Some(record.clone()));
        let mut trailing = encode(&record);
        trailing.push(0);
        assert_eq!(decode(&trailing), None);
        assert_eq!(decode(&[2]), None);
    }
}
