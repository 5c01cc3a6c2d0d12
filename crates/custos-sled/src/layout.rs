//! How the log is laid out in sled's keyspace. One tree, prefixed keys; every multi-byte number
//! in a key is big-endian so that sled's byte order is numeric order.
//!
//! | key                                              | value                                   |
//! |--------------------------------------------------|-----------------------------------------|
//! | `H`                                              | head: seq, hash, recorded_at            |
//! | `C` seq_first                                    | chunk: up to `CHUNK_EVENTS_MAX` records |
//! | `S` kind segment_id                              | segment meta: last seq, entries         |
//! | `S` kind segment_id part                         | segment page directory, in parts        |
//! | `S` kind segment_id `FFFFFFFF`                   | a segment file's pointer (id, len, hash)|
//! | `I` kind segment_id page_first_key page_first_seq | page: sorted (key, seq) entries        |
//! | `M` name                                         | metadata blobs (projections, snapshots) |
//!
//! Events are stored many to a key (a chunk) because sled's cost is per key: one key per event
//! caps appends near sled's per-key limit, while chunks let a batch of thousands of events cost
//! a handful of sequential keys. Indexes are immutable sorted segments, written one per append
//! batch and merged in the background of the writer (binary-counter policy), split into pages
//! small enough to stay inline in sled's log (sled writes larger values to blob files that it
//! never fsyncs).
//!
//! A segment of `SEGMENT_FILE_ENTRIES_MIN` entries or more (only a merge writes one) keeps its
//! pages in a file of its own under `files/` instead of sled: the entries, sorted, 16 bytes
//! each (`u64` key, `u64` seq, big-endian), so page `i` is the `PAGE_BYTES` at `i * PAGE_BYTES`
//! (the last one shorter); then one 8-byte [`page_checksum`] per page, little-endian. sled
//! holds its record, its page directory and a pointer (file id, length, SHA-256 of the whole
//! file). Merging rewrites every entry once per size class it climbs: in sled that left the
//! rewritten pages as garbage segments that sled overwrites on every open (136 MiB on a
//! 1M-event store); in files a merge is one sequential write and one unlink.

use custos_domain::{Seq, Timestamp};
use custos_log::{Head, IndexKey, IndexKind};

/// The most events one chunk holds. Readers rely on the bound: the chunk holding a seq starts at
/// most `CHUNK_EVENTS_MAX - 1` seqs before it. Never raise it (older stores were written with
/// larger chunks than today's, never with larger than this).
pub const CHUNK_EVENTS_MAX: usize = 256;
/// A chunk is closed at this many events or bytes, whichever comes first. Small enough that a
/// cold read of one event deserializes little (sled leaf nodes hold several chunks), large
/// enough that a batch of thousands of events is a few dozen sequential keys.
pub const CHUNK_EVENTS_WRITE: usize = 64;
pub const CHUNK_BYTES_MAX: usize = 6 * 1024;
/// Metadata values (checkpoints) are stored in parts of this size.
///
/// Every value the store writes stays under ~7 KiB: sled 0.34 splits a leaf node only past 16
/// items, and writes any node over 128 KiB as a separate blob file (a file created per node
/// rewrite, never fsynced by sled). 16 x 7 KiB keeps every node inline in sled's log.
pub const META_PART_BYTES: usize = 6 * 1024;
/// Metadata values of at least this many bytes (balance and loss checkpoints of a big ledger)
/// are kept in a file of their own under `files/`, and sled holds a pointer to it (file id,
/// length, SHA-256) as the value's only part, numbered `META_FILE_PART`. Megabytes split into
/// 6 KiB sled values cost sled a node rewrite per part; a file is one write and one read.
pub const META_FILE_BYTES_MIN: usize = 64 * 1024;
pub const META_FILE_PART: u32 = u32::MAX;

/// Entries of a segment's page directory per stored part (16 bytes each: 6 KiB).
pub const DIR_PART_ENTRIES: usize = 384;
/// Entries per index page (16 bytes each: 4 KiB pages; sled rewrites whole leaf nodes, so
/// small values keep its node rewrites small).
pub const PAGE_ENTRIES_MAX: usize = 256;
/// Index segments of at least this many entries (64 KiB) live in files.
pub const SEGMENT_FILE_ENTRIES_MIN: usize = 4096;
/// Bytes of a full index page.
pub const PAGE_BYTES: usize = PAGE_ENTRIES_MAX * 16;
/// The part number of a segment file's pointer, after the page directory's parts.
pub const SEGMENT_FILE_PART: u32 = u32::MAX;

/// Bumped when the layout changes; a store written with another layout is refused.
/// 2: metadata values may live in files; 3: the loss-time index; 4: index segments may live in
/// files. An older store is read as is
/// and marked with this version on open (the ledger adds what it lacks), so that an older
/// build refuses it instead of misreading it.
pub const LAYOUT_VERSION: u32 = 4;

