//! The assistant's router, pure: which model tier answers a request, in what order to fall
//! back, and why. Local models first; an OpenAI-compatible upstream (a llama.cpp server,
//! Ollama, vLLM) next; paid frontier APIs last, never when the operator turned them off or
//! the month's budget would not cover the request. A tier that failed waits out a cooldown
//! that doubles with each failure in a row.

use std::collections::HashMap;

/// What a tier is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// In-process llama.cpp.
    Local,
    /// An OpenAI-compatible server of the farm's own.
    Upstream,
    /// A frontier API that costs money.
    Paid,
}

/// A configured tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub name: String,
    pub kind: Kind,
    /// Tokens it takes in, prompt and answer.
    pub context_tokens: u32,
    pub tools: bool,
    pub images: bool,
    /// Price per million tokens in and out, in the budget's currency (0 for free tiers).
    pub price_in: f64,
    pub price_out: f64,
}

/// How much thinking a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Depth {
    /// A quick answer: the smallest model that can.
    Quick,
    #[default]
    Normal,
    /// The strongest model allowed.
    Deep,
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    pub prompt_tokens: u32,
    pub max_answer_tokens: u32,
    pub tools: bool,
    pub images: bool,
    pub depth: Depth,
}

/// What the router knows besides the tiers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Budget {
    /// Paid tiers allowed at all.
    pub paid_enabled: bool,
    /// This month's budget and what was spent of it.
    pub monthly: f64,
    pub spent: f64,
}

/// A tier's failures: until when it waits, and how many in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cooldown {
    pub until: i64,
    pub failures: u32,
}

/// The first cooldown after a failure, ms; it doubles with each failure in a row.
pub const COOLDOWN_MS: i64 = 30_000;
/// The longest cooldown, ms.
pub const MAX_COOLDOWN_MS: i64 = 600_000;

/// A tier's cooldown after it failed (an error or a timeout) at `now`.
pub fn failed(previous: Option<Cooldown>, now: i64) -> Cooldown {
    let failures = previous.map_or(0, |c| c.failures).saturating_add(1);
    let wait = COOLDOWN_MS.saturating_mul(1_i64 << (failures - 1).min(10)).min(MAX_COOLDOWN_MS);
    Cooldown { until: now + wait, failures }
}

/// A candidate tier and why it was chosen where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub tier: String,
    pub why: String,
}

/// The tiers to try, in order, for `request`; `Err` says why none can take it.
pub fn route(
    tiers: &[Tier],
    request: &Request,
    budget: &Budget,
    cooldowns: &HashMap<String, Cooldown>,
    now: i64,
) -> Result<Vec<Choice>, String> {
    route_explained(tiers, request, budget, cooldowns, now).map(|(choices, _)| choices)
}

