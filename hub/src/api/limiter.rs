//! The login limiter: failed password checks, counted per user name and per client address,
//! in memory that stays bounded whatever a flood sends.
//!
//! Each key (a user name, or an address: IPv4 whole, IPv6 by its /64, the block one host is
//! usually given) is limited with GCRA, the generic cell-rate algorithm governor and most
//! rate limiters use: an entry is one instant, the *theoretical arrival time* (`tat`). A
//! failure moves it `interval` (= window / burst) later; a key is blocked while `tat` lies
//! more than `window - interval` ahead. So `burst` failures may come at once, then one per
//! `interval`, and a key whose `tat` has passed is the same as no entry at all.
//!
//! An attempt is charged when it is admitted, before its password is checked (so that many
//! concurrent attempts cannot all pass before the first failure counts), and the charge is
//! given back when the password was right or never checked. A refused attempt creates
//! nothing. Each table holds at most its capacity:
//! when full, entries whose `tat` passed are dropped, and if that is not enough, the eighth
//! of the entries closest to expiring (the least constrained keys) is dropped at once, so
//! insertion stays amortised O(1) and blocked keys, furthest from expiring, are kept longest.
//!
//! Written here rather than taken from governor: charges must be given back (only failures
//! count in the end), the tables need a hard bound (governor's keyed state grows until
//! `retain_recent` runs), and `now` is an argument so the tests need no clock.
//!
//! A refusal is reported (audited) once per blocked episode: [`Verdict::Blocked`] says
//! whether this is the first refusal since the key's last failure.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins allowed at once per user name within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES: u32 = 5;
/// Failed logins allowed at once per client address (higher: many people may share a NAT).
pub const LOGIN_FAILURES_PER_ADDRESS: u32 = 20;
/// The window the allowances refill over.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(300);
/// Most user names remembered.
pub const NAME_CAPACITY: usize = 10_000;
/// Most client addresses remembered.
pub const ADDRESS_CAPACITY: usize = 10_000;

/// The address a client is limited by: IPv4 (and IPv4-mapped IPv6) whole, other IPv6 by /64.
/// `None`: the server did not record the peer (only in tests that call the router directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(Option<IpAddr>);

impl AddressKey {
    pub fn new(address: Option<IpAddr>) -> AddressKey {
        AddressKey(address.map(|address| match address {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
        }))
    }
}

impl AddressKey {
    /// The key replicas share it under (`login_failures`); `None` without an address.
    pub fn shared_key(&self) -> Option<String> {
        self.0.map(|address| format!("address:{address}"))
    }
}

/// The key replicas share a user name's failures under (`login_failures`).
pub fn shared_name_key(name: &str) -> String {
    format!("name:{name}")
}

/// A name's and an address's shared keys with each one's (interval, tolerance) in ms: the
/// same allowances as the in-memory tables.
pub fn shared_keys(name: &str, address: AddressKey) -> Vec<(String, i64, i64)> {
    let rule = |burst: u32| {
        let interval = LOGIN_WINDOW / burst.max(1);
        (interval.as_millis() as i64, (LOGIN_WINDOW - interval).as_millis() as i64)
    };
    let (name_interval, name_tolerance) = rule(LOGIN_FAILURES);
    let mut keys = vec![(shared_name_key(name), name_interval, name_tolerance)];
    if let Some(key) = address.shared_key() {
        let (interval, tolerance) = rule(LOGIN_FAILURES_PER_ADDRESS);
        keys.push((key, interval, tolerance));
    }
    keys
}

/// What the limiter says about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused: try again after `retry_after` (whole seconds, at least 1). `first`: the first
    /// refusal since the blocking key was last charged.
    Blocked {
        retry_after: u64,
        first: bool,
    },
}

/// Recent failed (and pending) logins by user name and by client address.
#[derive(Debug)]
pub struct LoginLimiter {
    names: Mutex<Table<Box<str>>>,
    addresses: Mutex<Table<AddressKey>>,
}

impl Default for LoginLimiter {
    fn default() -> LoginLimiter {
        LoginLimiter::with_capacity(NAME_CAPACITY, ADDRESS_CAPACITY)
    }
}

impl LoginLimiter {
    pub fn with_capacity(names: usize, addresses: usize) -> LoginLimiter {
        LoginLimiter {
            names: Mutex::new(Table::new(LOGIN_FAILURES, names)),
            addresses: Mutex::new(Table::new(LOGIN_FAILURES_PER_ADDRESS, addresses)),
        }
    }

