//! Credit arithmetic: how a movement splits across the subscription and purchased
//! buckets, held credits and debt. Pure functions over balances; the ledger actor
//! applies their results to the database.
//!
//! Debt is what a seller owes after a refund took back more than was available. The
//! rules keep one invariant: while there is debt nothing is available — every movement
//! that makes credits available (a grant, a release, a correction) is followed by
//! [`repay_debt`], and a reversal takes what is available before it records debt.

use super::ApiError;

/// The largest credit amount one request or command may move (a billion credits).
/// Every amount from outside is checked against it at the edge, so the sums in the
/// database stay far from the integer limits.
pub const MAX_CREDIT_AMOUNT: i64 = 1_000_000_000;

/// Checks an amount from a request or the CLI: a non-zero integer within
/// ±[`MAX_CREDIT_AMOUNT`] (`allow_negative` for corrections), else `BAD_REQUEST`
/// naming `field`.
pub fn check_amount(field: &str, amount: i64, allow_negative: bool) -> Result<i64, ApiError> {
    let low = if allow_negative {
        -MAX_CREDIT_AMOUNT
    } else {
        1
    };
    if amount == 0 || !(low..=MAX_CREDIT_AMOUNT).contains(&amount) {
        let range = if allow_negative {
            format!("a non-zero integer from -{MAX_CREDIT_AMOUNT} to {MAX_CREDIT_AMOUNT}")
        } else {
            format!("an integer from 1 to {MAX_CREDIT_AMOUNT}")
        };
        return Err(ApiError::bad_field(
            field,
            format!("{field} must be {range}"),
        ));
    }
    Ok(amount)
}

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

/// A grant of `amount` into `bucket`: it lands whole; [`repay_debt`] then settles any
/// debt out of what became available.
pub fn grant(bucket: Bucket, amount: i64) -> Deltas {
    match bucket {
        Bucket::Subscription => Deltas {
            subscription: amount,
            ..Deltas::default()
        },
        Bucket::Purchased => Deltas {
            purchased: amount,
            ..Deltas::default()
        },
    }
}

/// The repayment of debt out of available credits (purchased first, then subscription):
/// `None` when there is no debt or nothing available. Run after every movement that
/// makes credits available, so that debt and available credits never coexist.
pub fn repay_debt(balances: &Balances) -> Option<Deltas> {
    let paid = balances.debt.min(balances.available());
    if paid <= 0 {
        return None;
    }
    let from_purchased = paid.min(balances.purchased);
    Some(Deltas {
        purchased: -from_purchased,
        subscription: -(paid - from_purchased),
        held: 0,
        debt: -paid,
    })
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

/// What a reversal does: the credits it takes now, and the shortfall owed as debt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reversal {
    /// Taken from the buckets (never below zero available).
    pub taken: Deltas,
    /// The part that could not be taken: recorded as debt, paid from the next credits
    /// that become available (a release of held credits included).
    pub shortfall: i64,
}

/// A reversal (refund, chargeback) of `amount` granted to `bucket`: taken from that
/// bucket first, then the other, but never below zero available. Held credits are the
/// seller's too, but they are reserved for running work: the part they cover becomes
/// debt, which the release of those credits pays first (see [`repay_debt`]).
pub fn reverse(balances: &Balances, bucket: Bucket, amount: i64) -> Reversal {
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
    Reversal {
        taken: Deltas {
            subscription: -subscription,
            purchased: -purchased,
            held: 0,
            debt: 0,
        },
        shortfall: amount - from_first - from_second,
    }
}

impl Balances {
    /// The balances after `d`.
    pub fn after(&self, d: &Deltas) -> Balances {
        Balances {
            subscription: self.subscription + d.subscription,
            purchased: self.purchased + d.purchased,
            held: self.held + d.held,
            debt: self.debt + d.debt,
        }
    }

    /// The account's invariants: nothing negative, available ≥ 0, and no available
    /// credits while there is debt. `None` when they hold, else which one fails.
    pub fn violation(&self) -> Option<&'static str> {
        if self.subscription < 0 || self.purchased < 0 || self.held < 0 || self.debt < 0 {
            Some("a negative balance")
        } else if self.available() < 0 {
            Some("available below zero")
        } else if self.debt > 0 && self.available() > 0 {
            Some("available credits while in debt")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_is_repaid_from_what_becomes_available() {
        let b = Balances {
            debt: 5,
            ..Default::default()
        };
        let granted = b.after(&grant(Bucket::Purchased, 8));
        assert_eq!(
            repay_debt(&granted),
            Some(Deltas {
                purchased: -5,
                debt: -5,
                ..Default::default()
            })
        );
        let small = b.after(&grant(Bucket::Subscription, 4));
        let repaid = small.after(&repay_debt(&small).unwrap());
        assert_eq!((repaid.available(), repaid.debt), (0, 1));
        assert_eq!(repaid.violation(), None);
        assert_eq!(
            repay_debt(&repaid),
            None,
            "nothing available, nothing repaid"
        );
    }

    /// The reported case: 280 credits, 270 held by a job, the 250-credit pack refunded,
    /// then the job cancelled. 30 must remain, not 270.
    #[test]
    fn a_refund_of_held_credits_sticks_through_the_release() {
        let b = Balances {
            purchased: 280,
            held: 270,
            ..Default::default()
        };
        let r = reverse(&b, Bucket::Purchased, 250);
        assert_eq!((r.taken.purchased, r.shortfall), (-10, 240));
        let refunded = b.after(&r.taken).after(&Deltas {
            debt: r.shortfall,
            ..Default::default()
        });
        assert_eq!((refunded.available(), refunded.debt), (0, 240));
        let released = refunded.after(&Deltas {
            held: -270,
            ..Default::default()
        });
        let settled = released.after(&repay_debt(&released).unwrap());
        assert_eq!((settled.available(), settled.debt), (30, 0));
        assert_eq!(settled.violation(), None);
    }

    #[test]
    fn amounts_are_range_checked() {
        assert!(check_amount("amount", 1, false).is_ok());
        assert!(check_amount("amount", MAX_CREDIT_AMOUNT, true).is_ok());
        assert!(check_amount("amount", -MAX_CREDIT_AMOUNT, true).is_ok());
        for bad in [0, i64::MAX, i64::MIN, MAX_CREDIT_AMOUNT + 1] {
            let err = check_amount("amount", bad, true).unwrap_err();
            assert_eq!(err.details.unwrap()["field"], "amount");
        }
        assert!(check_amount("amount", -1, false).is_err());
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
            Reversal {
                taken: Deltas {
                    subscription: -4,
                    purchased: -2,
                    ..Default::default()
                },
                shortfall: 0,
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
        let r = reverse(&b, Bucket::Purchased, 5);
        assert_eq!(r.taken.purchased, -3);
        assert_eq!(r.shortfall, 2);
        assert_eq!(b.after(&r.taken).available(), 0);
    }
}
