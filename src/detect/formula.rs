//! Port formulas for the DNS Calculation rule: integer expressions over the four octets of
//! an IPv4 address, e.g. APT12's `o1*o2 + o3`.
//!
//! A formula comes from the configuration, so it is parsed once, with errors that point at
//! the byte where the text went wrong, and compiled to a short postfix program. `eval` runs
//! per SYN per cached answer per formula: it walks that program over a fixed stack array,
//! never allocates and never panics. Every arithmetic hazard (overflow, division by zero,
//! shift out of range) makes the formula "not match" instead of producing a value.
//!
//! Grammar, with C's precedence and left associativity (lowest first):
//! `|`, `^`, `&`, `<< >>`, `+ -`, `* / %`, unary `- ~ +`, then numbers (decimal or `0x` hex),
//! `o1`..`o4` and parentheses.

use std::fmt;

/// Deepest nesting of parentheses and unary operators. A legitimate formula uses two or
/// three; the bound keeps a hostile configuration from overflowing the parser's stack.
pub const MAX_NESTING: usize = 64;

/// Evaluation stack slots. A formula needs one per operand still waiting for its operator;
/// real ones need a handful. Fixed so that `eval` never allocates.
pub const MAX_STACK: usize = 64;

/// Stack for formulas that need few slots (apt12 and its variant need none or one).
const SMALL_STACK: usize = 4;

/// Longest formula text accepted; ample for any hand-written expression.
pub const MAX_TEXT: usize = 4096;

/// Where and why a formula did not parse. `pos` is a byte offset into the text; everything
/// before an error is ASCII (anything else is itself an error), so the column is `pos + 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormulaError {
    pub pos: usize,
    pub message: String,
}

impl fmt::Display for FormulaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {} (byte {}): {}", self.pos + 1, self.pos, self.message)
    }
}

impl std::error::Error for FormulaError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Const(i64),
    /// Octet 0..=3 (`o1`..`o4`).
    Octet(u8),
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Shl,
    Shr,
    And,
    Xor,
    Or,
    Neg,
    Not,
}

/// A parsed formula: its name (as alerts report it), its text, and its compiled program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Formula {
    name: String,
    text: String,
    prog: Box<[Ins]>,
    /// Evaluation stack slots the program needs besides the accumulator (at most
    /// `MAX_STACK`).
    need: usize,
    /// The program's shape when it is one of APT12's, evaluated without the interpreter.
    fast: Option<Fast>,
}

/// The two default formulas' shapes, whatever their operands. The interpreter's dispatch
/// costs more than their arithmetic, and they run for every answer on every SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fast {
    /// a*b + c
    MulAdd(Src, Src, Src),
    /// a*(b + c)
    MulSum(Src, Src, Src),
    /// `MulAdd` over octets only (APT12's own formula): at most 255*255 + 255, so plain
    /// 32-bit arithmetic with no overflow checks.
    OctetMulAdd([u8; 3]),
    /// `MulSum` over octets only (its variant): at most 255*510.
    OctetMulSum([u8; 3]),
}

impl Fast {
    fn of(prog: &[Ins]) -> Option<Fast> {
        use Src::Octet;
        match *prog {
            [Ins::Load(Octet(a)), Ins::Bin(Op::Mul, Octet(b)), Ins::Bin(Op::Add, Octet(c))] => {
                Some(Fast::OctetMulAdd([a, b, c]))
            }
            [Ins::Load(Octet(a)), Ins::PushLoad(Octet(b)), Ins::Bin(Op::Add, Octet(c)), Ins::BinPop(Op::Mul)] => {
                Some(Fast::OctetMulSum([a, b, c]))
            }
            [Ins::Load(a), Ins::Bin(Op::Mul, b), Ins::Bin(Op::Add, c)] => Some(Fast::MulAdd(a, b, c)),
            [Ins::Load(a), Ins::PushLoad(b), Ins::Bin(Op::Add, c), Ins::BinPop(Op::Mul)] => {
                Some(Fast::MulSum(a, b, c))
            }
            _ => None,
        }
    }
}

