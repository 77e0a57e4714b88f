"""Population habitat centroids (``oncohabitat-train habitats``): fitted on a cohort's training split only and
exported as a ``habitats`` bundle for region profiles in frozen mode (:mod:`.fit`, :mod:`.voxels`)."""
