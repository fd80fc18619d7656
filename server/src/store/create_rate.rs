//! Each user's create rate, kept in the store so that it holds across
//! servers: a token bucket per user (`limits.creates_per_minute` tokens a
//! minute, at most `limits.create_burst` saved), read and written in one
//! transaction. The arithmetic is here, the same for both backends.

/// A user's bucket as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub updated_ms: i64,
}

/// The rate: tokens a minute and the most saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    fn per_ms(self) -> f64 {
        f64::from(self.per_minute.max(1)) / 60_000.0
    }

    fn most(self) -> f64 {
        f64::from(self.burst.max(1))
    }

    /// A new user's bucket: full.
    pub fn full(self, now_ms: i64) -> Bucket {
        Bucket {
            tokens: self.most(),
            updated_ms: now_ms,
        }
    }

    /// Takes a token from `bucket` at `now_ms`: the bucket to store, and
    /// how long until a token is free when there is none (nothing taken).
    pub fn take(self, bucket: Bucket, now_ms: i64) -> (Bucket, Option<u64>) {
        let elapsed = now_ms.saturating_sub(bucket.updated_ms).max(0) as f64;
        let tokens = (bucket.tokens + elapsed * self.per_ms()).min(self.most());
        let now = |tokens| Bucket {
            tokens,
            updated_ms: now_ms,
        };
        if tokens >= 1.0 {
            (now(tokens - 1.0), None)
        } else {
            let wait = ((1.0 - tokens) / self.per_ms()).ceil() as u64;
            (now(tokens), Some(wait.max(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let rate = Rate {
            per_minute: 6,
            burst: 2,
        }; // one every 10 s
        let b = rate.full(0);
        let (b, wait) = rate.take(b, 0);
        assert_eq!(wait, None);
        let (b, wait) = rate.take(b, 0);
        assert_eq!(wait, None);
        let (b, wait) = rate.take(b, 0);
        assert_eq!(wait, Some(10_000));
        let (b, wait) = rate.take(b, 10_000);
        assert_eq!(wait, None, "one more after 10 s");
        let (_, wait) = rate.take(b, 11_000);
        assert_eq!(wait, Some(9_000));
    }
}
