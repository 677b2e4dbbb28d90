//! How Kafka's errors become rill's: a record's failure gets a clear `error_code` and says
//! whether a retry may succeed; an admin failure becomes the matching API error; anything else
//! that goes wrong talking to the cluster is `503 unavailable`.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rill_actors::types::{Offset, PartitionId};

use crate::backend::BackendError;

pub(super) fn offset_out_of_range(
    topic: &str,
    partition: PartitionId,
    offset: Offset,
    low: Offset,
) -> BackendError {
    BackendError::Rejected {
        code: "offset_out_of_range",
        message: format!(
            "offset {offset} is below the start ({low}) of partition {partition} of topic {topic}"
        ),
        retriable: false,
    }
}

/// Errors of a partition whose leadership is settling: asking again shortly succeeds.
pub(super) fn is_transient(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::FencedLeaderEpoch
                | RDKafkaErrorCode::UnknownLeaderEpoch
        )
    )
}

/// A whole-request failure talking to the cluster (metadata, admin, reads): 503.
pub(super) fn cluster_error(e: &KafkaError) -> BackendError {
    BackendError::Unavailable(format!("Kafka: {e}"))
}

/// An admin operation's per-topic error. `topic_already_exists` and `partition_not_found`
/// carry bare names/messages: the HTTP layer words them.
pub(super) fn admin_error(topic: &str, code: RDKafkaErrorCode) -> BackendError {
    use RDKafkaErrorCode as C;
    match code {
        C::TopicAlreadyExists => BackendError::Rejected {
            code: "topic_already_exists",
            message: topic.to_owned(),
            retriable: false,
        },
        C::UnknownTopicOrPartition | C::UnknownTopic => {
            BackendError::TopicNotFound(topic.to_owned())
        }
        C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::InvalidReplicaAssignment
        | C::InvalidConfig
        | C::InvalidTopic
        | C::PolicyViolation
        | C::InvalidRequest => BackendError::Rejected {
            code: "invalid_config",
            message: format!("topic {topic}: the Kafka cluster refused it: {code}"),
            retriable: false,
        },
        C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed => BackendError::Rejected {
            code: "kafka_authorization_failed",
            message: format!("topic {topic}: not authorized by the Kafka cluster: {code}"),
            retriable: false,
        },
        C::TopicDeletionDisabled => BackendError::Rejected {
            code: "kafka_topic_deletion_disabled",
            message: format!("topic {topic}: the Kafka cluster does not allow deleting topics"),
            retriable: false,
        },
        _ => BackendError::Unavailable(format!("topic {topic}: Kafka: {code}")),
    }
}

/// One record's failure: a clear `error_code`, and whether sending it again may succeed.
pub(super) fn record_error(e: &KafkaError) -> BackendError {
    use RDKafkaErrorCode as C;
    let (code, retriable) = match e.rdkafka_error_code() {
        Some(C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut) => {
            ("kafka_timeout", true)
        }
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize) => {
            ("kafka_message_too_large", false)
        }
        Some(C::QueueFull) => ("kafka_queue_full", true),
        Some(C::NotEnoughReplicas | C::NotEnoughReplicasAfterAppend) => {
            ("kafka_not_enough_replicas", true)
        }
        Some(
            C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::BrokerNotAvailable
            | C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::NetworkException
            | C::PurgeQueue
            | C::PurgeInflight
            | C::FencedLeaderEpoch
            | C::UnknownLeaderEpoch,
        ) => ("kafka_unavailable", true),
        Some(C::UnknownTopicOrPartition | C::UnknownPartition | C::UnknownTopic) => {
            ("kafka_unknown_topic_or_partition", false)
        }
        Some(C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed) => {
            ("kafka_authorization_failed", false)
        }
        Some(C::InvalidRecord | C::InvalidMessage | C::InvalidTimestamp) => {
            ("kafka_invalid_record", false)
        }
        Some(C::PolicyViolation) => ("kafka_policy_violation", false),
        Some(C::Fatal) => ("kafka_fatal", true),
        _ => ("kafka_error", false),
    };
    let hint = if retriable {
        "a retry may succeed"
    } else {
        "retrying the same record will fail again"
    };
    BackendError::Rejected {
        code,
        message: format!("Kafka: {e} ({hint})"),
        retriable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_errors_say_whether_a_retry_may_succeed() {
        let cases = [
            (RDKafkaErrorCode::MessageTimedOut, "kafka_timeout", true),
            (
                RDKafkaErrorCode::MessageSizeTooLarge,
                "kafka_message_too_large",
                false,
            ),
            (RDKafkaErrorCode::AllBrokersDown, "kafka_unavailable", true),
            (
                RDKafkaErrorCode::NotEnoughReplicas,
                "kafka_not_enough_replicas",
                true,
            ),
            (
                RDKafkaErrorCode::TopicAuthorizationFailed,
                "kafka_authorization_failed",
                false,
            ),
            (
                RDKafkaErrorCode::InvalidRecord,
                "kafka_invalid_record",
                false,
            ),
        ];
        for (kafka, want, want_retriable) in cases {
            match record_error(&KafkaError::MessageProduction(kafka)) {
                BackendError::Rejected {
                    code,
                    retriable,
                    message,
                } => {
                    assert_eq!((code, retriable), (want, want_retriable), "{kafka:?}");
                    assert!(message.starts_with("Kafka: "), "{message}");
                }
                other => panic!("{kafka:?} -> {other:?}"),
            }
        }
    }

    #[test]
    fn admin_errors_map_to_api_errors() {
        assert!(matches!(
            admin_error("t", RDKafkaErrorCode::TopicAlreadyExists),
            BackendError::Rejected { code: "topic_already_exists", ref message, .. } if message == "t"
        ));
        assert!(matches!(
            admin_error("t", RDKafkaErrorCode::UnknownTopicOrPartition),
            BackendError::TopicNotFound(ref name) if name == "t"
        ));
        assert!(matches!(
            admin_error("t", RDKafkaErrorCode::InvalidPartitions),
            BackendError::Rejected {
                code: "invalid_config",
                ..
            }
        ));
        assert!(matches!(
            admin_error("t", RDKafkaErrorCode::RequestTimedOut),
            BackendError::Unavailable(_)
        ));
    }
}
