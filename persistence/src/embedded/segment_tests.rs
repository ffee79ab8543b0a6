//! Tests of the segment format: framing, recovery of torn tails and interrupted rewrites,
//! reading and locating across chunks, and properties over any bytes.

mod framing {
    use super::super::*;

    #[test]
    fn the_valid_prefix_stops_at_a_torn_or_damaged_record() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, 7, b"first");
        encode_record(&mut bytes, 8, b"second");
        let whole = bytes.len() as u64;
        assert_eq!(valid_prefix(&bytes, 7), (2, whole));
        encode_record(&mut bytes, 9, b"third");
        bytes.truncate(bytes.len() - 2);
        assert_eq!(valid_prefix(&bytes, 7), (2, whole), "a torn last record");
        let mut flipped = bytes.clone();
        flipped[HEADER_BYTES as usize] ^= 1;
        assert_eq!(valid_prefix(&flipped, 7), (0, 0), "a flipped payload bit");
        assert_eq!(
            valid_prefix(&bytes, 6),
            (0, 0),
            "offsets that do not follow on"
        );
        assert_eq!(valid_prefix(&[0u8; 64], 0), (0, 0), "zeros");
    }

    #[test]
    fn rewrite_names_round_trip() {
        let path = rewrite_path(Path::new("/x"), 42, 7);
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(parse_rewrite_name(name), Some((42, 7)));
        assert_eq!(parse_rewrite_name("00000000000000000042.log"), None);
    }
}

mod recovery_tests {
    use super::super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"").expect("write");
    }

    #[test]
    fn locating_and_reading_cross_chunks_and_records_larger_than_a_chunk_and_stop_at_zeros() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let base = 100;
        let mut bytes = Vec::new();
        let mut positions = Vec::new();
        for index in 0..1_000u64 {
            positions.push(bytes.len() as u64);
            let size = if index == 500 {
                3 * READ_CHUNK_BYTES
            } else {
                200
            };
            encode_record(&mut bytes, base + index, &vec![b'x'; size]);
        }
        // The zeros the writer puts ahead of the last segment's records.
        let written_ahead = [bytes.as_slice(), &[0u8; 2 * READ_CHUNK_BYTES]].concat();
        std::fs::write(segment_path(dir.path(), base), written_ahead).expect("write");
        let segment = Segment::open(dir.path(), base).expect("open");
        for index in [0u64, 1, 320, 499, 500, 501, 999] {
            let position = segment.locate(base + index).expect("locate");
            assert_eq!(
                position,
                positions[index as usize],
                "offset {}",
                base + index
            );
            let read = segment
                .read(position, base + index, base + 1_000, 2)
                .expect("read");
            assert_eq!(read.records[0].offset, base + index);
        }
        assert_eq!(
            segment.locate(base + 1_000).expect("past"),
            bytes.len() as u64,
            "past the records: where they end, not the file's end"
        );
        let big = segment
            .read(positions[500], base + 500, base + 1_000, 10)
            .expect("read the large record");
        assert_eq!(big.records[0].payload.len(), 3 * READ_CHUNK_BYTES);
        assert_eq!(big.next_position, positions[501]);
    }

    #[test]
    fn an_unfinished_rewrite_is_undone_and_a_finished_one_completed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        touch(dir.path(), "00000000000000000000.log");
        std::fs::write(rewrite_path(dir.path(), 5, 0), b"partial").expect("write");
        assert_eq!(list_segments(dir.path()).expect("list"), [0]);
        assert!(!rewrite_path(dir.path(), 5, 0).exists(), "undone");

        std::fs::remove_file(segment_path(dir.path(), 0)).expect("remove");
        touch(dir.path(), "00000000000000000009.log");
        std::fs::write(rewrite_path(dir.path(), 5, 0), b"whole").expect("write");
        assert_eq!(list_segments(dir.path()).expect("list"), [5, 9]);
        assert_eq!(
            std::fs::read(segment_path(dir.path(), 5)).expect("read"),
            b"whole"
        );
    }
}

mod properties {
    use proptest::prelude::*;

    use super::super::*;

    /// A segment file with `bytes` in a fresh directory.
    fn segment_of(bytes: &[u8], base: u64) -> (tempfile::TempDir, Segment) {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(segment_path(dir.path(), base), bytes).expect("write");
        let segment = Segment::open(dir.path(), base).expect("open");
        (dir, segment)
    }

    fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let payload = prop_oneof![
            8 => prop::collection::vec(any::<u8>(), 0..600),
            1 => prop::collection::vec(any::<u8>(), 60_000..140_000),
        ];
        prop::collection::vec(payload, 0..40)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A damaged file (any bytes) gives errors or records, never a panic, and recovery keeps
        /// a prefix of it.
        #[test]
        fn any_bytes_are_read_without_panicking(
            bytes in prop::collection::vec(any::<u8>(), 0..3_000),
            offset in 0u64..8,
            max in 1usize..5,
        ) {
            let (count, valid) = valid_prefix(&bytes, 0);
            prop_assert!(valid <= bytes.len() as u64);
            prop_assert!(count <= valid / HEADER_BYTES);
            let (_dir, segment) = segment_of(&bytes, 0);
            if let Ok(position) = segment.locate(offset) {
                let _ = segment.read(position, offset, offset + 4, max);
            }
        }

        /// Written records are all found, located and read back in order, whatever their
        /// sizes; a cut anywhere keeps exactly the whole records before it.
        #[test]
        fn written_records_read_back_and_a_cut_keeps_the_whole_ones(
            payloads in payloads(),
            base in 0u64..1_000_000,
            cut_at in any::<prop::sample::Index>(),
        ) {
            let mut bytes = Vec::new();
            let mut ends = Vec::new();
            for (index, payload) in payloads.iter().enumerate() {
                encode_record(&mut bytes, base + index as u64, payload);
                ends.push(bytes.len() as u64);
            }
            let count = payloads.len() as u64;
            prop_assert_eq!(valid_prefix(&bytes, base), (count, bytes.len() as u64));
            let written_ahead = [bytes.as_slice(), &[0u8; 64]].concat();
            prop_assert_eq!(valid_prefix(&written_ahead, base), (count, bytes.len() as u64));

            let (_dir, segment) = segment_of(&bytes, base);
            let end = base + count;
            let mut offset = base;
            let mut position = segment.locate(base).expect("locate");
            while offset < end {
                let read = segment.read(position, offset, end, 3).expect("read");
                prop_assert!(!read.records.is_empty());
                for record in &read.records {
                    prop_assert_eq!(record.offset, offset);
                    prop_assert_eq!(&record.payload, &payloads[(offset - base) as usize]);
                    offset += 1;
                }
                position = read.next_position;
                prop_assert_eq!(segment.locate(offset).expect("locate"), position);
            }

            let cut = cut_at.index(bytes.len() + 1);
            let whole = ends.iter().filter(|end| **end <= cut as u64).count() as u64;
            let kept = if whole == 0 { 0 } else { ends[whole as usize - 1] };
            prop_assert_eq!(valid_prefix(&bytes[..cut], base), (whole, kept));
        }
    }
}
