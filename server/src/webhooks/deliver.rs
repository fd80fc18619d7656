//! One delivery: the same body and delivery id at every attempt, a fresh
//! timestamp and signature each time, attempts until one is delivered, the
//! receiver refuses it, or `max_attempts` are spent.

use http::StatusCode;

use super::{Hook, client, payload::Notice, retry, sign::Signer};
use crate::metrics::Metrics;

/// Why a delivery did not arrive. Never shows the URL's path.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the receiver refused it with {status} (attempt {attempts})")]
    Refused { status: StatusCode, attempts: u32 },
    #[error("no attempt of {attempts} succeeded; the last: {last}")]
    Exhausted { attempts: u32, last: String },
}

/// Delivers `notice` as delivery `delivery`; returns the attempts it took.
pub async fn deliver(
    hook: &Hook,
    notice: &Notice,
    delivery: &str,
    metrics: &Metrics,
) -> Result<u32, DeliveryError> {
    let webhook = &hook.webhook;
    let body = notice.body(webhook.format, delivery);
    let signer = webhook
        .secret
        .as_ref()
        .map(|s| Signer::new(s.expose().as_bytes()));
    let mut attempt = 1;
    loop {
        let timestamp = jiff::Timestamp::now().as_second();
        let mut headers = vec![
            ("x-daas-event", notice.event.as_str().to_string()),
            ("x-daas-delivery", delivery.to_string()),
            ("x-daas-timestamp", timestamp.to_string()),
        ];
        if let Some(signer) = &signer {
            headers.push(("x-daas-signature", signer.sign(timestamp, body.as_bytes())));
        }
        let outcome = client::post(
            &webhook.target,
            hook.tls.as_ref().map_err(String::as_str),
            &headers,
            body.clone(),
            webhook.timeout,
        )
        .await;
        metrics.webhook_attempt(&webhook.label);
        let asked = match retry::verdict(&outcome, jiff::Timestamp::now()) {
            retry::Verdict::Delivered => return Ok(attempt),
            retry::Verdict::Refused(status) => {
                return Err(DeliveryError::Refused {
                    status,
                    attempts: attempt,
                });
            }
            retry::Verdict::Retry { asked } => asked,
        };
        let last = match outcome {
            Ok(reply) => format!("HTTP {}", reply.status),
            Err(err) => err.to_string(),
        };
        if attempt >= webhook.max_attempts {
            return Err(DeliveryError::Exhausted {
                attempts: attempt,
                last,
            });
        }
        let wait = retry::delay(webhook.retry_base, attempt + 1, asked);
        tracing::debug!(
            webhook = %webhook.label,
            receiver = %webhook.target,
            event = notice.event.as_str(),
            session = %notice.session_id,
            delivery,
            attempt,
            error = %last,
            retry_in = ?wait,
            "a webhook attempt failed"
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}