    /// Admits an attempt for `name` from `address`, or refuses it while either key is over
    /// its allowance. An admitted attempt is charged to both keys at once, as if it failed,
    /// so that concurrent attempts cannot all pass before the first failure is recorded; a
    /// success ([`LoginLimiter::succeeded`]) or an attempt whose password was never checked
    /// ([`LoginLimiter::refund`]) gives the charge back. A refused attempt is charged nothing.
    pub fn admit(&self, name: &str, address: AddressKey, now: Instant) -> Verdict {
        // Always names, then addresses.
        let mut names = lock(&self.names);
        let mut addresses = lock(&self.addresses);
        let verdict = match (names.check(name, now), addresses.check(&address, now)) {
            (Verdict::Allowed, other) | (other, Verdict::Allowed) => other,
            (
                Verdict::Blocked { retry_after: a, first: first_a },
                Verdict::Blocked { retry_after: b, first: first_b },
            ) => Verdict::Blocked { retry_after: a.max(b), first: first_a || first_b },
        };
        if verdict == Verdict::Allowed {
            names.charge(name.into(), now);
            addresses.charge(address, now);
        }
        verdict
    }

    /// The attempt was right: the name's charges are forgotten, the address gets this one
    /// back (its earlier failures stay).
    pub fn succeeded(&self, name: &str, address: AddressKey) {
        lock(&self.names).entries.remove(name);
        lock(&self.addresses).refund(&address);
    }

    /// The attempt's password was never checked (the hash gate was full): both charges back.
    pub fn refund(&self, name: &str, address: AddressKey) {
        lock(&self.names).refund(name);
        lock(&self.addresses).refund(&address);
    }

    /// Forgets everything about `name` (an admin set a new password).
    pub fn forget(&self, name: &str) {
        lock(&self.names).entries.remove(name);
    }

    /// Entries held: (names, addresses).
    pub fn entries(&self) -> (usize, usize) {
        (lock(&self.names).entries.len(), lock(&self.addresses).entries.len())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The theoretical arrival time of the next allowed failure.
    tat: Instant,
    /// A refusal was reported since the last charge.
    reported: bool,
}

/// One GCRA table with a hard capacity.
#[derive(Debug)]
struct Table<K> {
    /// window / burst: how much later each failure pushes `tat`.
    interval: Duration,
    /// How far ahead `tat` may be while the key is still allowed: window - interval.
    tolerance: Duration,
    capacity: usize,
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq> Table<K> {
    fn new(burst: u32, capacity: usize) -> Table<K> {
        let interval = LOGIN_WINDOW / burst.max(1);
        Table {
            interval,
            tolerance: LOGIN_WINDOW - interval,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    fn check<Q>(&mut self, key: &Q, now: Instant) -> Verdict
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(entry) = self.entries.get_mut(key) else { return Verdict::Allowed };
        let ahead = entry.tat.saturating_duration_since(now);
        if ahead <= self.tolerance {
            return Verdict::Allowed;
        }
        let wait = ahead - self.tolerance;
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let first = !entry.reported;
        entry.reported = true;
        Verdict::Blocked { retry_after: retry_after.max(1), first }
    }

    fn charge(&mut self, key: K, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        let entry = self.entries.entry(key).or_insert(Entry { tat: now, reported: false });
        entry.tat = entry.tat.max(now) + self.interval;
        entry.reported = false;
    }

    fn refund<Q>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.tat = entry.tat.checked_sub(self.interval).unwrap_or(entry.tat);
        }
    }

