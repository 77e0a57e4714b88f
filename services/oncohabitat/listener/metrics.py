"""Prometheus metrics of the DICOM listener (default registry).

Labels only carry fixed vocabularies (rejection reasons, duplicate kinds), never identifiers.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INSTANCES_STORED = Counter(
    "oncohabitat_listener_instances_stored_total",
    "DICOM instances written durably and acknowledged with success.",
)
INSTANCES_REJECTED = Counter(
    "oncohabitat_listener_instances_rejected_total",
    "C-STORE requests answered with a failure status, by reason.",
    ["reason"],
)
BYTES_STORED = Counter(
    "oncohabitat_listener_bytes_stored_total",
    "Bytes of Part-10 files written (new instances only).",
)
DUPLICATES = Counter(
    "oncohabitat_listener_duplicate_instances_total",
    "Instances received again: 'identical' (same bytes) or 'conflict' (different bytes, first kept).",
    ["kind"],
)
STORE_SECONDS = Histogram(
    "oncohabitat_listener_store_seconds",
    "Time from a complete data set to its durable record (checks, journal append or file fsync), in seconds.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
STUDIES_COMPLETED = Counter(
    "oncohabitat_listener_studies_completed_total",
    "Studies whose quiet period elapsed (RECEIVING -> COMPLETE).",
)
STUDIES_REOPENED = Counter(
    "oncohabitat_listener_studies_reopened_total",
    "Studies moved back to RECEIVING because a new instance arrived after completion.",
)
HANDOFFS = Counter(
    "oncohabitat_listener_handoffs_total",
    "Successful hand-offs to the orchestrator (COMPLETE -> HANDED_OFF).",
)
HANDOFF_FAILURES = Counter(
    "oncohabitat_listener_handoff_failures_total",
    "Failed hand-off attempts ('transient': retried with backoff, 'rejected': not retried).",
    ["kind"],
)
OUTBOX_PENDING = Gauge(
    "oncohabitat_listener_outbox_pending",
    "Studies COMPLETE and waiting for hand-off (as of the outbox's last poll).",
)
TEMP_FILES_REMOVED = Counter(
    "oncohabitat_listener_orphan_temp_files_removed_total",
    "Partial temporary files removed at start-up (left by a crash during a write).",
)
ACTIVE_ASSOCIATIONS = Gauge(
    "oncohabitat_listener_active_associations",
    "DICOM associations currently established or being negotiated.",
)
ASSOCIATIONS = Counter(
    "oncohabitat_listener_associations_total",
    "Association requests by outcome: 'accepted' or the rejection reason.",
    ["outcome"],
)
ABORTS = Counter(
    "oncohabitat_listener_association_aborts_total",
    "Associations ended abnormally, by reason (protocol error, timeout, PDU too large, peer abort, closed).",
    ["reason"],
)
STUDY_COMPLETION_SECONDS = Histogram(
    "oncohabitat_listener_study_completion_seconds",
    "Time from a study's first instance to its completion (quiet period included), in seconds.",
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
STUDIES_REJECTED = Counter(
    "oncohabitat_listener_studies_rejected_total",
    "Studies that completed but are not eligible (classification reason code).",
    ["reason"],
)
COMPLETION_ERRORS = Counter(
    "oncohabitat_listener_completion_errors_total",
    "Unexpected failures while completing a study (the study is tried again at the next poll).",
)
STUDIES_UPDATED = Counter(
    "oncohabitat_listener_studies_updated_total",
    "New instances for studies that had completed, by late policy action ('rerun' or 'hold').",
    ["action"],
)
DISK_FREE_BYTES = Gauge(
    "oncohabitat_listener_disk_free_bytes",
    "Free bytes on the store's file system at the last measurement.",
)
DISK_LOW = Gauge(
    "oncohabitat_listener_disk_low",
    "1 while free space is below the watermark (new associations and C-STOREs refused).",
)
JOURNAL_PENDING = Gauge(
    "oncohabitat_listener_journal_pending_instances",
    "Acknowledged instances durable in the intake journal whose file and index row are not yet written.",
)
JOURNAL_ERRORS = Counter(
    "oncohabitat_listener_journal_errors_total",
    "Intake journal failures by stage ('append': instance stored by direct fsync instead; 'materialise',"
    " 'checkpoint': retried).",
    ["stage"],
)
MATERIALISE_SECONDS = Histogram(
    "oncohabitat_listener_materialise_batch_seconds",
    "Time to materialise one batch of journaled instances (files, index rows, reports), in seconds.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
CHECKPOINT_SECONDS = Histogram(
    "oncohabitat_listener_journal_checkpoint_seconds",
    "Time of one journal checkpoint (file-system sync + checkpoint record), in seconds.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
