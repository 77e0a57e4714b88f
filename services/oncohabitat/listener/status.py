"""DIMSE C-STORE status codes answered by the listener's Storage SCP.

=========  ==================  ==============================================================
status     reason label        meaning
=========  ==================  ==============================================================
0x0000     (stored/duplicate)  success: stored durably, or an already-stored duplicate
0xA700     disk_low,           out of resources: free disk space below the watermark, or the
           write_error,        file or its index row could not be written (the partial file
           index_error         is deleted)
0xA701     pixel_budget,       out of resources: declared pixel data (Rows x Columns x Frames
           dataset_too_large   x Samples x Bits) or the received data set exceeds its budget
0xA702     deflate_budget      out of resources: a deflated data set inflates beyond the budget
0xA900     sop_mismatch        data set does not match SOP class: its SOP Class/Instance UID
                               differs from the C-STORE request's Affected SOP Class/Instance
0xC001     unreadable          cannot understand: the data set could not be parsed (garbage,
                               truncated, corrupt deflate stream)
0xC002     missing_uid         cannot understand: a required UID (Study/Series/SOP Instance,
                               SOP Class) is missing
0xC003     invalid_uid         cannot understand: a UID is non-conformant (not digits and dots,
                               empty, > 64 characters, NUL, path characters)
0xC211     internal_error      unexpected failure in the store handler (logged)
=========  ==================  ==============================================================

The reason label is also the ``reason`` label of ``oncohabitat_listener_instances_rejected_total``
and is sent in the response's Error Comment (0000,0902).
"""

from __future__ import annotations

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
PIXEL_BUDGET_EXCEEDED = 0xA701
DEFLATE_BUDGET_EXCEEDED = 0xA702
DATASET_MISMATCH = 0xA900
CANNOT_PARSE = 0xC001
MISSING_UID = 0xC002
INVALID_UID = 0xC003
UNEXPECTED_ERROR = 0xC211
