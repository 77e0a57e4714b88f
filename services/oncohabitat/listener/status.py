"""DIMSE C-STORE status codes answered by the listener's Storage SCP.

=========  ========================================================================
status     meaning
=========  ========================================================================
0x0000     success (stored durably, or an already-stored duplicate)
0xA700     out of resources: the file or its index row could not be written durably
0xA900     data set does not match SOP class: the data set's SOP Class/Instance UID
           differs from the C-STORE request's Affected SOP Class/Instance UID
0xC001     cannot understand: the data set could not be parsed
0xC002     cannot understand: a required UID (Study/Series/SOP Instance, SOP Class) is missing
0xC003     cannot understand: a UID is non-conformant (not digits and dots, empty, > 64 chars)
=========  ========================================================================
"""

from __future__ import annotations

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_PARSE = 0xC001
MISSING_UID = 0xC002
INVALID_UID = 0xC003
