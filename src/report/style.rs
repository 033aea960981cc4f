//! The one vocabulary and number format of every table and verdict line, and
//! where colour comes from.
//!
//! Words, in every table and line of every command:
//!
//! | outcome of one check | word   | colour |
//! |----------------------|--------|--------|
//! | ran and held         | `ok`   | green  |
//! | ran and failed       | `FAIL` | red    |
//! | not run, or n/a      | `n/a`  | none   |
//!
//! and a run's overall verdict is `PASS` (green) or `FAIL` (red). The JSON
//! reports keep their own typed fields; these words are for people.
//!
//! Colour is decided where a word is written: [`Styled`] is text that
//! remembers which of its ranges are verdict words, and renders them in
//! colour ([`Styled::ansi`]) or not ([`Styled::plain`]); nothing scans text
//! for words afterwards.

use std::fmt;

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Ran and held.
    Ok,
    /// Ran and failed.
    Fail,
    /// Not run, or not applicable.
    NotRun,
}

impl Outcome {
    /// `Ok` or `Fail`.
    pub(crate) fn of(pass: bool) -> Outcome {
        if pass {
            Outcome::Ok
        } else {
            Outcome::Fail
        }
    }

    /// `None` is not run; else [`Outcome::of`].
    pub(crate) fn of_opt(pass: Option<bool>) -> Outcome {
        pass.map_or(Outcome::NotRun, Outcome::of)
    }

    /// The word.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "FAIL",
            Outcome::NotRun => "n/a",
        }
    }

    fn tone(self) -> Option<Tone> {
        match self {
            Outcome::Ok => Some(Tone::Good),
            Outcome::Fail => Some(Tone::Bad),
            Outcome::NotRun => None,
        }
    }
}

/// A run's overall verdict word: `PASS` or `FAIL`.
pub(crate) fn verdict_word(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Good,
    Bad,
}

impl Tone {
    fn ansi(self) -> &'static str {
        match self {
            Tone::Good => "\x1b[1;32m",
            Tone::Bad => "\x1b[1;31m",
        }
    }
}

/// Text with its verdict words marked where they were written.
/// `write!`/`writeln!` add plain text; [`Styled::outcome`] and
/// [`Styled::verdict`] add a marked word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Styled {
    text: String,
    /// Byte ranges of `text` that are verdict words, in order.
    marks: Vec<(usize, usize, Tone)>,
}

impl Styled {
    /// Empty.
    pub(crate) fn new() -> Styled {
        Styled::default()
    }

    fn mark(&mut self, word: &str, tone: Option<Tone>, width: usize) {
        let begin = self.text.len();
        self.text.push_str(word);
        if let Some(tone) = tone {
            self.marks.push((begin, self.text.len(), tone));
        }
        let pad = width.saturating_sub(word.chars().count());
        self.text.extend(std::iter::repeat_n(' ', pad));
    }

    /// `o`'s word, left-aligned in `width` columns (0: no padding).
    pub(crate) fn outcome(&mut self, o: Outcome, width: usize) -> &mut Styled {
        self.mark(o.word(), o.tone(), width);
        self
    }

    /// `PASS` or `FAIL`.
    pub(crate) fn verdict(&mut self, pass: bool) -> &mut Styled {
        let tone = if pass { Tone::Good } else { Tone::Bad };
        self.mark(verdict_word(pass), Some(tone), 0);
        self
    }

    /// The text without colour.
    pub(crate) fn plain(&self) -> &str {
        &self.text
    }

    /// The text with its verdict words in colour (ANSI escapes).
    pub(crate) fn ansi(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 12 * self.marks.len());
        let mut at = 0;
        for &(b, e, tone) in &self.marks {
            out.push_str(&self.text[at..b]);
            out.push_str(tone.ansi());
            out.push_str(&self.text[b..e]);
            out.push_str("\x1b[0m");
            at = e;
        }
        out.push_str(&self.text[at..]);
        out
    }
}

impl fmt::Write for Styled {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.text.push_str(s);
        Ok(())
    }
}

impl From<String> for Styled {
    fn from(text: String) -> Styled {
        Styled {
            text,
            marks: Vec::new(),
        }
    }
}

/// A number in the tables' one scientific format, three significant digits
/// (`1.23e-4`); zero, infinities and NaN as `0`, `inf`, `-inf`, `nan`.
/// Honours width and alignment (`{:>9}`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sci(pub(crate) f64);

impl fmt::Display for Sci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let s = if v.is_nan() {
            "nan".to_string()
        } else if v.is_infinite() {
            if v > 0.0 { "inf" } else { "-inf" }.to_string()
        } else if v == 0.0 {
            "0".to_string()
        } else {
            format!("{v:.2e}")
        };
        f.pad(&s)
    }
}

/// [`Sci`], or `-` for a value that was not measured.
pub(crate) fn sci_or_dash(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| Sci(v).to_string())
}

/// An integer with thousands separators: `16,777,216`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn marks_colour_exactly_the_words_written_as_verdicts() {
        let mut s = Styled::new();
        let _ = write!(s, "mean  ok, FAILED as text: ");
        s.outcome(Outcome::Fail, 6).outcome(Outcome::Ok, 0);
        let _ = write!(s, "\nverdict: ");
        s.verdict(true);
        assert_eq!(
            s.plain(),
            "mean  ok, FAILED as text: FAIL  ok\nverdict: PASS"
        );
        // Only the marked words, not the same letters in plain text; the
        // padding stays outside the escapes, so columns keep their widths.
        assert_eq!(
            s.ansi(),
            "mean  ok, FAILED as text: \x1b[1;31mFAIL\x1b[0m  \x1b[1;32mok\x1b[0m\n\
             verdict: \x1b[1;32mPASS\x1b[0m"
        );
        // n/a is not coloured.
        let mut n = Styled::new();
        n.outcome(Outcome::NotRun, 5);
        assert_eq!((n.plain(), n.ansi().as_str()), ("n/a  ", "n/a  "));
    }

    #[test]
    fn one_scientific_format_with_padding() {
        assert_eq!(format!("{:>9}", Sci(1.2345e-4)), "  1.23e-4");
        assert_eq!(format!("{:>5}", Sci(0.0)), "    0");
        assert_eq!(
            [f64::INFINITY, f64::NEG_INFINITY, f64::NAN].map(|v| Sci(v).to_string()),
            ["inf", "-inf", "nan"]
        );
        assert_eq!(sci_or_dash(None), "-");
    }
}