pub const KEY_HEAD: &[u8] = b"H";
pub const KEY_LAYOUT: &[u8] = b"V";
pub const PREFIX_CHUNK: u8 = b'C';
pub const PREFIX_SEGMENT: u8 = b'S';
pub const PREFIX_PAGE: u8 = b'I';
pub const PREFIX_META: u8 = b'M';

/// The byte that names an index kind in its keys.
pub fn tag(kind: IndexKind) -> u8 {
    match kind {
        IndexKind::EventId => b'i',
        IndexKind::Stream => b's',
        IndexKind::OccurredAt => b't',
        IndexKind::Flag => b'f',
        IndexKind::LossTime => b'l',
    }
}

/// The 64-bit key an index entry is stored under: a hash of an id or stream name (a lookup
/// returns candidates, checked by the caller), a time in sortable form, a withdrawal's seq.
pub fn key_of(key: &IndexKey) -> u64 {
    match key {
        IndexKey::EventId(id) => fnv64(id.as_str().as_bytes()),
        IndexKey::Stream(stream) => fnv64(stream.as_str().as_bytes()),
        IndexKey::OccurredAt(t) | IndexKey::LossTime(t) => time_key(*t),
        IndexKey::FlagOf(seq) => *seq,
    }
}

/// FNV-1a, 64 bit: a stable hash for index keys (std's hasher is not stable across releases).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The index key of a moment: the sign bit flipped so unsigned order is time order.
pub fn time_key(t: Timestamp) -> u64 {
    (t.nanos() as u64) ^ (1 << 63)
}

pub fn time_from_key(k: u64) -> Timestamp {
    Timestamp::from_nanos((k ^ (1 << 63)) as i64)
}

pub fn chunk_key(seq_first: Seq) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PREFIX_CHUNK;
    k[1..].copy_from_slice(&seq_first.to_be_bytes());
    k
}

pub fn segment_key(kind: IndexKind, segment_id: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = PREFIX_SEGMENT;
    k[1] = tag(kind);
    k[2..].copy_from_slice(&segment_id.to_be_bytes());
    k
}

/// A part of a segment's page directory: the segment key and the part number.
pub fn dir_part_key(kind: IndexKind, segment_id: u64, part: u32) -> [u8; 14] {
    let mut k = [0u8; 14];
    k[..10].copy_from_slice(&segment_key(kind, segment_id));
    k[10..].copy_from_slice(&part.to_be_bytes());
    k
}

pub fn page_prefix(kind: IndexKind, segment_id: u64) -> [u8; 10] {
    let mut k = segment_key(kind, segment_id);
    k[0] = PREFIX_PAGE;
    k
}

pub fn page_key(kind: IndexKind, segment_id: u64, first: (u64, Seq)) -> [u8; 26] {
    let mut k = [0u8; 26];
    k[..10].copy_from_slice(&page_prefix(kind, segment_id));
    k[10..18].copy_from_slice(&first.0.to_be_bytes());
    k[18..].copy_from_slice(&first.1.to_be_bytes());
    k
}

pub fn meta_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(PREFIX_META);
    k.extend_from_slice(name.as_bytes());
    k
}

/// A chunk: `u32 count`, `count + 1` u32 offsets into the records area, then the records.
pub fn encode_chunk(records: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = records.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(4 + 4 * (records.len() + 1) + total);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    let mut offset = 0u32;
    out.extend_from_slice(&offset.to_le_bytes());
    for r in records {
        offset += r.len() as u32;
        out.extend_from_slice(&offset.to_le_bytes());
    }
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

/// A read-only view of a chunk's records.
pub struct ChunkView<'a> {
    count: usize,
    offsets: &'a [u8],
    records: &'a [u8],
}

impl<'a> ChunkView<'a> {
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let count = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let offsets_len = 4 * (count + 1);
        let offsets = bytes.get(4..4 + offsets_len)?;
        let records = &bytes[4 + offsets_len..];
        let view = ChunkView { count, offsets, records };
        // Offsets must be non-decreasing and end exactly at the end of the records.
        let mut prev = 0usize;
        for i in 0..=count {
            let o = view.offset(i);
            if o < prev || o > records.len() {
                return None;
            }
            prev = o;
        }
        (prev == records.len()).then_some(view)
    }
    fn offset(&self, i: usize) -> usize {
        u32::from_le_bytes(self.offsets[4 * i..4 * i + 4].try_into().expect("4 bytes")) as usize
    }
    pub fn len(&self) -> usize {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    pub fn record(&self, i: usize) -> Option<&'a [u8]> {
        (i < self.count).then(|| &self.records[self.offset(i)..self.offset(i + 1)])
    }
    /// The byte range of record `i` within the whole chunk value.
    pub fn record_range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let base = 4 + self.offsets.len();
        (i < self.count).then(|| base + self.offset(i)..base + self.offset(i + 1))
    }
}