impl Fast {
    /// The value of an octet-only form (never negative, never overflowing); None for the
    /// other forms.
    #[inline(always)]
    fn octets_only(self, o: [u8; 4]) -> Option<u32> {
        match self {
            Fast::OctetMulAdd([a, b, c]) => Some(octet(o, a) * octet(o, b) + octet(o, c)),
            Fast::OctetMulSum([a, b, c]) => Some(octet(o, a) * (octet(o, b) + octet(o, c))),
            Fast::MulAdd(..) | Fast::MulSum(..) => None,
        }
    }
}

/// Octet `i` (0..=3) of `o`, widened.
#[inline]
fn octet(o: [u8; 4], i: u8) -> u32 {
    // `i & 3` keeps the index inside the array without a check.
    u32::from(o[usize::from(i & 3)])
}

/// The port range check of `eval`, for a value that cannot be negative.
#[inline]
fn port(v: u32) -> Option<u16> {
    u16::try_from(v).ok().filter(|&p| p != 0)
}

/// An operand read straight from the address or the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    /// Octet 0..=3 (`o1`..`o4`).
    Octet(u8),
    Const(i64),
}

/// The executed program: an accumulator machine. The parser's postfix `a b op` becomes
/// `Bin(op, b)` when `b` is a plain operand, so `o1*o2 + o3` runs as three instructions
/// with no stack traffic at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ins {
    /// acc = src (nothing pending).
    Load(Src),
    /// Push acc, then acc = src.
    PushLoad(Src),
    /// acc = acc op src; `op` is a binary `Op`.
    Bin(Op, Src),
    /// acc = pop() op acc.
    BinPop(Op),
    Neg,
    Not,
}

/// Turns the parser's postfix into accumulator instructions, and returns how many stack
/// slots they need.
fn fuse(post: &[Op]) -> (Vec<Ins>, usize) {
    let src = |op: Op| match op {
        Op::Octet(i) => Some(Src::Octet(i)),
        Op::Const(c) => Some(Src::Const(c)),
        _ => None,
    };
    let mut out = Vec::with_capacity(post.len());
    let (mut live, mut depth, mut need) = (false, 0usize, 0usize);
    let mut i = 0;
    while let Some(&op) = post.get(i) {
        i += 1;
        if let Some(s) = src(op) {
            match post.get(i) {
                Some(&next) if live && src(next).is_none() && !matches!(next, Op::Neg | Op::Not) => {
                    out.push(Ins::Bin(next, s));
                    i += 1;
                }
                _ if live => {
                    out.push(Ins::PushLoad(s));
                    depth += 1;
                    need = need.max(depth);
                }
                _ => {
                    out.push(Ins::Load(s));
                    live = true;
                }
            }
        } else {
            out.push(match op {
                Op::Neg => Ins::Neg,
                Op::Not => Ins::Not,
                bin => {
                    depth = depth.saturating_sub(1);
                    Ins::BinPop(bin)
                }
            });
        }
    }
    (out, need)
}

impl Formula {
    /// Parses `text`. The name is kept for alerts; it plays no part in parsing.
    pub fn parse(name: &str, text: &str) -> Result<Formula, FormulaError> {
        if text.len() > MAX_TEXT {
            return Err(err(MAX_TEXT, format!("formula is longer than {MAX_TEXT} bytes")));
        }
        let toks = lex(text)?;
        let mut p = Parser { toks: &toks, at: 0, prog: Vec::new(), depth: 0, stack: 0, max: 0 };
        if matches!(p.peek().kind, Tok::End) {
            return Err(err(p.peek().pos, "empty formula: expected an expression over o1..o4".into()));
        }
        p.expr(0)?;
        let t = p.peek();
        if !matches!(t.kind, Tok::End) {
            return Err(err(
                t.pos,
                format!("expected an operator or the end of the formula, found {}", t.kind),
            ));
        }
        let (prog, need) = fuse(&p.prog);
        let fast = Fast::of(&prog);
        Ok(Formula {
            name: name.to_string(),
            text: text.to_string(),
            prog: prog.into_boxed_slice(),
            need,
            fast,
        })
    }

    /// APT12 (Numbered Panda): port = o1*o2 + o3 (FireEye, "Darwin's Favorite APT Group", 2014).
    pub fn apt12() -> Formula {
        Formula::builtin("apt12", "o1*o2 + o3")
    }

