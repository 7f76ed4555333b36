//! The semantic cache's decisions, pure (issue 20): an answer is reused only for a question
//! in the same scope (role, tool set, model tier, and the version of the facts it read),
//! with the same facets (`facets::Facets`: numbers and units, names, negations, times,
//! verbs), and only then when the two questions' embeddings are close. Entries are
//! bucketed by scope and facets, so a lookup compares a handful of vectors, not all of them.
//! Entries expire; a scope can be invalidated (a state change bumps the facts' version).

use std::collections::HashMap;

use super::facets::Facets;

/// What an answer depended on besides the question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub role: String,
    /// The tools offered, by name, sorted and joined.
    pub tools: String,
    pub tier: String,
    /// The version of the live facts the answer read (0: it read none).
    pub facts: u64,
}

/// A cached answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub question: String,
    pub answer: String,
    pub vector: Vec<f32>,
    pub expires_at: i64,
}

/// Why a lookup missed, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Nothing cached with this scope and these facets.
    Empty,
    /// Something was, but not close enough.
    Far,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    scope: Scope,
    facets: String,
}

fn key(scope: &Scope, facets: &Facets) -> Key {
    Key { scope: scope.clone(), facets: format!("{facets:?}") }
}

/// The cache.
#[derive(Debug)]
pub struct SemanticCache {
    buckets: HashMap<Key, Vec<Entry>>,
    /// The least cosine between two questions' embeddings for a hit.
    pub threshold: f32,
    pub ttl_ms: i64,
    len: usize,
}

/// The cosine a hit needs, calibrated on `eval/cache-adversarial.json` with all-MiniLM-L6-v2
/// (its paraphrases score 0.70–0.92): the facets already keep every near-miss out.
pub const THRESHOLD: f32 = 0.80;