pub fn encode_page(entries: &[(u64, Seq)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 16);
    for (k, s) in entries {
        out.extend_from_slice(&k.to_be_bytes());
        out.extend_from_slice(&s.to_be_bytes());
    }
    out
}

pub fn decode_page(bytes: &[u8]) -> Option<impl Iterator<Item = (u64, Seq)> + '_> {
    bytes.len().is_multiple_of(16).then(|| {
        bytes.chunks_exact(16).map(|c| {
            (u64::from_be_bytes(c[..8].try_into().expect("8")), u64::from_be_bytes(c[8..].try_into().expect("8")))
        })
    })
}

/// The checksum of an index page in a segment file, checked on every read of it (the file's
/// SHA-256 is checked where the whole file is read: merges and `verify`). 64 bits over the
/// page's 8-byte words, each mixed in by a multiply and a rotation, and its length: a flipped bit
/// or a page read from the wrong place changes it; not a defence against a forger (the log's
/// hash chain and `verify` are).
pub fn page_checksum(page: &[u8]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ page.len() as u64;
    for w in page.chunks(8) {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(29);
    }
    h ^ (h >> 32)
}

/// The bytes of a segment file holding `entries` (sorted): the pages, then their checksums.
pub fn encode_segment_file(entries: &[(u64, Seq)]) -> Vec<u8> {
    let pages = entries.len().div_ceil(PAGE_ENTRIES_MAX);
    let mut out = encode_page(entries);
    out.reserve(pages * 8);
    for i in 0..pages {
        let page = &out[i * PAGE_BYTES..((i + 1) * PAGE_BYTES).min(entries.len() * 16)];
        let c = page_checksum(page);
        out.extend_from_slice(&c.to_le_bytes());
    }
    out
}

/// The head record: seq, hash, `recorded_at` in nanoseconds, big-endian.
pub fn encode_head(head: &Head) -> [u8; 48] {
    let mut out = [0u8; 48];
    out[..8].copy_from_slice(&head.seq.to_be_bytes());
    out[8..40].copy_from_slice(&head.hash);
    out[40..].copy_from_slice(&head.recorded_at.nanos().to_be_bytes());
    out
}

pub fn decode_head(bytes: &[u8]) -> Option<Head> {
    if bytes.len() != 48 {
        return None;
    }
    Some(Head {
        seq: u64::from_be_bytes(bytes[..8].try_into().ok()?),
        hash: bytes[8..40].try_into().ok()?,
        recorded_at: Timestamp::from_nanos(i64::from_be_bytes(bytes[40..].try_into().ok()?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_reject_bad_offsets() {
        let recs = vec![b"abc".to_vec(), vec![], b"defgh".to_vec()];
        let bytes = encode_chunk(&recs);
        let view = ChunkView::parse(&bytes).unwrap();
        assert_eq!(view.len(), 3);
        assert_eq!(view.record(0).unwrap(), b"abc");
        assert_eq!(view.record(1).unwrap(), b"");
        assert_eq!(view.record(2).unwrap(), b"defgh");
        assert!(view.record(3).is_none());
        assert!(ChunkView::parse(&bytes[..bytes.len() - 1]).is_none());
    }

    #[test]
    fn a_segment_file_is_its_pages_then_their_checksums() {
        let entries: Vec<(u64, Seq)> = (0..PAGE_ENTRIES_MAX as u64 * 2 + 3).map(|i| (i / 3, i)).collect();
        let bytes = encode_segment_file(&entries);
        assert_eq!(bytes.len(), entries.len() * 16 + 3 * 8);
        let page1 = &bytes[PAGE_BYTES..2 * PAGE_BYTES];
        assert_eq!(decode_page(page1).unwrap().next(), Some(entries[PAGE_ENTRIES_MAX]));
        let sums = &bytes[entries.len() * 16..];
        assert_eq!(u64::from_le_bytes(sums[8..16].try_into().unwrap()), page_checksum(page1));
        let last = &bytes[2 * PAGE_BYTES..entries.len() * 16];
        assert_eq!(last.len(), 48);
        assert_eq!(u64::from_le_bytes(sums[16..24].try_into().unwrap()), page_checksum(last));
        // Any flipped bit of a page changes its checksum.
        for bit in [0, 7, 8 * 100, 8 * PAGE_BYTES - 1] {
            let mut p = page1.to_vec();
            p[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(page_checksum(&p), page_checksum(page1), "bit {bit}");
        }
        assert_ne!(page_checksum(&page1[..16]), page_checksum(&page1[16..32]));
    }

    #[test]
    fn time_keys_sort_like_times() {
        let ts = [i64::MIN, -5, 0, 7, i64::MAX];
        let keys: Vec<u64> = ts.iter().map(|t| time_key(Timestamp::from_nanos(*t))).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(time_from_key(keys[1]).nanos(), -5);
    }
}
