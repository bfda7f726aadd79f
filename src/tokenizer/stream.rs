//! Streaming detokenisation. A character can be split over several tokens (byte-fallback
//! tokens, or byte-level pieces of an emoji), and a token's leading space depends on what came
//! before it. So each new token is decoded together with the tokens before it, and only the
//! text beyond what those already gave is emitted, once it no longer ends in a partial
//! character.

use super::Tokenizer;
use crate::error::Result;

/// What a decoder prints for bytes that are not (yet) valid UTF-8.
const REPLACEMENT: char = '\u{FFFD}';

/// A UTF-8 character has at most 4 bytes, so at most 3 tokens can hold an unfinished one;
/// text still ending in U+FFFD after more tokens than that has a real replacement character.
const MAX_PENDING: usize = 4;

pub struct StreamDecoder<'t> {
    tok: &'t Tokenizer,
    skip_special: bool,
    /// Context tokens and pending ones: `ids[..read]` were emitted, `ids[read..]` were not.
    ids: Vec<u32>,
    read: usize,
}

impl<'t> StreamDecoder<'t> {
    pub(super) fn new(tok: &'t Tokenizer, skip_special: bool) -> Self {
        StreamDecoder {
            tok,
            skip_special,
            ids: Vec::new(),
            read: 0,
        }
    }

    /// Adds one token; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        // A bad id is refused before it joins the window, so the stream can go on.
        self.tok.decode(&[id], self.skip_special)?;
        self.ids.push(id);
        let emitted = self.tok.decode(&self.ids[..self.read], self.skip_special)?;
        let all = self.tok.decode(&self.ids, self.skip_special)?;
        let pending = self.ids.len() - self.read;
        if all.ends_with(REPLACEMENT) && pending < MAX_PENDING {
            return Ok(None);
        }
        let new = new_text(&emitted, &all).to_string();
        self.keep_context()?;
        Ok((!new.is_empty()).then_some(new))
    }

    /// Text of the tokens still pending (a partial character comes out as U+FFFD).
    pub fn flush(&mut self) -> Result<Option<String>> {
        if self.read == self.ids.len() {
            return Ok(None);
        }
        let emitted = self.tok.decode(&self.ids[..self.read], self.skip_special)?;
        let all = self.tok.decode(&self.ids, self.skip_special)?;
        let new = new_text(&emitted, &all).to_string();
        self.keep_context()?;
        Ok((!new.is_empty()).then_some(new))
    }

    /// Everything is emitted: keep, as context for the next token, the tokens from the last
    /// one that gives whole text on its own. After skipped special tokens only, a token would
    /// be decoded as if it started the text (and lose its leading space); after a lone
    /// byte-fallback token, the decoder would read that byte together with the next ones.
    fn keep_context(&mut self) -> Result<()> {
        let mut keep_from = 0;
        for (i, &id) in self.ids.iter().enumerate().rev() {
            let text = self.tok.decode(&[id], self.skip_special)?;
            if !text.is_empty() && !text.contains(REPLACEMENT) {
                keep_from = i;
                break;
            }
        }
        self.ids.drain(..keep_from);
        self.read = self.ids.len();
        Ok(())
    }
}

/// The part of `all` beyond `emitted`. Decoding more tokens normally only appends; where a
/// decoder rewrote the end instead, the text from the first difference on is taken.
fn new_text<'a>(emitted: &str, all: &'a str) -> &'a str {
    if let Some(rest) = all.strip_prefix(emitted) {
        return rest;
    }
    let common = emitted
        .char_indices()
        .zip(all.chars())
        .find(|((_, a), b)| a != b)
        .map_or(emitted.len().min(all.len()), |((i, _), _)| i);
    &all[common..]
}