    /// The variant seen in later APT12 samples: port = o1*(o2 + o3).
    pub fn apt12_variant() -> Formula {
        Formula::builtin("apt12_variant", "o1*(o2 + o3)")
    }

    fn builtin(name: &str, text: &str) -> Formula {
        // Constant texts that the tests parse; the fallback is never taken.
        Formula::parse(name, text).unwrap_or(Formula {
            name: name.into(),
            text: text.into(),
            prog: Box::new([]),
            need: 0,
            fast: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The port the formula gives for `octets`, or None when the result is outside
    /// 1..=65535 or the arithmetic failed (overflow, division by zero, bad shift).
    // Always inline: it runs for every formula over every cached answer at each SYN, and
    // the octet forms are a handful of instructions; the rest goes out of line.
    #[inline(always)]
    pub fn eval(&self, octets: [u8; 4]) -> Option<u16> {
        match self.fast.and_then(|f| f.octets_only(octets)) {
            Some(v) => port(v),
            None => self.eval_general(octets),
        }
    }

    #[inline(never)]
    fn eval_general(&self, octets: [u8; 4]) -> Option<u16> {
        let v = self.eval_i64(octets)?;
        if (1..=65535).contains(&v) {
            u16::try_from(v).ok()
        } else {
            None
        }
    }

    /// The raw value, before the port range check.
    // Inline: the DNS Calculation check runs every formula over every cached answer of
    // the client at each SYN, and the fast forms are a few instructions, less than a call.
    #[inline]
    pub fn eval_i64(&self, o: [u8; 4]) -> Option<i64> {
        match self.fast {
            Some(Fast::MulAdd(a, b, c)) => src(a, o).checked_mul(src(b, o))?.checked_add(src(c, o)),
            Some(Fast::MulSum(a, b, c)) => src(a, o).checked_mul(src(b, o).checked_add(src(c, o))?),
            Some(f @ (Fast::OctetMulAdd(_) | Fast::OctetMulSum(_))) => f.octets_only(o).map(i64::from),
            None => self.eval_program(o),
        }
    }

    #[inline(never)]
    fn eval_program(&self, o: [u8; 4]) -> Option<i64> {
        // Zeroing the full stack would cost more than running a typical program, so the
        // common small formulas get a small one.
        if self.need <= SMALL_STACK {
            self.run::<SMALL_STACK>(o)
        } else {
            self.run::<MAX_STACK>(o)
        }
    }

    fn run<const N: usize>(&self, o: [u8; 4]) -> Option<i64> {
        let get = |s: Src| src(s, o);
        let mut st = [0i64; N];
        let mut sp = 0usize;
        let mut acc = 0i64;
        for ins in self.prog.iter() {
            match *ins {
                Ins::Load(s) => acc = get(s),
                Ins::PushLoad(s) => {
                    *st.get_mut(sp)? = acc;
                    sp += 1;
                    acc = get(s);
                }
                Ins::Bin(op, s) => acc = binop(op, acc, get(s))?,
                Ins::BinPop(op) => {
                    sp = sp.checked_sub(1)?;
                    acc = binop(op, *st.get(sp)?, acc)?;
                }
                Ins::Neg => acc = acc.checked_neg()?,
                Ins::Not => acc = !acc,
            }
        }
        (sp == 0 && !self.prog.is_empty()).then_some(acc)
    }

    /// The formula's text with `o1`..`o4` replaced by the octets, for alert reasons:
    /// `o1*o2 + o3` over 198.51.100.7 reads `198*51 + 100`.
    pub fn render(&self, octets: [u8; 4]) -> String {
        let mut out = String::with_capacity(self.text.len() + 8);
        self.render_into(octets, &mut out);
        out
    }

    /// `render`, appended to `out`.
    pub fn render_into(&self, octets: [u8; 4], out: &mut String) {
        let Ok(toks) = lex(&self.text) else {
            out.push_str(&self.text);
            return;
        };
        let mut last = 0;
        for t in &toks {
            if let Tok::Octet(i) = t.kind {
                out.push_str(self.text.get(last..t.pos).unwrap_or(""));
                crate::output::num::u64(u64::from(octets.get(usize::from(i)).copied().unwrap_or(0)), out);
                last = t.end;
            }
        }
        out.push_str(self.text.get(last..).unwrap_or(""));
    }
}

#[inline]
fn src(s: Src, o: [u8; 4]) -> i64 {
    match s {
        // `i & 3` keeps the index inside the array without a check.
        Src::Octet(i) => i64::from(o[usize::from(i & 3)]),
        Src::Const(c) => c,
    }
}

fn binop(op: Op, a: i64, b: i64) -> Option<i64> {
    match op {
        Op::Add => a.checked_add(b),
        Op::Sub => a.checked_sub(b),
        Op::Mul => a.checked_mul(b),
        // checked_div/rem also refuse i64::MIN / -1.
        Op::Div => a.checked_div(b),
        Op::Rem => a.checked_rem(b),
        Op::Shl => {
            let s = u32::try_from(b).ok().filter(|s| *s < 64)?;
            let r = a.checked_shl(s)?;
            // Bits shifted out (or into the sign) are an overflow, as in C.
            (r >> s == a).then_some(r)
        }
        Op::Shr => {
            let s = u32::try_from(b).ok().filter(|s| *s < 64)?;
            a.checked_shr(s)
        }
        Op::And => Some(a & b),
        Op::Xor => Some(a ^ b),
        Op::Or => Some(a | b),
        Op::Const(_) | Op::Octet(_) | Op::Neg | Op::Not => None,
    }
}

fn err(pos: usize, message: String) -> FormulaError {
    FormulaError { pos, message }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Num(i64),
    Octet(u8),
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Shl,
    Shr,
    Amp,
    Caret,
    Pipe,
    Tilde,
    LParen,
    RParen,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Tok::Num(n) => return write!(f, "number {n}"),
            Tok::Octet(i) => return write!(f, "'o{}'", i + 1),
            Tok::Plus => "'+'",
            Tok::Minus => "'-'",
            Tok::Star => "'*'",
            Tok::Slash => "'/'",
            Tok::Percent => "'%'",
            Tok::Shl => "'<<'",
            Tok::Shr => "'>>'",
            Tok::Amp => "'&'",
            Tok::Caret => "'^'",
            Tok::Pipe => "'|'",
            Tok::Tilde => "'~'",
            Tok::LParen => "'('",
            Tok::RParen => "')'",
            Tok::End => "the end of the formula",
        };
        f.write_str(s)
    }
}

#[derive(Clone, Copy, Debug)]
struct Token {
    kind: Tok,
    pos: usize,
    end: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, FormulaError> {
    let b = text.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'0'..=b'9' => {
                let hex = c == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X'));
                let (radix, from) = if hex { (16, i + 2) } else { (10, i) };
                let mut j = from;
                while b.get(j).is_some_and(|d| d.is_ascii_alphanumeric() || *d == b'_') {
                    j += 1;
                }
                let digits = text.get(from..j).unwrap_or("");
                i = j;
                match i64::from_str_radix(digits, radix) {
                    Ok(n) => Tok::Num(n),
                    Err(_) if !digits.is_empty() && digits.chars().all(|d| d.is_digit(radix)) => {
                        return Err(err(
                            start,
                            format!("number '{}' does not fit in 64 bits", text.get(start..j).unwrap_or("")),
                        ));
                    }
                    Err(_) => {
                        return Err(err(
                            start,
                            format!("malformed number '{}'", text.get(start..j).unwrap_or("")),
                        ))
                    }
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let mut j = i;
                while b.get(j).is_some_and(|d| d.is_ascii_alphanumeric() || *d == b'_') {
                    j += 1;
                }
                let word = text.get(i..j).unwrap_or("");
                i = j;
                match word {
                    "o1" => Tok::Octet(0),
                    "o2" => Tok::Octet(1),
                    "o3" => Tok::Octet(2),
                    "o4" => Tok::Octet(3),
                    _ => {
                        return Err(err(
                            start,
                            format!("unknown name '{word}': a formula may use only o1, o2, o3 and o4"),
                        ))
                    }
                }
            }
            b'<' | b'>' => {
                if b.get(i + 1) != Some(&c) {
                    let want = if c == b'<' { "<<" } else { ">>" };
                    return Err(err(start, format!("expected '{want}' (comparisons are not supported)")));
                }
                i += 2;
                if c == b'<' {
                    Tok::Shl
                } else {
                    Tok::Shr
                }
            }
            _ => {
                i += 1;
                match c {
                    b'+' => Tok::Plus,
                    b'-' => Tok::Minus,
                    b'*' => Tok::Star,
                    b'/' => Tok::Slash,
                    b'%' => Tok::Percent,
                    b'&' => Tok::Amp,
                    b'^' => Tok::Caret,
                    b'|' => Tok::Pipe,
                    b'~' => Tok::Tilde,
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    _ => {
                        let ch = text.get(start..).and_then(|s| s.chars().next()).unwrap_or('?');
                        return Err(err(start, format!("unexpected character {ch:?}")));
                    }
                }
            }
        };
        toks.push(Token { kind, pos: start, end: i });
    }
    toks.push(Token { kind: Tok::End, pos: b.len(), end: b.len() });
    Ok(toks)
}

/// Binding power of a binary operator, C order; higher binds tighter.
fn binary(t: Tok) -> Option<(u8, Op)> {
    Some(match t {
        Tok::Pipe => (1, Op::Or),
        Tok::Caret => (2, Op::Xor),
        Tok::Amp => (3, Op::And),
        Tok::Shl => (4, Op::Shl),
        Tok::Shr => (4, Op::Shr),
        Tok::Plus => (5, Op::Add),
        Tok::Minus => (5, Op::Sub),
        Tok::Star => (6, Op::Mul),
        Tok::Slash => (6, Op::Div),
        Tok::Percent => (6, Op::Rem),
        _ => return None,
    })
}

struct Parser<'t> {
    toks: &'t [Token],
    at: usize,
    prog: Vec<Op>,
    depth: usize,
    /// Evaluation stack height after the ops emitted so far.
    stack: usize,
    /// Highest `stack` reached.
    max: usize,
}

