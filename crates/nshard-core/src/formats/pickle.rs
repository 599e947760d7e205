//! A minimal reader of Python pickles: enough opcodes to rebuild the *structure* of what
//! `torch.save` writes (dicts, lists, tuples, strings, numbers, globals, calls and persistent ids)
//! without executing anything. Globals stay names; a call stays a record of the callable and its
//! arguments. Values live in an arena and refer to each other by index, so memo references and
//! repeated objects cost nothing and cycles are harmless. Every opcode consumes at least one byte,
//! so the work and the arena are bounded by the pickle's length.

use std::collections::HashMap;

/// Index of a value in the arena.
pub(crate) type Idx = usize;

/// One value.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Tuple(Vec<Idx>),
    List(Vec<Idx>),
    Dict(Vec<(Idx, Idx)>),
    /// `module.name`, not resolved.
    Global(String, String),
    /// The result of calling `callable` with `args` (REDUCE, NEWOBJ), with items set on it
    /// afterwards (an `OrderedDict`) and its BUILD state.
    Call {
        callable: Idx,
        args: Idx,
        items: Vec<(Idx, Idx)>,
        state: Option<Idx>,
    },
    /// A persistent id (`torch.save` uses one per tensor storage).
    PersId(Idx),
}

/// A parsed pickle: the arena and the index of the top value.
pub(crate) struct Pickle {
    pub(crate) values: Vec<Value>,
    pub(crate) top: Idx,
}

impl Pickle {
    pub(crate) fn get(&self, i: Idx) -> &Value {
        &self.values[i]
    }