/// Like [`route`], with why each tier left out was left out (`"name: reason"`).
pub fn route_explained(
    tiers: &[Tier],
    request: &Request,
    budget: &Budget,
    cooldowns: &HashMap<String, Cooldown>,
    now: i64,
) -> Result<(Vec<Choice>, Vec<String>), String> {
    let mut left_out = Vec::new();
    let mut usable: Vec<(usize, &Tier, f64)> = Vec::new();
    for (order, tier) in tiers.iter().enumerate() {
        let need = request.prompt_tokens.saturating_add(request.max_answer_tokens);
        let cost = (f64::from(request.prompt_tokens) * tier.price_in
            + f64::from(request.max_answer_tokens) * tier.price_out)
            / 1_000_000.0;
        let reason = if let Some(c) = cooldowns.get(&tier.name).filter(|c| c.until > now) {
            Some(format!(
                "cooling down for {} s after {} failure(s)",
                (c.until - now + 999) / 1000,
                c.failures
            ))
        } else if request.tools && !tier.tools {
            Some("no tool calls".to_owned())
        } else if request.images && !tier.images {
            Some("no images".to_owned())
        } else if need > tier.context_tokens {
            Some(format!("{need} tokens do not fit its {}", tier.context_tokens))
        } else if tier.kind == Kind::Paid && !budget.paid_enabled {
            Some("paid tiers are off".to_owned())
        } else if tier.kind == Kind::Paid && budget.spent + cost > budget.monthly {
            Some(format!(
                "the month's budget is spent ({:.2} of {:.2}; this would cost up to {cost:.4})",
                budget.spent, budget.monthly
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => left_out.push(format!("{}: {reason}", tier.name)),
            None => usable.push((order, tier, cost)),
        }
    }
    if usable.is_empty() {
        return Err(format!("no model can take this request: {}", left_out.join("; ")));
    }
    // Quick and normal requests: local, then the farm's upstream, then paid. Deep ones: the
    // strongest allowed first (paid, upstream, local). Within a kind, the configured order.
    let rank = |kind: Kind| match (request.depth, kind) {
        (Depth::Deep, Kind::Paid) | (Depth::Quick | Depth::Normal, Kind::Local) => 0,
        (_, Kind::Upstream) => 1,
        (Depth::Deep, Kind::Local) | (Depth::Quick | Depth::Normal, Kind::Paid) => 2,
    };
    usable.sort_by_key(|(order, tier, _)| (rank(tier.kind), *order));
    let first = usable[0].1.name.clone();
    let choices = usable
        .iter()
        .map(|(_, tier, cost)| {
            let role = if tier.name == first { "first choice" } else { "fallback" };
            let kind = match tier.kind {
                Kind::Local => "local, free".to_owned(),
                Kind::Upstream => "the farm's upstream, free".to_owned(),
                Kind::Paid => format!("paid, up to {cost:.4}"),
            };
            let depth = match request.depth {
                Depth::Quick => "a quick answer",
                Depth::Normal => "a normal answer",
                Depth::Deep => "a deep answer",
            };
            Choice { tier: tier.name.clone(), why: format!("{role} for {depth}: {kind}") }
        })
        .collect();
    Ok((choices, left_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(name: &str, kind: Kind, price: f64) -> Tier {
        Tier {
            name: name.into(),
            kind,
            context_tokens: 8192,
            tools: true,
            images: kind != Kind::Local,
            price_in: price,
            price_out: price * 4.0,
        }
    }

    fn tiers() -> Vec<Tier> {
        vec![
            tier("frontier", Kind::Paid, 3.0),
            tier("smollm", Kind::Local, 0.0),
            tier("ollama", Kind::Upstream, 0.0),
        ]
    }

    fn names(choices: &[Choice]) -> Vec<&str> {
        choices.iter().map(|c| c.tier.as_str()).collect()
    }

    fn budget() -> Budget {
        Budget { paid_enabled: true, monthly: 10.0, spent: 0.0 }
    }

    #[test]
    fn local_first_then_upstream_then_paid_and_deep_the_other_way() {
        let request = Request {
            prompt_tokens: 500,
            max_answer_tokens: 200,
            tools: true,
            ..Request::default()
        };
        let choices = route(&tiers(), &request, &budget(), &HashMap::new(), 0).unwrap();
        assert_eq!(names(&choices), ["smollm", "ollama", "frontier"]);
        assert!(choices[0].why.starts_with("first choice"), "{:?}", choices[0]);
        let deep = Request { depth: Depth::Deep, ..request };
        let choices = route(&tiers(), &deep, &budget(), &HashMap::new(), 0).unwrap();
        assert_eq!(names(&choices), ["frontier", "ollama", "smollm"]);
    }

    #[test]
    fn images_and_long_prompts_go_where_they_fit() {
        let request = Request {
            prompt_tokens: 100,
            max_answer_tokens: 100,
            images: true,
            ..Request::default()
        };
        let choices = route(&tiers(), &request, &budget(), &HashMap::new(), 0).unwrap();
        assert_eq!(names(&choices), ["ollama", "frontier"]);
        let long = Request { prompt_tokens: 9000, ..Request::default() };
        let error = route(&tiers(), &long, &budget(), &HashMap::new(), 0).unwrap_err();
        assert!(error.contains("9000 tokens do not fit"), "{error}");
    }

    #[test]
    fn nothing_goes_to_a_paid_tier_when_they_are_off_or_the_budget_would_not_cover_it() {
        let only_paid = vec![tier("frontier", Kind::Paid, 3.0)];
        let request =
            Request { prompt_tokens: 1000, max_answer_tokens: 1000, ..Request::default() };
        let off = Budget { paid_enabled: false, ..budget() };
        let error = route(&only_paid, &request, &off, &HashMap::new(), 0).unwrap_err();
        assert!(error.contains("paid tiers are off"), "{error}");
        // 1000 × 3 + 1000 × 12 per million = 0.015: 9.99 spent of 10 leaves too little.
        let spent = Budget { spent: 9.99, ..budget() };
        let error = route(&only_paid, &request, &spent, &HashMap::new(), 0).unwrap_err();
        assert!(error.contains("budget is spent"), "{error}");
        let enough = Budget { spent: 9.98, ..budget() };
        assert!(route(&only_paid, &request, &enough, &HashMap::new(), 0).is_ok());
    }

    #[test]
    fn a_failed_tier_cools_down_longer_each_time_and_is_skipped_meanwhile() {
        let first = failed(None, 1_000);
        assert_eq!(first, Cooldown { until: 31_000, failures: 1 });
        let second = failed(Some(first), 31_000);
        assert_eq!(second, Cooldown { until: 91_000, failures: 2 });
        let mut many = second;
        for _ in 0..20 {
            many = failed(Some(many), 0);
        }
        assert_eq!(many.until, MAX_COOLDOWN_MS);
        let cooldowns = HashMap::from([("smollm".to_owned(), second)]);
        let request = Request::default();
        let choices = route(&tiers(), &request, &budget(), &cooldowns, 60_000).unwrap();
        assert_eq!(names(&choices), ["ollama", "frontier"]);
        let later = route(&tiers(), &request, &budget(), &cooldowns, 91_000).unwrap();
        assert_eq!(names(&later)[0], "smollm", "the cooldown is over");
    }
}
