//! The index's fields and its text analyzer.
//!
//! One document per message id: the newest version the index has seen. A deleted message stays
//! as a tombstone (no text, `state` = `deleted`), so an older version re-applied later (the log
//! gives no order across topics, and a restarted indexer re-reads its last batch) never brings
//! it back.

use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::Index;

/// The name the message-text analyzer is registered under.
pub(crate) const ANALYZER: &str = "parley_words";
/// Words longer than this many bytes are not indexed (and never match).
const LONGEST_WORD_BYTES: usize = 64;

pub(crate) const LIVE: &str = "live";
pub(crate) const DELETED: &str = "deleted";

/// The fields, resolved once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub(crate) message_id: Field,
    pub(crate) conversation_id: Field,
    pub(crate) sender_id: Field,
    /// `live` or `deleted`.
    pub(crate) state: Field,
    pub(crate) text: Field,
    pub(crate) created_at_us: Field,
    pub(crate) tiebreak: Field,
    /// The whole `MessageRecord` as JSON: what a hit returns.
    pub(crate) record: Field,
}

pub(crate) fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        message_id: builder.add_text_field("message_id", STRING),
        conversation_id: builder.add_text_field("conversation_id", STRING),
        sender_id: builder.add_text_field("sender_id", STRING),
        state: builder.add_text_field("state", STRING),
        text: builder.add_text_field("text", text_options),
        created_at_us: builder.add_i64_field("created_at_us", FAST),
        tiebreak: builder.add_u64_field("tiebreak", FAST),
        record: builder.add_text_field("record", STORED),
    };
    (builder.build(), fields)
}

/// Unicode words (runs of alphanumeric characters), lower-cased, folded to ASCII (`é` → `e`,
/// `ß` → `ss`), overlong words dropped. Queries go through the same analyzer.
pub(crate) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(LONGEST_WORD_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

pub(crate) fn register_analyzer(index: &Index) {
    index.tokenizers().register(ANALYZER, analyzer());
}

/// The analyzed words of `text`, in order.
pub(crate) fn words(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut words = Vec::new();
    while stream.advance() {
        words.push(stream.token().text.clone());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn words_are_unicode_lower_cased_and_folded() {
        assert_eq!(
            words("Crème BRÛLÉE, naïve café-au-lait 東京 Straße"),
            ["creme", "brulee", "naive", "cafe", "au", "lait", "東京", "strasse"]
        );
    }
}
