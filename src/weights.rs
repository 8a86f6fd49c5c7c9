//! Weighted choices written `name=weight,name=weight` (`delivered=90,undelivered=10`): the
//! simulators' outcome mixes. Names are matched without regard to case; one missing weighs 0.

/// Relative weights of `N` named choices, adding up to more than 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weights<const N: usize> {
    weights: [u32; N],
    total: u32,
}

impl<const N: usize> Weights<N> {
    /// Parses `s` against `names`; `what` names a choice in errors ("outcome").
    pub fn parse(s: &str, names: [&str; N], what: &str) -> Result<Self, String> {
        let mut weights = [None::<u32>; N];
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = item.split_once('=').ok_or_else(|| format!("`{item}`: expected name=weight"))?;
            let (name, value) = (name.trim(), value.trim());
            let i = names.iter().position(|n| n.eq_ignore_ascii_case(name)).ok_or_else(|| format!("`{name}`: unknown {what} (use {})", names.join(", ")))?;
            let weight = value.parse::<u32>().map_err(|_| format!("`{name}`: weight must be a whole number, got `{value}`"))?;
            if weights[i].replace(weight).is_some() {
                return Err(format!("`{name}` given twice"));
            }
        }
        let weights = weights.map(|w| w.unwrap_or(0));
        match weights.iter().try_fold(0u32, |acc, w| acc.checked_add(*w)) {
            Some(0) => Err("weights must add up to more than 0".into()),
            None => Err("weights are too large".into()),
            Some(total) => Ok(Self { weights, total }),
        }
    }

    /// All on the choice at `index`.
    pub fn only(index: usize) -> Self {
        let mut weights = [0; N];
        weights[index] = 1;
        Self { weights, total: 1 }
    }

    pub fn weights(&self) -> [u32; N] {
        self.weights
    }

    /// Draws a choice's index; no random draw when only one has weight.
    pub fn pick(&self) -> usize {
        if let Some(i) = self.weights.iter().position(|&w| w == self.total) {
            return i;
        }
        self.pick_at(rand::Rng::random_range(&mut rand::rng(), 0..self.total))
    }

    /// The choice a roll in `0..total` lands on.
    pub fn pick_at(&self, mut roll: u32) -> usize {
        for (i, w) in self.weights.iter().enumerate() {
            if roll < *w {
                return i;
            }
            roll -= w;
        }
        0
    }
}