    /// Drops expired entries; if the table is still full, the eighth closest to expiring.
    fn make_room(&mut self, now: Instant) {
        self.entries.retain(|_, entry| entry.tat > now);
        if self.entries.len() < self.capacity {
            return;
        }
        let mut tats: Vec<Instant> = self.entries.values().map(|entry| entry.tat).collect();
        let n_drop = (self.capacity / 8).max(1).min(tats.len() - 1);
        let (_, cut, _) = tats.select_nth_unstable(n_drop);
        let cut = *cut;
        // At least `n_drop + 1` entries go (more when several share the cut's instant).
        self.entries.retain(|_, entry| entry.tat > cut);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn ip(text: &str) -> AddressKey {
        AddressKey::new(Some(text.parse().unwrap()))
    }

    #[test]
    fn a_name_is_blocked_after_five_failures_then_allowed_one_per_interval() {
        let limiter = LoginLimiter::default();
        let start = Instant::now();
        // Five attempts pass at once, each charged before its password is checked...
        for i in 0..LOGIN_FAILURES {
            assert_eq!(limiter.admit("ana", ip("10.0.0.1"), start), Verdict::Allowed, "{i}");
        }
        // ...so a sixth is refused even before any of them failed.
        let interval = LOGIN_WINDOW / LOGIN_FAILURES;
        assert_eq!(
            limiter.admit("ana", ip("10.0.0.9"), start),
            Verdict::Blocked { retry_after: interval.as_secs(), first: true },
            "a name is limited from any address"
        );
        assert_eq!(
            limiter.admit("ana", ip("10.0.0.9"), start + Duration::from_secs(1)),
            Verdict::Blocked { retry_after: interval.as_secs() - 1, first: false },
            "the second refusal is not reported again"
        );
        // Another user from the same address is not locked out by one user's failures.
        assert_eq!(limiter.admit("bo", ip("10.0.0.1"), start), Verdict::Allowed);
        // One interval later one more attempt is allowed, and then it is blocked again.
        let later = start + interval;
        assert_eq!(limiter.admit("ana", ip("10.0.0.1"), later), Verdict::Allowed);
        assert!(matches!(
            limiter.admit("ana", ip("10.0.0.1"), later),
            Verdict::Blocked { first: true, .. }
        ));
        // A whole window after the last charge everything is forgotten.
        assert_eq!(limiter.admit("ana", ip("10.0.0.1"), later + LOGIN_WINDOW), Verdict::Allowed);
    }

    #[test]
    fn a_success_or_an_unchecked_attempt_gives_its_charge_back() {
        let limiter = LoginLimiter::default();
        let now = Instant::now();
        for _ in 0..LOGIN_FAILURES {
            assert_eq!(limiter.admit("ana", ip("10.0.0.1"), now), Verdict::Allowed);
        }
        limiter.succeeded("ana", ip("10.0.0.1"));
        assert_eq!(limiter.admit("ana", ip("10.0.0.1"), now), Verdict::Allowed, "name forgotten");
        // The address keeps its other charges: 5 + 1 - 1 = 5 of 20.
        for i in 5..LOGIN_FAILURES_PER_ADDRESS {
            assert_eq!(limiter.admit(&format!("n{i}"), ip("10.0.0.1"), now), Verdict::Allowed);
        }
        assert!(matches!(limiter.admit("zed", ip("10.0.0.1"), now), Verdict::Blocked { .. }));
        // An attempt that was never checked costs nothing.
        limiter.refund("n19", ip("10.0.0.1"));
        assert_eq!(limiter.admit("zed", ip("10.0.0.1"), now), Verdict::Allowed);
        assert!(matches!(limiter.admit("zed", ip("10.0.0.1"), now), Verdict::Blocked { .. }));
        limiter.forget("ana");
        assert_eq!(limiter.entries().0, LOGIN_FAILURES_PER_ADDRESS as usize - 5 + 1);
    }

    #[test]
    fn an_address_is_blocked_after_twenty_failures_whatever_the_names() {
        let limiter = LoginLimiter::default();
        let now = Instant::now();
        for i in 0..LOGIN_FAILURES_PER_ADDRESS {
            assert_eq!(limiter.admit(&format!("guess{i}"), ip("192.0.2.7"), now), Verdict::Allowed);
        }
        assert!(matches!(limiter.admit("bo", ip("192.0.2.7"), now), Verdict::Blocked { .. }));
        assert_eq!(limiter.admit("bo", ip("192.0.2.8"), now), Verdict::Allowed);
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(
            AddressKey::new(Some(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()))),
            ip("192.0.2.1")
        );
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        assert_ne!(AddressKey::new(None), AddressKey::new(Some(Ipv6Addr::LOCALHOST.into())));
    }

    #[test]
    fn a_flood_of_distinct_names_and_addresses_stays_within_capacity_and_keeps_blocked_keys() {
        let limiter = LoginLimiter::with_capacity(1000, 1000);
        let start = Instant::now();
        // A real attack on one name, blocked, from one address.
        for _ in 0..LOGIN_FAILURES {
            limiter.admit("ana", ip("10.9.9.9"), start);
        }
        // Then a flood: 50 000 distinct names from 50 000 distinct addresses, all within the
        // window.
        for i in 0..50_000u32 {
            let now = start + Duration::from_millis(u64::from(i));
            let address = AddressKey::new(Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))));
            assert_eq!(limiter.admit(&format!("flood{i}"), address, now), Verdict::Allowed);
            let (names, addresses) = limiter.entries();
            assert!(names <= 1000 && addresses <= 1000, "{names} names, {addresses} addresses");
        }
        let now = start + Duration::from_secs(50);
        assert!(
            matches!(limiter.admit("ana", ip("10.1.1.1"), now), Verdict::Blocked { .. }),
            "the blocked name outlived the flood"
        );
        // The newest flood entries are still there.
        let newest = AddressKey::new(Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 49_999))));
        assert!(lock(&limiter.addresses).entries.contains_key(&newest));
    }

    #[test]
    fn refused_attempts_create_no_entries() {
        let limiter = LoginLimiter::default();
        let now = Instant::now();
        for i in 0..LOGIN_FAILURES_PER_ADDRESS {
            limiter.admit(&format!("n{i}"), ip("10.0.0.1"), now);
        }
        for i in 0..1000 {
            let verdict = limiter.admit(&format!("more{i}"), ip("10.0.0.1"), now);
            assert!(matches!(verdict, Verdict::Blocked { .. }));
        }
        assert_eq!(limiter.entries(), (LOGIN_FAILURES_PER_ADDRESS as usize, 1));
    }
}