const END: Token = Token { kind: Tok::End, pos: 0, end: 0 };

impl Parser<'_> {
    fn peek(&self) -> Token {
        // The lexer always ends the list with End, and nothing consumes End.
        self.toks.get(self.at).copied().unwrap_or(END)
    }

    fn bump(&mut self) -> Token {
        let t = self.peek();
        if !matches!(t.kind, Tok::End) {
            self.at += 1;
        }
        t
    }

    fn emit(&mut self, op: Op, pos: usize) -> Result<(), FormulaError> {
        match op {
            Op::Const(_) | Op::Octet(_) => {
                self.stack += 1;
                self.max = self.max.max(self.stack);
                if self.stack > MAX_STACK {
                    return Err(err(
                        pos,
                        format!("formula needs more than {MAX_STACK} pending operands; simplify it"),
                    ));
                }
            }
            Op::Neg | Op::Not => {}
            _ => self.stack -= 1,
        }
        self.prog.push(op);
        Ok(())
    }

    /// Precedence climbing: operators binding at least `min` are taken here, tighter ones
    /// by the recursive call for their right operand (so recursion per nesting level is
    /// bounded by the six levels).
    fn expr(&mut self, min: u8) -> Result<(), FormulaError> {
        self.unary()?;
        while let Some((prec, op)) = binary(self.peek().kind) {
            if prec < min {
                break;
            }
            let t = self.bump();
            self.expr(prec + 1)?;
            self.emit(op, t.pos)?;
        }
        Ok(())
    }

    fn nest(&mut self, pos: usize) -> Result<(), FormulaError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(err(pos, format!("nesting deeper than {MAX_NESTING} levels")));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<(), FormulaError> {
        let t = self.bump();
        match t.kind {
            Tok::Num(n) => self.emit(Op::Const(n), t.pos),
            Tok::Octet(i) => self.emit(Op::Octet(i), t.pos),
            Tok::Minus | Tok::Tilde | Tok::Plus => {
                self.nest(t.pos)?;
                self.unary()?;
                self.depth -= 1;
                match t.kind {
                    Tok::Minus => self.emit(Op::Neg, t.pos),
                    Tok::Tilde => self.emit(Op::Not, t.pos),
                    _ => Ok(()),
                }
            }
            Tok::LParen => {
                self.nest(t.pos)?;
                self.expr(0)?;
                self.depth -= 1;
                let close = self.bump();
                if close.kind != Tok::RParen {
                    return Err(err(
                        close.pos,
                        format!("expected ')' to close the '(' at byte {}, found {}", t.pos, close.kind),
                    ));
                }
                Ok(())
            }
            other => {
                Err(err(t.pos, format!("expected a number, o1..o4, '(' or a unary operator, found {other}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, octets: [u8; 4], expect: Option<i64>) {
        let f = Formula::parse("t", text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(f.eval_i64(octets), expect, "{text} over {octets:?}");
    }

    fn check_err(text: &str, pos: usize, needle: &str) {
        let e = Formula::parse("t", text).expect_err(text);
        assert_eq!(e.pos, pos, "{text}: {e}");
        assert!(e.message.contains(needle), "{text}: {e} lacks {needle:?}");
    }

    const A: [u8; 4] = [198, 51, 100, 7];

    #[test]
    fn builtins() {
        assert_eq!(Formula::apt12().eval(A), Some(198 * 51 + 100)); // 10198
        assert_eq!(Formula::apt12_variant().eval(A), Some(198 * (51 + 100))); // 29898
        assert_eq!(Formula::apt12().name(), "apt12");
        assert_eq!(Formula::apt12_variant().text(), "o1*(o2 + o3)");
        assert_eq!(Formula::apt12().render(A), "198*51 + 100");
        // 255*255+255 = 65280 still a port; 255*(255+255) = 130050 is not.
        assert_eq!(Formula::apt12().eval([255, 255, 255, 255]), Some(65280));
        assert_eq!(Formula::apt12_variant().eval([255, 255, 255, 1]), None);
    }

    #[test]
    fn precedence_and_parentheses() {
        check("o1*o2+o3", A, Some(10198));
        check("o3+o1*o2", A, Some(10198));
        check("(o3+o1)*o2", A, Some(298 * 51));
        check("o1-o2-o3", A, Some(198 - 51 - 100)); // left associative
        check("o1/o4/2", A, Some(198 / 7 / 2));
        check("1 << 2 + 3", A, Some(1 << 5)); // + binds tighter than <<
        check("o1 & 0xf0 | o4", A, Some((198 & 0xf0) | 7)); // & tighter than |
        check("1 | 2 ^ 3", A, Some(1 | (2 ^ 3))); // ^ tighter than |
        check("6 ^ 3 & 5", A, Some(6 ^ (3 & 5))); // & tighter than ^
        check("16 >> 1 << 2", A, Some(32));
        check("-o1 + ~0 + +3", A, Some(-198 - 1 + 3));
        check("- -o1", A, Some(198));
        check("((((o4))))", A, Some(7));
        check("0x10 * 0X2", A, Some(32));
    }

    #[test]
    fn programs_are_fused() {
        use Src::*;
        let f = Formula::apt12();
        assert_eq!(
            &*f.prog,
            &[Ins::Load(Octet(0)), Ins::Bin(Op::Mul, Octet(1)), Ins::Bin(Op::Add, Octet(2))]
        );
        assert_eq!(f.need, 0);
        let v = Formula::apt12_variant();
        assert_eq!(
            &*v.prog,
            &[
                Ins::Load(Octet(0)),
                Ins::PushLoad(Octet(1)),
                Ins::Bin(Op::Add, Octet(2)),
                Ins::BinPop(Op::Mul)
            ]
        );
        assert_eq!(v.need, 1);
        let g = Formula::parse("t", "-(o1 - 3) * ~o2").unwrap();
        assert_eq!(
            &*g.prog,
            &[
                Ins::Load(Octet(0)),
                Ins::Bin(Op::Sub, Const(3)),
                Ins::Neg,
                Ins::PushLoad(Octet(1)),
                Ins::Not,
                Ins::BinPop(Op::Mul)
            ]
        );
        assert_eq!(g.eval_i64([20, 6, 0, 0]), Some(-17 * -7));
        assert_eq!(f.fast, Some(Fast::OctetMulAdd([0, 1, 2])));
        assert_eq!(v.fast, Some(Fast::OctetMulSum([0, 1, 2])));
        let k = Formula::parse("k", "o1*(o2 + 7)").unwrap();
        assert_eq!(k.fast, Some(Fast::MulSum(Octet(0), Octet(1), Const(7))));
        assert_eq!(g.fast, None);
        let deep = Formula::parse("t", "1+(2+(3+(4+(5+(6+(7+(8+9)))))))").unwrap();
        assert_eq!(deep.need, 7, "past SMALL_STACK: the large stack");
        assert_eq!(deep.eval_i64(A), Some(45));
    }

    #[test]
    fn fast_shapes_agree_with_the_interpreter() {
        let texts = [
            "o1*o2 + o3",
            "o1*(o2 + o3)",
            "o4*o3 + 7",
            "3*(o2 + o4)",
            "9223372036854775807*o1 + o2",
            "o1*(9223372036854775807 + o4)",
            "o4*o4 + o1",
            "o3*(o3 + o2)",
        ];
        for t in texts {
            let f = Formula::parse("t", t).unwrap();
            assert!(f.fast.is_some(), "{t}");
            let slow = Formula { fast: None, ..f.clone() };
            let mut x = 0x2545_f491_4f6c_dd1du64;
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let o = (x as u32).to_be_bytes();
                assert_eq!(f.eval_i64(o), slow.eval_i64(o), "{t} over {o:?}");
                assert_eq!(f.eval(o), slow.eval(o), "{t} over {o:?}");
            }
            for o in [[0, 0, 0, 0], [255, 255, 255, 255], [1, 0, 0, 0], [0, 255, 255, 0], [1, 255, 0, 0]] {
                assert_eq!(f.eval_i64(o), slow.eval_i64(o), "{t} over {o:?}");
                assert_eq!(f.eval(o), slow.eval(o), "{t} over {o:?}");
            }
        }
        let big = Formula::parse("t", "9223372036854775807*o1 + o2").unwrap();
        assert_eq!(big.eval_i64([2, 0, 0, 0]), None, "overflow on the fast path too");
    }

    #[test]
    fn every_operator() {
        let o = [20, 6, 3, 255];
        check("o1 + o2", o, Some(26));
        check("1+(2+(3+(4+(5+(6+(7+(8+9)))))))", o, Some(45)); // the large stack
        check("o1 - o2", o, Some(14));
        check("o1 * o2", o, Some(120));
        check("o1 / o2", o, Some(3));
        check("o1 % o2", o, Some(2));
        check("o1 << o3", o, Some(160));
        check("o4 >> o3", o, Some(31));
        check("o1 & o2", o, Some(4));
        check("o1 | o2", o, Some(22));
        check("o1 ^ o2", o, Some(18));
        check("~o1", o, Some(-21));
        check("-o1 / 3", o, Some(-6)); // truncation toward zero, as C
        check("-o1 % 3", o, Some(-2));
        check("-16 >> 2", o, Some(-4)); // arithmetic shift
    }

    #[test]
    fn hazards_do_not_match() {
        check("o1 / (o2 - 6)", [20, 6, 0, 0], None);
        check("o1 % 0", A, None);
        check("-9223372036854775807 - 1", A, Some(i64::MIN));
        check("(-9223372036854775807 - 1) / -1", A, None);
        check("(-9223372036854775807 - 1) % -1", A, None);
        check("-(-9223372036854775807 - 1)", A, None);
        check("9223372036854775807 + o4", A, None);
        check("-9223372036854775807 - o4", A, None);
        check("4294967296 * 4294967296", A, None);
        check("1 << 64", A, None);
        check("1 << -1", A, None);
        check("1 >> 64", A, None);
        check("1 >> -3", A, None);
        check("1 << 63", A, None); // into the sign bit: overflow, as in C
        check("-1 << 3", A, Some(-8));
        check("3 << 62", A, None); // bits lost
        check("1 << 62", A, Some(1 << 62));
        check("1 >> 63", A, Some(0));
        let f = Formula::parse("z", "o1 / (o2 - o2)").unwrap();
        assert_eq!(f.eval([1, 2, 3, 4]), None);
    }

    #[test]
    fn only_ports_match() {
        let f = Formula::parse("t", "o1*256 + o2").unwrap();
        assert_eq!(f.eval([0, 0, 9, 9]), None, "0 is not a port");
        assert_eq!(f.eval([0, 1, 9, 9]), Some(1));
        assert_eq!(f.eval([255, 255, 0, 0]), Some(65535));
        let g = Formula::parse("t", "o1*256 + o2 + 1").unwrap();
        assert_eq!(g.eval([255, 255, 0, 0]), None, "65536");
        assert_eq!(Formula::parse("t", "o1 - 200").unwrap().eval(A), None, "negative");
        assert_eq!(Formula::parse("t", "70000").unwrap().eval(A), None);
    }

    #[test]
    fn parse_errors_point_at_the_problem() {
        check_err("", 0, "empty formula");
        check_err("   ", 3, "empty formula");
        check_err("(o1 + o2", 8, "expected ')' to close the '(' at byte 0, found the end");
        check_err("o1 + o2)", 7, "expected an operator or the end of the formula, found ')'");
        check_err("o1*o5", 3, "unknown name 'o5'");
        check_err("o1 + x", 5, "unknown name 'x'");
        check_err("o1 o2", 3, "found 'o2'");
        check_err("o1 + 3 4", 7, "found number 4");
        check_err("o1 +", 4, "expected a number, o1..o4, '(' or a unary operator, found the end");
        check_err("o1 * * o2", 5, "found '*'");
        check_err("()", 1, "found ')'");
        check_err("o1 < 3", 3, "expected '<<'");
        check_err("o1 $ 3", 3, "unexpected character '$'");
        check_err("o1 + é", 5, "unexpected character 'é'");
        check_err("99999999999999999999", 0, "does not fit in 64 bits");
        check_err("12ab", 0, "malformed number");
        check_err("0x", 0, "malformed number");
        let e = Formula::parse("t", "o1*o5").unwrap_err();
        assert_eq!(
            e.to_string(),
            "at column 4 (byte 3): unknown name 'o5': a formula may use only o1, o2, o3 and o4"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}o1{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert_eq!(Formula::parse("t", &ok).unwrap().eval(A), Some(198));
        let deep = format!("{}o1{}", "(".repeat(MAX_NESTING + 1), ")".repeat(MAX_NESTING + 1));
        check_err(&deep, MAX_NESTING, "nesting deeper than 64");
        let unary = format!("{}1", "-".repeat(MAX_NESTING + 1));
        check_err(&unary, MAX_NESTING, "nesting deeper");
        // A hostile config: a megabyte of '(' stops at the length bound, not the stack.
        let huge = "(".repeat(1 << 20);
        check_err(&huge, MAX_TEXT, "longer than");
        // Operands piling up (1+(1+(1+...))) hit the evaluation-stack bound instead.
        let pile = format!("{}1{}", "1+(".repeat(64), ")".repeat(64));
        check_err(&pile, 192, "pending operands");
        let fits = format!("{}1{}", "1+(".repeat(63), ")".repeat(63));
        check(&fits, A, Some(64));
    }

    #[test]
    fn render_substitutes_octets() {
        let f = Formula::parse("t", "(o1 ^ o4) << 2 | o2*o3").unwrap();
        assert_eq!(f.render(A), "(198 ^ 7) << 2 | 51*100");
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// CPU time of this thread (ns, from the scheduler), so that a busy machine does not
    /// count time spent waiting for a core.
    fn cpu_ns() -> u64 {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Not a timed test: `cargo test --release --lib detect::formula::bench -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_eval() {
        for (label, text) in [("apt12, fast path", "o1*o2 + o3"), ("interpreted", "(o1*o2 + o3) ^ 0")] {
            let f = Formula::parse("t", text).unwrap();
            assert_eq!(f.fast.is_some(), label.contains("fast"));
            let n = 20_000_000u32;
            let start = cpu_ns();
            let mut hits = 0u32;
            for i in 0..n {
                let o = std::hint::black_box(i.to_be_bytes());
                hits += u32::from(f.eval(o) == Some(300));
            }
            let ns = (cpu_ns() - start) as f64 / f64::from(n);
            assert!(hits > 0);
            println!("eval: {ns:.2} ns per evaluation of {text} ({label})");
        }
    }
}