impl SemanticCache {
    pub fn new(threshold: f32, ttl_ms: i64) -> SemanticCache {
        SemanticCache { buckets: HashMap::new(), threshold, ttl_ms, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(
        &mut self,
        scope: &Scope,
        facets: &Facets,
        question: &str,
        vector: Vec<f32>,
        answer: &str,
        now: i64,
    ) {
        let bucket = self.buckets.entry(key(scope, facets)).or_default();
        bucket.push(Entry {
            question: question.to_owned(),
            answer: answer.to_owned(),
            vector,
            expires_at: now + self.ttl_ms,
        });
        self.len += 1;
    }

    /// The closest live entry for a question, if close enough.
    pub fn lookup(
        &self,
        scope: &Scope,
        facets: &Facets,
        vector: &[f32],
        now: i64,
    ) -> Result<&Entry, Miss> {
        let Some(bucket) = self.buckets.get(&key(scope, facets)) else {
            return Err(Miss::Empty);
        };
        let best = bucket
            .iter()
            .filter(|e| e.expires_at > now)
            .map(|e| (super::embed::cosine(&e.vector, vector), e))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((similarity, entry)) if similarity >= self.threshold => Ok(entry),
            Some(_) => Err(Miss::Far),
            None => Err(Miss::Empty),
        }
    }

    /// Removes every entry whose scope `matches`; answers how many.
    pub fn invalidate(&mut self, matches: impl Fn(&Scope) -> bool) -> usize {
        let mut removed = 0;
        self.buckets.retain(|key, bucket| {
            let gone = matches(&key.scope);
            if gone {
                removed += bucket.len();
            }
            !gone
        });
        self.len -= removed;
        removed
    }

    /// Drops expired entries; answers how many.
    pub fn purge(&mut self, now: i64) -> usize {
        let mut removed = 0;
        self.buckets.retain(|_, bucket| {
            let before = bucket.len();
            bucket.retain(|e| e.expires_at > now);
            removed += before - bucket.len();
            !bucket.is_empty()
        });
        self.len -= removed;
        removed
    }
}

/// Whether the cache serves each pair's first question's answer to its second: each pair
/// in a cache of its own, both embedded by `embedder`, in one scope. What the adversarial
/// set's test and benchmark run.
pub async fn replay(
    embedder: &super::embed::Embedder,
    vocabulary: &[String],
    pairs: &[super::facets::Pair],
) -> Result<Vec<bool>, String> {
    let texts: Vec<String> = pairs.iter().flat_map(|(a, b)| [a.clone(), b.clone()]).collect();
    let vectors = embedder.embed(texts).await?;
    let scope =
        Scope { role: "operator".into(), tools: "all".into(), tier: "local".into(), facts: 0 };
    let mut served = Vec::with_capacity(pairs.len());
    for (n, (a, b)) in pairs.iter().enumerate() {
        let (Some(first), Some(second)) = (vectors.get(2 * n), vectors.get(2 * n + 1)) else {
            return Err("the model gave fewer vectors than questions".into());
        };
        let mut cache = SemanticCache::new(THRESHOLD, 60_000);
        cache.insert(&scope, &Facets::of(a, vocabulary), a, first.clone(), "answer", 0);
        served.push(cache.lookup(&scope, &Facets::of(b, vocabulary), second, 1).is_ok());
    }
    Ok(served)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(facts: u64) -> Scope {
        Scope { role: "operator".into(), tools: "fleet_status".into(), tier: "local".into(), facts }
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn a_hit_needs_the_scope_the_facets_and_closeness_and_entries_expire() {
        let mut cache = SemanticCache::new(0.9, 1_000);
        let facets = Facets::of("is the X1C printing?", &["X1C".into()]);
        cache.insert(&scope(1), &facets, "is the X1C printing?", unit(&[1.0, 0.0]), "yes", 0);
        assert_eq!(cache.lookup(&scope(1), &facets, &unit(&[1.0, 0.1]), 10).unwrap().answer, "yes");
        assert_eq!(cache.lookup(&scope(1), &facets, &unit(&[1.0, 1.0]), 10), Err(Miss::Far));
        assert_eq!(
            cache.lookup(&scope(2), &facets, &unit(&[1.0, 0.0]), 10),
            Err(Miss::Empty),
            "new facts"
        );
        let other = Facets::of("is the P1S printing?", &["P1S".into()]);
        assert_eq!(cache.lookup(&scope(1), &other, &unit(&[1.0, 0.0]), 10), Err(Miss::Empty));
        assert_eq!(
            cache.lookup(&scope(1), &facets, &unit(&[1.0, 0.0]), 1_000),
            Err(Miss::Empty),
            "expired"
        );
        assert_eq!(cache.purge(1_000), 1);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_scope_is_invalidated_whole() {
        let mut cache = SemanticCache::new(0.9, 1_000);
        let facets = Facets::default();
        cache.insert(&scope(1), &facets, "a", unit(&[1.0]), "x", 0);
        cache.insert(&scope(2), &facets, "b", unit(&[1.0]), "y", 0);
        assert_eq!(cache.invalidate(|s| s.facts == 1), 1);
        assert_eq!(cache.len(), 1);
        assert!(cache.lookup(&scope(2), &facets, &unit(&[1.0]), 0).is_ok());
    }

    /// `eval/cache-adversarial.json` with the real embedding model: no near-miss is served
    /// the other's answer; the paraphrase hit rate is printed.
    #[tokio::test]
    #[allow(clippy::print_stdout)]
    async fn the_adversarial_set_gets_no_near_miss_hit_with_real_embeddings() {
        let (vocabulary, hits, misses) = crate::assistant::facets::adversarial_set();
        let embedder = crate::assistant::embed::tests::embedder();
        let served = |pairs: Vec<(String, String)>| {
            let (embedder, vocabulary) = (&embedder, &vocabulary);
            async move { replay(embedder, vocabulary, &pairs).await.unwrap() }
        };
        let leaked: Vec<_> = misses
            .iter()
            .zip(served(misses.clone()).await)
            .filter(|(_, hit)| *hit)
            .map(|(p, _)| p)
            .collect();
        assert!(leaked.is_empty(), "near-misses served another question's answer: {leaked:?}");
        let rate = served(hits.clone()).await.iter().filter(|h| **h).count();
        println!("paraphrase hit rate at {THRESHOLD}: {rate} of {}", hits.len());
        assert!(
            rate * 2 >= hits.len(),
            "at least half the paraphrases hit ({rate} of {})",
            hits.len()
        );
    }
}