    /// The string at `i`, if it is one.
    pub(crate) fn str(&self, i: Idx) -> Option<&str> {
        match self.get(i) {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

enum Slot {
    Mark,
    Val(Idx),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    values: Vec<Value>,
    stack: Vec<Slot>,
    memo: HashMap<u64, Idx>,
}

type R<T> = Result<T, String>;

impl Machine<'_> {
    fn take(&mut self, n: usize) -> R<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("pickle truncated")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    fn uint(&mut self, n: usize) -> R<u64> {
        let b = self.take(n)?;
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> R<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("pickle truncated")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) {
        self.values.push(v);
        self.stack.push(Slot::Val(self.values.len() - 1));
    }

    fn pop(&mut self) -> R<Idx> {
        match self.stack.pop() {
            Some(Slot::Val(i)) => Ok(i),
            _ => Err("pickle stack underflow".into()),
        }
    }

    fn top(&self) -> R<Idx> {
        match self.stack.last() {
            Some(Slot::Val(i)) => Ok(*i),
            _ => Err("pickle stack underflow".into()),
        }
    }

    /// Pops everything down to the last mark.
    fn pop_mark(&mut self) -> R<Vec<Idx>> {
        let at = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or("pickle mark missing")?;
        let items = self
            .stack
            .drain(at..)
            .skip(1)
            .map(|s| match s {
                Slot::Val(i) => i,
                Slot::Mark => unreachable!("the last mark was found above"),
            })
            .collect();
        Ok(items)
    }

    fn str_of(&mut self, n: usize) -> R<()> {
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.push(Value::Str(s));
        Ok(())
    }

    fn set_items(&mut self, target: Idx, kv: Vec<Idx>) -> R<()> {
        if !kv.len().is_multiple_of(2) {
            return Err("odd number of dict items".into());
        }
        let pairs = kv.chunks(2).map(|p| (p[0], p[1]));
        match &mut self.values[target] {
            Value::Dict(items) | Value::Call { items, .. } => items.extend(pairs),
            _ => return Err("SETITEMS on something that is not a dict".into()),
        }
        Ok(())
    }

    fn append(&mut self, target: Idx, vs: Vec<Idx>) -> R<()> {
        match &mut self.values[target] {
            Value::List(items) => items.extend(vs),
            // Appending to some object (a set, a deque): the structure is not needed.
            Value::Call { .. } => {}
            _ => return Err("APPEND on something that is not a list".into()),
        }
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> R<()> {
        let i = self.top()?;
        self.memo.insert(key, i);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> R<()> {
        let i = *self.memo.get(&key).ok_or("pickle memo key missing")?;
        self.stack.push(Slot::Val(i));
        Ok(())
    }

    fn run(mut self) -> R<Pickle> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => {
                    let top = self.pop()?;
                    return Ok(Pickle {
                        values: self.values,
                        top,
                    });
                }
                b'(' => self.stack.push(Slot::Mark),
                b'}' => self.push(Value::Dict(Vec::new())),
                b']' => self.push(Value::List(Vec::new())),
                b')' => self.push(Value::Tuple(Vec::new())),
                0x8f => self.push(Value::List(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items));
                }
                b'l' | 0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items));
                }
                b'd' => {
                    let kv = self.pop_mark()?;
                    self.push(Value::Dict(Vec::new()));
                    let d = self.top()?;
                    self.set_items(d, kv)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.append(l, vec![v])?;
                }
                b'e' | 0x90 => {
                    let vs = self.pop_mark()?;
                    let l = self.top()?;
                    self.append(l, vs)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.set_items(d, vec![k, v])?;
                }
                b'u' => {
                    let kv = self.pop_mark()?;
                    let d = self.top()?;
                    self.set_items(d, kv)?;
                }
                b'X' | b'T' => {
                    let n = self.uint(4)? as usize;
                    self.str_of(n)?;
                }
                0x8c | b'U' => {
                    let n = usize::from(self.u8()?);
                    self.str_of(n)?;
                }
                0x8d => {
                    let n = usize::try_from(self.uint(8)?).map_err(|_| "string too long")?;
                    self.str_of(n)?;
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'C' => u64::from(self.u8()?),
                        b'B' => self.uint(4)?,
                        _ => self.uint(8)?,
                    };
                    self.take(usize::try_from(n).map_err(|_| "bytes too long")?)?;
                    self.push(Value::Bytes);
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    let v = if n <= 8 {
                        let mut a = [if b.last().is_some_and(|&x| x & 0x80 != 0) {
                            0xff
                        } else {
                            0
                        }; 8];
                        a[..n].copy_from_slice(b);
                        Value::Int(i64::from_le_bytes(a))
                    } else {
                        Value::Float
                    };
                    self.push(v);
                }
                0x8b => {
                    let n = usize::try_from(self.uint(4)?).map_err(|_| "long too long")?;
                    self.take(n)?;
                    self.push(Value::Float);
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Float);
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool),
                0x89 => self.push(Value::Bool),
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(m), Value::Str(n)) = (&self.values[module], &self.values[name])
                    else {
                        return Err("STACK_GLOBAL of non-strings".into());
                    };
                    let g = Value::Global(m.clone(), n.clone());
                    self.push(g);
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push(Value::Call {
                        callable,
                        args,
                        items: Vec::new(),
                        state: None,
                    });
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push(Value::Call {
                        callable,
                        args,
                        items: Vec::new(),
                        state: None,
                    });
                }
                b'b' => {
                    let st = self.pop()?;
                    let obj = self.top()?;
                    if let Value::Call { state, .. } = &mut self.values[obj] {
                        *state = Some(st);
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::PersId(pid));
                }
                b'P' => {
                    let s = self.line()?;
                    self.push(Value::Str(s));
                    let pid = self.pop()?;
                    self.push(Value::PersId(pid));
                }
                b'q' => {
                    let k = u64::from(self.u8()?);
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.uint(4)?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'p' => {
                    let k = self.line()?.trim().parse().map_err(|_| "bad PUT key")?;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = u64::from(self.u8()?);
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.uint(4)?;
                    self.memo_get(k)?;
                }
                b'g' => {
                    let k = self.line()?.trim().parse().map_err(|_| "bad GET key")?;
                    self.memo_get(k)?;
                }
                b'0' => {
                    self.stack.pop().ok_or("pickle stack underflow")?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let i = self.top()?;
                    self.stack.push(Slot::Val(i));
                }
                b'I' | b'L' => {
                    let s = self.line()?;
                    let v = s.trim_end_matches('L').parse::<i64>();
                    self.push(match (s.as_str(), v) {
                        ("01", _) => Value::Bool,
                        ("00", _) => Value::Bool,
                        (_, Ok(v)) => Value::Int(v),
                        _ => Value::Float,
                    });
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
            }
        }
    }
}

/// Parses a pickle into its structure, executing nothing.
pub(crate) fn parse(data: &[u8]) -> Result<Pickle, String> {
    Machine {
        data,
        pos: 0,
        values: Vec::new(),
        stack: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protocol 2, as Python writes `{"a": [1, -2, "x"], "b": ("y", None)}` with a memo reference.
    #[test]
    fn reads_containers_and_memo() {
        let p: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffX\x01\x00\x00\x00xq\x03eX\x01\x00\x00\x00bq\x04h\x03N\x86q\x05u.";
        let pk = parse(p).expect("pickle");
        let Value::Dict(items) = pk.get(pk.top) else {
            panic!("not a dict")
        };
        assert_eq!(pk.str(items[0].0), Some("a"));
        let Value::List(l) = pk.get(items[0].1) else {
            panic!("not a list")
        };
        assert!(matches!(pk.get(l[1]), Value::Int(-2)));
        let Value::Tuple(t) = pk.get(items[1].1) else {
            panic!("not a tuple")
        };
        assert_eq!(pk.str(t[0]), Some("x"), "memo reference");
    }

    #[test]
    fn hostile_pickles_fail_cleanly() {
        for p in [
            &b""[..],
            b"\x80\x02",
            b"X\xff\xff\xff\xff",
            b"h\x05.",
            b"e.",
            b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xfe",
            b"(((((((((((.",
        ] {
            assert!(parse(p).is_err(), "{p:?}");
        }
    }
}
