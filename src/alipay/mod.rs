//! Alipay (支付宝) Open Platform: RSA2 signatures over the canonical string, the
//! gateway's signed requests (`alipay.trade.page.pay` / `wap.pay` / `query` / `refund`),
//! and the simulated Alipay used when no keys are configured.

pub mod gateway;
pub mod sign;
