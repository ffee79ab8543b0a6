//! A search as a Tantivy query and collector: every word must match (the last one also as a
//! prefix), only in the allowed conversations, ranked by BM25, then the newer message, then
//! the message id's hash; a cursor skips what earlier pages returned.

use ports::{SearchCursor, SearchHit, SearchPage, SearchQuery};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, TermSetQuery};
use tantivy::{DocAddress, DocId, Score, SegmentReader, Term};

use crate::error::SearchError;
use crate::schema::words;
use crate::tantivy_index::Inner;

/// The sort key of a hit: whether it comes after the cursor (hits that do not are collected
/// last and dropped), then the ranking fields of [`SearchCursor`].
type RankKey = (bool, Score, i64, u64);

pub(crate) fn ranked_search(inner: &Inner, query: &SearchQuery) -> Result<SearchPage, SearchError> {
    let Some(tantivy_query) = build_query(inner, query) else {
        return Ok(SearchPage::default());
    };
    let searcher = inner.reader.searcher();
    let after = query.after;
    let collector = TopDocs::with_limit(query.limit + 1)
        .tweak_score(move |segment_reader: &SegmentReader| rank_key_of(segment_reader, after));
    let mut ranked: Vec<(RankKey, DocAddress)> = searcher
        .search(&tantivy_query, &collector)?
        .into_iter()
        .filter(|((after_cursor, ..), _)| *after_cursor)
        .collect();
    let more = ranked.len() > query.limit;
    ranked.truncate(query.limit);
    let next = more
        .then(|| ranked.last().map(|(key, _)| cursor_of(*key)))
        .flatten();
    let hits = ranked
        .into_iter()
        .map(|((_, score, ..), address)| {
            Ok(SearchHit {
                record: inner.record_at(&searcher, address)?,
                score,
            })
        })
        .collect::<Result<_, SearchError>>()?;
    Ok(SearchPage { hits, next })
}

fn build_query(inner: &Inner, query: &SearchQuery) -> Option<BooleanQuery> {
    let fields = &inner.fields;
    let words = words(&query.text);
    let (last, others) = words.split_last()?;
    if query.conversations.is_empty() || query.limit == 0 {
        return None;
    }
    let word_term = |word: &str| Term::from_field_text(fields.text, word);
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = others
        .iter()
        .map(|word| (Occur::Must, inner.term_query(fields.text, word)))
        .collect();
    let last_word: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
        (Occur::Should, inner.term_query(fields.text, last)),
        (
            Occur::Should,
            Box::new(FuzzyTermQuery::new_prefix(word_term(last), 0, false)),
        ),
    ]));
    clauses.push((Occur::Must, last_word));
    let conversations = TermSetQuery::new(query.conversations.iter().map(|conversation_id| {
        Term::from_field_text(fields.conversation_id, conversation_id.as_str())
    }));
    clauses.push((
        Occur::Must,
        Box::new(ConstScoreQuery::new(Box::new(conversations), 0.0)),
    ));
    Some(BooleanQuery::new(clauses))
}

fn rank_key_of(
    segment_reader: &SegmentReader,
    after: Option<SearchCursor>,
) -> impl Fn(DocId, Score) -> RankKey {
    let fast_fields = segment_reader.fast_fields();
    let created_at_us = fast_fields
        .i64("created_at_us")
        .expect("created_at_us is an i64 fast field of the schema")
        .first_or_default_col(0);
    let tiebreak = fast_fields
        .u64("tiebreak")
        .expect("tiebreak is a u64 fast field of the schema")
        .first_or_default_col(0);
    move |doc: DocId, score: Score| {
        let key = SearchCursor {
            score,
            created_at_us: created_at_us.get_val(doc),
            tiebreak: tiebreak.get_val(doc),
        };
        let after_cursor = after.is_none_or(|cursor| cursor.ranks_before(&key));
        (after_cursor, key.score, key.created_at_us, key.tiebreak)
    }
}

fn cursor_of((_, score, created_at_us, tiebreak): RankKey) -> SearchCursor {
    SearchCursor {
        score,
        created_at_us,
        tiebreak,
    }
}
