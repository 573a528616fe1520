//! The pace of reads from a production server (`--max-keys-per-sec`,
//! `--max-bytes-per-sec`): a token bucket. Pure: it is told the instant
//! (unix ms) and answers how long to wait; the reader does the sleeping.
//!
//! The bucket holds at most a tenth of a second of tokens, so a read that
//! was idle bursts by no more than that: over any window of `T` seconds at
//! most `rate × (T + 0.1)` tokens are spent. A take larger than the bucket
//! is allowed and leaves a debt that the next take waits out, so the
//! average rate holds for any batch size.

/// Tokens (keys or bytes) per second, spent by batches.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: u64,
    burst: f64,
    /// Tokens available; negative while a debt is being paid off.
    tokens: f64,
    /// When `tokens` was last brought up to date (unix ms).
    at_ms: i64,
}

/// The share of a second's tokens the bucket holds at most.
const BURST_SECONDS: f64 = 0.1;

impl TokenBucket {
    /// A full bucket of `rate` tokens per second (at least 1) at `now_ms`.
    pub fn new(rate: u64, now_ms: i64) -> TokenBucket {
        let rate = rate.max(1);
        let burst = (rate as f64 * BURST_SECONDS).max(1.0);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            at_ms: now_ms,
        }
    }

    /// The most tokens one batch should take to stay within the burst.
    pub fn burst(&self) -> u64 {
        self.burst as u64
    }

    /// Takes `n` tokens at `now_ms`: the milliseconds to wait before using
    /// them (0 when they are there).
    pub fn take(&mut self, n: u64, now_ms: i64) -> u64 {
        self.refill(now_ms);
        self.tokens -= n as f64;
        self.wait_ms()
    }

    /// Charges `n` tokens already spent (bytes, known only once read); the
    /// next [`Self::take`] waits out any debt.
    pub fn charge(&mut self, n: u64, now_ms: i64) {
        self.refill(now_ms);
        self.tokens -= n as f64;
    }

    /// Gives back `n` tokens taken on an estimate that proved too high (up
    /// to a full bucket).
    pub fn refund(&mut self, n: u64, now_ms: i64) {
        self.refill(now_ms);
        self.tokens = (self.tokens + n as f64).min(self.burst);
    }

    fn refill(&mut self, now_ms: i64) {
        // A clock that steps back refills nothing rather than draining.
        let elapsed = now_ms.saturating_sub(self.at_ms).max(0);
        self.at_ms = self.at_ms.max(now_ms);
        let earned = self.rate as f64 * elapsed as f64 / 1000.0;
        self.tokens = (self.tokens + earned).min(self.burst);
    }

    fn wait_ms(&self) -> u64 {
        if self.tokens >= 0.0 {
            return 0;
        }
        (-self.tokens * 1000.0 / self.rate as f64).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_000_000;

    /// Spends `batch` tokens at a time for `total` tokens, sleeping as told
    /// on a simulated clock: the instant (ms) each batch is sent.
    fn sends(rate: u64, batch: u64, total: u64) -> Vec<(i64, u64)> {
        let mut now = START;
        let mut bucket = TokenBucket::new(rate, now);
        let mut out = Vec::new();
        let mut sent = 0;
        while sent < total {
            now += bucket.take(batch, now) as i64;
            out.push((now, batch));
            sent += batch;
        }
        out
    }

    /// The most tokens sent within any window of `window_ms`.
    fn busiest(sends: &[(i64, u64)], window_ms: i64) -> u64 {
        sends
            .iter()
            .map(|&(start, _)| {
                sends
                    .iter()
                    .filter(|&&(t, _)| t >= start && t < start + window_ms)
                    .map(|&(_, n)| n)
                    .sum()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_full_bucket_lets_one_burst_through_then_paces() {
        let mut bucket = TokenBucket::new(1000, 0);
        assert_eq!(bucket.burst(), 100);
        assert_eq!(bucket.take(100, 0), 0);
        assert_eq!(bucket.take(100, 0), 100);
        // 50 ms later half the debt is paid.
        assert_eq!(bucket.take(0, 150), 0);
        assert_eq!(bucket.take(50, 150), 0);
        assert_eq!(bucket.take(50, 150), 50);
    }

    #[test]
    fn no_second_exceeds_the_rate_plus_the_burst() {
        for (rate, batch) in [
            (1000, 100),
            (1000, 1000),
            (1000, 7),
            (10, 1),
            (50_000, 1000),
        ] {
            let sends = sends(rate, batch, rate * 5);
            let limit = rate + rate / 10 + batch;
            assert!(
                busiest(&sends, 1000) <= limit,
                "rate {rate}, batch {batch}: {} in a second",
                busiest(&sends, 1000)
            );
            // Only the first burst and the last batch come early.
            let took = sends.last().unwrap().0 - START;
            let least = ((rate * 5 - rate / 10 - batch) * 1000 / rate) as i64;
            assert!(
                took >= least,
                "rate {rate}, batch {batch}: 5 s of tokens in {took} ms"
            );
        }
    }

    #[test]
    fn charged_bytes_delay_the_next_read() {
        let mut bytes = TokenBucket::new(1000, 0);
        assert_eq!(bytes.take(0, 0), 0);
        bytes.charge(600, 10);
        // A full bucket of 100 earns nothing more; 600 spent: 500 owed.
        assert_eq!(bytes.take(0, 10), 500);
        assert_eq!(bytes.take(0, 500), 10);
        assert_eq!(bytes.take(0, 510), 0);
    }

    #[test]
    fn an_estimate_taken_ahead_is_settled_afterwards() {
        let mut bytes = TokenBucket::new(1000, 0);
        assert_eq!(bytes.take(300, 0), 200);
        // The read returned 100 bytes, not 300: the debt is gone.
        bytes.refund(200, 0);
        assert_eq!(bytes.take(0, 0), 0);
        // Never more than a full bucket back.
        bytes.refund(10_000, 0);
        assert_eq!(bytes.take(100, 0), 0);
        assert_eq!(bytes.take(1, 0), 1);
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let mut bucket = TokenBucket::new(100, 0);
        assert_eq!(bucket.take(10, 0), 0);
        // An hour idle buys one burst, not an hour of tokens.
        assert_eq!(bucket.take(10, 3_600_000), 0);
        assert_eq!(bucket.take(10, 3_600_000), 100);
        // A clock that steps back neither refills nor panics.
        assert_eq!(bucket.take(0, 0), 100);
    }

    #[test]
    fn a_rate_of_zero_is_one_per_second() {
        let mut bucket = TokenBucket::new(0, 0);
        assert_eq!(bucket.take(1, 0), 0);
        assert_eq!(bucket.take(1, 0), 1000);
    }
}
