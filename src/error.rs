//! The one place where Fjord's typed errors become Kafka error codes.

pub use kafka_protocol::error::ResponseError;

use crate::coordinator::GroupError;
use crate::metadata::ControllerError;
use crate::partition::producer_state::ProducerStateError;
use crate::partition::PartitionError;
use crate::storage::{BatchError, StorageError};
use crate::txn::TxnError;

pub const NONE: i16 = 0;

pub fn code(e: ResponseError) -> i16 {
    e.code()
}

pub fn controller_error_code(e: &ControllerError) -> i16 {
    match e {
        ControllerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
        ControllerError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition.code(),
        ControllerError::InvalidTopic(_) => ResponseError::InvalidTopicException.code(),
        ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
        ControllerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor.code(),
        ControllerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment.code(),
        ControllerError::InvalidConfig(_) => ResponseError::InvalidConfig.code(),
        ControllerError::NotController => ResponseError::NotController.code(),
        ControllerError::Unavailable(_) => ResponseError::RequestTimedOut.code(),
        ControllerError::AlterPartition(e) => e.code(),
        ControllerError::BrokerNotRegistered(_) => ResponseError::BrokerIdNotRegistered.code(),
    }
}

/// A batch that fails validation: a bad CRC is CORRUPT_MESSAGE, an old
/// message format is INVALID_RECORD (as Kafka answers Produce v3+), anything else about its
/// framing is CORRUPT_MESSAGE too (what Kafka answers for lying lengths).
pub fn batch_error_code(e: &BatchError) -> i16 {
    match e {
        // Kafka: "Produce requests with version 3 or higher must only contain
        // record batches with magic version 2" is an InvalidRecordException.
        BatchError::UnsupportedMagic(_) => ResponseError::InvalidRecord.code(),
        _ => ResponseError::CorruptMessage.code(),
    }
}

pub fn storage_error_code(e: &StorageError) -> i16 {
    match e {
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        StorageError::Closed | StorageError::NotLeader => ResponseError::NotLeaderOrFollower.code(),
        _ => ResponseError::KafkaStorageError.code(),
    }
}

pub fn partition_error_code(e: &PartitionError) -> i16 {
    match e {
        PartitionError::NotHere => ResponseError::NotLeaderOrFollower.code(),
        PartitionError::Storage(s) => storage_error_code(s),
        PartitionError::Producer(p) => producer_state_error_code(p),
        PartitionError::ReplicationTimeout => ResponseError::RequestTimedOut.code(),
        PartitionError::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend.code(),
    }
}

/// Idempotent-producer refusals, as Kafka answers them on produce.
pub fn producer_state_error_code(e: &ProducerStateError) -> i16 {
    match e {
        ProducerStateError::InvalidEpoch { .. } => ResponseError::InvalidProducerEpoch.code(),
        ProducerStateError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
    }
}

/// Group coordinator errors. Oversized protocol metadata in a JoinGroup has no
/// code of its own in Kafka: it is an INVALID_REQUEST.
pub fn group_error_code(e: &GroupError) -> i16 {
    match e {
        GroupError::NotCoordinator => ResponseError::NotCoordinator.code(),
        GroupError::LoadInProgress => ResponseError::CoordinatorLoadInProgress.code(),
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable.code(),
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId.code(),
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId.code(),
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration.code(),
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress.code(),
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol.code(),
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId.code(),
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired.code(),
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached.code(),
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout.code(),
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound.code(),
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup.code(),
        GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition.code(),
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge.code(),
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic.code(),
        GroupError::MetadataTooLarge => ResponseError::InvalidRequest.code(),
        GroupError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch.code(),
    }
}

/// `group_error_code` for an optional error (None = 0).
pub fn group_result_code(e: Option<&GroupError>) -> i16 {
    e.map_or(NONE, group_error_code)
}

/// Transaction coordinator errors. PRODUCER_FENCED (90) exists from the
/// versions given by `fenced_since`; older versions get INVALID_PRODUCER_EPOCH,
/// as Kafka answers them.
pub fn txn_error_code(e: &TxnError, version: i16, fenced_since: i16) -> i16 {
    match e {
        TxnError::NotCoordinator => ResponseError::NotCoordinator.code(),
        TxnError::LoadInProgress => ResponseError::CoordinatorLoadInProgress.code(),
        TxnError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable.code(),
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping.code(),
        TxnError::ProducerFenced if version >= fenced_since => ResponseError::ProducerFenced.code(),
        TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch.code(),
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions.code(),
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState.code(),
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout.code(),
        TxnError::InvalidRequest => ResponseError::InvalidRequest.code(),
        TxnError::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound.code(),
    }
}
