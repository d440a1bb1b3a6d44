//! Credit arithmetic: how a movement splits across the subscription and purchased
//! buckets, held credits and debt. Pure functions over balances; the ledger actor
//! applies their results to the database.

/// Balance changes a movement makes (each may be negative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deltas {
    pub subscription: i64,
    pub purchased: i64,
    pub held: i64,
    pub debt: i64,
}

/// A credit bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Subscription,
    Purchased,
}

impl Bucket {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Subscription => "subscription",
            Bucket::Purchased => "purchased",
        }
    }
}

/// Balances before a movement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balances {
    pub subscription: i64,
    pub purchased: i64,
    pub held: i64,
    pub debt: i64,
}

impl Balances {
    /// `subscription + purchased - held`.
    pub fn available(&self) -> i64 {
        self.subscription + self.purchased - self.held
    }
}

/// A grant of `amount` into `bucket`: outstanding debt is paid first, the rest lands.
pub fn grant(balances: &Balances, bucket: Bucket, amount: i64) -> Deltas {
    let paid = balances.debt.min(amount).max(0);
    let landed = amount - paid;
    let mut d = Deltas {
        debt: -paid,
        ..Deltas::default()
    };
    match bucket {
        Bucket::Subscription => d.subscription = landed,
        Bucket::Purchased => d.purchased = landed,
    }
    d
}

/// An admin deduction of `amount` (> 0): purchased first, then subscription.
/// `None` when it would take available credits below zero.
pub fn deduct(balances: &Balances, amount: i64) -> Option<Deltas> {
    if amount > balances.available() {
        return None;
    }
    let from_purchased = amount.min(balances.purchased);
    Some(Deltas {
        purchased: -from_purchased,
        subscription: -(amount - from_purchased),
        ..Deltas::default()
    })
}

/// A reversal (refund, chargeback) of `amount` granted to `bucket`: taken from that
/// bucket first, then the other, but never below zero available; the part that cannot
/// be taken is recorded as debt and paid from the next grant.
pub fn reverse(balances: &Balances, bucket: Bucket, amount: i64) -> Deltas {
    let takeable = balances.available().clamp(0, amount);
    let (first, second) = match bucket {
        Bucket::Subscription => (balances.subscription, balances.purchased),
        Bucket::Purchased => (balances.purchased, balances.subscription),
    };
    let from_first = takeable.min(first.max(0));
    let from_second = (takeable - from_first).min(second.max(0));
    let (subscription, purchased) = match bucket {
        Bucket::Subscription => (from_first, from_second),
        Bucket::Purchased => (from_second, from_first),
    };
    Deltas {
        subscription: -subscription,
        purchased: -purchased,
        held: 0,
        debt: amount - from_first - from_second,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_pays_debt_first() {
        let b = Balances {
            debt: 5,
            ..Default::default()
        };
        assert_eq!(
            grant(&b, Bucket::Purchased, 8),
            Deltas {
                purchased: 3,
                debt: -5,
                ..Default::default()
            }
        );
        assert_eq!(
            grant(&b, Bucket::Subscription, 4),
            Deltas {
                debt: -4,
                ..Default::default()
            }
        );
    }

    #[test]
    fn deduct_never_goes_below_available() {
        let b = Balances {
            subscription: 10,
            purchased: 5,
            held: 3,
            debt: 0,
        };
        assert_eq!(deduct(&b, 13), None);
        assert_eq!(
            deduct(&b, 12),
            Some(Deltas {
                purchased: -5,
                subscription: -7,
                ..Default::default()
            })
        );
    }

    #[test]
    fn reverse_takes_its_bucket_first_then_the_other() {
        let b = Balances {
            subscription: 4,
            purchased: 10,
            held: 0,
            debt: 0,
        };
        assert_eq!(
            reverse(&b, Bucket::Subscription, 6),
            Deltas {
                subscription: -4,
                purchased: -2,
                ..Default::default()
            }
        );
    }

    #[test]
    fn reverse_records_a_shortfall_as_debt_and_keeps_available_at_zero() {
        let b = Balances {
            subscription: 0,
            purchased: 10,
            held: 7,
            debt: 0,
        };
        let d = reverse(&b, Bucket::Purchased, 5);
        assert_eq!(
            d,
            Deltas {
                purchased: -3,
                debt: 2,
                ..Default::default()
            }
        );
        assert_eq!(b.available() + d.subscription + d.purchased - d.held, 0);
    }
}
