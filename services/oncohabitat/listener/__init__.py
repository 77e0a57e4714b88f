"""DICOM listener: durable C-STORE SCP, study completion and classification, hand-off outbox.

Data flow::

    PACS --TLS?/TCP--> ListenerSCP (scp.py: peer allow-list, association limit)
         --> Association (association.py: AE allow-list, timeouts, bounded PDUs, DIMSE C-ECHO/C-STORE)
         --> DatasetSpool (spool.py)
         --> StoreHandler.handle_store (cstore.py: the seam between protocol and what a C-STORE does)
         --> InstanceStore (storage.py: disk watermark, checks.py: UIDs, deflate/pixel budgets,
             truncation; then which path an instance takes)
             intake.py (journaled path), duplicates.py (direct path, duplicate policy),
             store_files.py (layout, durable writes), recovery.py (start-up repairs)
             --> IntakeJournal (journal.py: checked entries, synced before the reply)
             --> Materialiser (materialiser.py: a background thread)
             --> instance files + StudyIndex (index.py); journal checkpoint after a file-system sync
    CompletionMonitor (completion.py): RECEIVING --quiet period / expected series-->
        classify.py (oncohabitat.dicomio.dce: DCE series and phases) --> COMPLETE | REJECTED
    Outbox (outbox.py): COMPLETE --handoff(study_key, digest, paths)--> HANDED_OFF

Wiring from settings: :mod:`.wiring`; DIMSE statuses: :mod:`.status`; audit events: :mod:`.audit`;
metrics: :mod:`.metrics`. Only opaque keys (truncated SHA-256 of UIDs) name files and appear in
logs/metrics; patient names, IDs, birth dates and accession numbers are never read into the index.
"""
