"""DICOM listener: durable C-STORE SCP, study completion, hand-off outbox and C-STORE SCU.

Data flow::

    PACS --C-STORE--> ListenerSCP (scp.py) --> InstanceStore (storage.py) --> StudyIndex (index.py)
    CompletionMonitor (completion.py): RECEIVING --quiet period--> COMPLETE
    Outbox (outbox.py): COMPLETE --handoff(study_key, digest, paths)--> HANDED_OFF
    send_instances (scu.py): results back to PACS

Only opaque keys (truncated SHA-256 of UIDs) name files and appear in logs/metrics; patient
names, IDs, birth dates and accession numbers are never read into the index.
"""
